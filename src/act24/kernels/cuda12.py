"""Load xformers' CUDA 12 runtime next to a CUDA 13 torch, without LD_LIBRARY_PATH.

xformers 0.0.35 wheels link against libcudart.so.12. On a CUDA 13 build of torch that library is not on the
loader's path, so xformers' C++ ops are missing. The `nvidia-cuda-runtime-cu12` wheel ships it under
`nvidia/cuda_runtime/lib/`; loading it globally by path first lets the dynamic loader resolve the soname.
"""

from __future__ import annotations

import ctypes
import functools
import importlib.util
import sys
from pathlib import Path

SONAME = "libcudart.so.12"


def find_cudart12() -> Path | None:
    """Path of libcudart.so.12 from an installed nvidia-cuda-runtime-cu12 wheel, if any."""
    roots = []
    spec = importlib.util.find_spec("nvidia")
    if spec and spec.submodule_search_locations:
        roots += [Path(p) for p in spec.submodule_search_locations]
    roots += [Path(p) / "nvidia" for p in sys.path if p]
    for root in roots:
        candidate = root / "cuda_runtime" / "lib" / SONAME
        if candidate.is_file():
            return candidate
    return None


@functools.cache
def ensure_cudart12() -> str:
    """Load libcudart.so.12 if torch is a CUDA 13 build; returns what happened, for status messages."""
    import torch

    if not torch.version.cuda or not torch.version.cuda.startswith("13"):
        return f"not needed (torch CUDA {torch.version.cuda})"
    try:
        ctypes.CDLL(SONAME, mode=ctypes.RTLD_GLOBAL)
        return f"{SONAME} already loadable"
    except OSError:
        pass
    path = find_cudart12()
    if path is None:
        return f"{SONAME} not found: pip install nvidia-cuda-runtime-cu12"
    ctypes.CDLL(str(path), mode=ctypes.RTLD_GLOBAL)
    return f"loaded {path}"


@functools.cache
def import_xformers_ops() -> tuple[object | None, str]:
    """(torch.ops.xformers namespace with its sp24 ops, "") or (None, why not)."""
    import torch

    if not torch.cuda.is_available():
        return None, "no CUDA device"
    note = ensure_cudart12()
    try:
        import xformers  # noqa: F401
        import xformers.ops  # noqa: F401  (registers the C++ ops)
    except Exception as exc:  # an import error here is a status to report, not a crash
        return None, f"xformers not importable: {type(exc).__name__}: {exc}"
    ops = torch.ops.xformers
    try:
        ops.sparse24_sparsify_both_ways  # noqa: B018  (raises if the C++ library did not load)
    except (AttributeError, RuntimeError) as exc:
        return None, f"xformers C++ ops missing ({exc}); CUDA 12 runtime: {note}"
    return ops, ""
