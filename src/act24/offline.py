"""The corpus for a machine without network: the split documents (xz) and the tokenizer, from which `unpack`
rebuilds train.npy and val.npy and checks them bit for bit against the sha256 the bundle records.

Token arrays do not compress (about 1.1x with xz); the documents do (about 7x for source code), so the documents
travel and the arrays are rebuilt where they are used.
"""

from __future__ import annotations

import lzma
import os
import shutil
from pathlib import Path

from .data import DataError, encode_documents, load_tokenizer, read_documents, save_tokens, sha256_of
from .io import read_json, write_json

SPLITS = ("train", "val")


def write_bundle(documents: str, tokenizer: str, train: str, val: str, out_documents: str, out_tokenizer: str,
                 out_manifest: str) -> dict:
    """Compress `documents` (xz), copy `tokenizer`, and write a manifest with the token arrays' sha256 and sizes."""
    partial = Path(str(out_documents) + ".partial")
    with open(documents, "rb") as src, lzma.open(partial, "wb", preset=6) as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    os.replace(partial, out_documents)
    shutil.copyfile(tokenizer, out_tokenizer)
    manifest = {
        "documents": {"file": Path(out_documents).name, "sha256": sha256_of(out_documents),
                      "bytes": os.path.getsize(out_documents), "uncompressed_bytes": os.path.getsize(documents)},
        "tokenizer": {"file": Path(out_tokenizer).name, "sha256": sha256_of(out_tokenizer)},
        "tokens": {split: {"sha256": sha256_of(path), "bytes": os.path.getsize(path)}
                   for split, path in zip(SPLITS, (train, val))},
    }
    write_json(out_manifest, manifest)
    return manifest


def unpack(bundle: str | os.PathLike, dest: str | os.PathLike) -> dict[str, Path]:
    """train.npy and val.npy in `dest`, rebuilt from the bundle folder (manifest.json, documents, tokenizer) and
    checked against the manifest's sha256; arrays already there with the right hashes are kept as they are."""
    bundle, dest = Path(bundle), Path(dest)
    manifest = read_json(bundle / "manifest.json", "offline corpus manifest")
    out = {split: dest / f"{split}.npy" for split in SPLITS}
    if all(p.exists() and sha256_of(p) == manifest["tokens"][s]["sha256"] for s, p in out.items()):
        return out
    for part in ("documents", "tokenizer"):
        path = bundle / manifest[part]["file"]
        if not path.exists() or sha256_of(path) != manifest[part]["sha256"]:
            raise DataError(f"{path}: missing or not the file the manifest names (sha256 {manifest[part]['sha256']})")
    dest.mkdir(parents=True, exist_ok=True)
    plain = dest / "documents.jsonl"
    with lzma.open(bundle / manifest["documents"]["file"], "rb") as src, open(plain, "wb") as dst:
        shutil.copyfileobj(src, dst, 1 << 22)
    splits, tok = read_documents(plain), load_tokenizer(bundle / manifest["tokenizer"]["file"])
    plain.unlink()
    for split, path in out.items():
        save_tokens(path, encode_documents(tok, splits[split]))
        if (digest := sha256_of(path)) != manifest["tokens"][split]["sha256"]:
            raise DataError(f"{path}: sha256 {digest} does not match the bundle's {manifest['tokens'][split]['sha256']}"
                            " (another tokenizers version encodes differently?)")
    return out
