import os
import random
from pathlib import Path

import pytest
import torch

if not torch.cuda.is_available():
    # The Triton kernels (act24.kernels.fused) run on the CPU through Triton's interpreter; it is read when a
    # kernel is defined, so before anything imports them.
    os.environ.setdefault("TRITON_INTERPRET", "1")

REPO = Path(__file__).resolve().parents[1]
WORDS = ("the king queen lord lady love death night day sword crown ghost blood heart fair foul sweet "
         "speak hear see thou thee thy my mine art doth hath shall will good ill time grave").split()


def write_corpus(folder: Path, n_docs: int = 6, words_per_doc: int = 1500, seed: int = 0) -> list[Path]:
    """Small text files ("plays") of seeded random sentences."""
    rng = random.Random(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i in range(n_docs):
        sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 12))).capitalize() + "."
                     for _ in range(words_per_doc // 8)]
        path = folder / f"play_{i}.txt"
        path.write_text("\n".join(sentences) + "\n")
        paths.append(path)
    return paths


@pytest.fixture
def corpus_dir(tmp_path: Path) -> Path:
    write_corpus(tmp_path / "corpus")
    return tmp_path / "corpus"


@pytest.fixture(scope="session")
def token_files(tmp_path_factory) -> tuple[Path, Path]:
    """train.npy / val.npy made by the package's own data path from a synthetic corpus."""
    from act24 import data

    root = tmp_path_factory.mktemp("tokens")
    docs = data.read_local(str(write_corpus(root / "corpus")[0].parent / "*.txt"))
    train, val = data.split_documents(docs, 0.34, seed=0)
    tok = data.train_tokenizer([d.text for d in train], 300)
    paths = root / "train.npy", root / "val.npy"
    data.save_tokens(paths[0], data.encode_documents(tok, train))
    data.save_tokens(paths[1], data.encode_documents(tok, val))
    return paths


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device; none is available on this machine")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)
