"""Build the sm90a 2:4 FP8 GEMM library just in time, once per source version, and load it.

The kernels are CUTLASS 3.x templates compiled by nvcc for sm_90a, one object per configuration (`CONFIGS`,
compiled in parallel), linked into one shared library with a C interface, loaded with ctypes. No PyTorch
headers are involved, so one build serves every torch version. The library is cached under
`$ACT24_KERNEL_CACHE` (default ~/.cache/act24/kernels), named by a hash of the source, the configurations and
the flags; a cached library is used without nvcc, so a machine may run a library built elsewhere (same CUDA
major version). What stops the build is reported as a reason (`Sm90GemmUnavailable`), never as a crash.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import fcntl
import functools
import hashlib
import importlib.util
import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from .configs import CONFIGS

SOURCE = Path(__file__).with_name("sparse_fp8_gemm.cu")
ARCH = "-gencode=arch=compute_90a,code=sm_90a"  # wgmma needs the arch-specific target
# NDEBUG: CUTLASS's device asserts are calls that would serialize the wgmma pipeline (ptxas warning C7510).
FLAGS = ("-std=c++17", "-O3", "-DNDEBUG", ARCH, "--expt-relaxed-constexpr", "-Xcompiler", "-fPIC")
DEFAULT_NVCC = "/usr/local/cuda/bin/nvcc"
# Only the headers are needed: --no-deps skips the wheel's Python dependencies (cuda-python and others).
CUTLASS_HINT = "pip install --no-deps nvidia-cutlass==4.2.0.0, or set CUTLASS_PATH to a CUTLASS checkout"


class Sm90GemmUnavailable(RuntimeError):
    """The library cannot be built or loaded here; the message says why."""


def cache_dir() -> Path:
    return Path(os.environ.get("ACT24_KERNEL_CACHE") or Path.home() / ".cache" / "act24" / "kernels")


def cache_key() -> str:
    text = SOURCE.read_text() + repr([c.defines() for c in CONFIGS]) + repr(FLAGS)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def library_path() -> Path:
    return cache_dir() / f"act24_sp24_fp8_{cache_key()}.so"


def find_nvcc() -> str:
    home = os.environ.get("CUDA_HOME") or os.environ.get("CUDA_PATH")
    candidates = [Path(home) / "bin" / "nvcc"] if home else []
    candidates += [Path(p) for p in (shutil.which("nvcc"), DEFAULT_NVCC) if p]
    for nvcc in candidates:
        if nvcc.is_file():
            return str(nvcc)
    raise Sm90GemmUnavailable("nvcc not found (set CUDA_HOME or put nvcc on PATH) and no cached build at "
                              f"{library_path()}")


def cutlass_includes() -> list[str]:
    """CUTLASS's include folders: $CUTLASS_PATH, else the nvidia-cutlass wheel's copy."""
    if root := os.environ.get("CUTLASS_PATH"):
        base = Path(root)
    else:
        spec = importlib.util.find_spec("cutlass_library")
        if spec is None or not spec.submodule_search_locations:
            raise Sm90GemmUnavailable(f"CUTLASS headers not found: {CUTLASS_HINT}")
        base = Path(next(iter(spec.submodule_search_locations))) / "source"
    includes = [base / "include", base / "tools" / "util" / "include"]
    if not (includes[0] / "cutlass" / "cutlass.h").is_file():
        raise Sm90GemmUnavailable(f"CUTLASS headers not found under {base}: {CUTLASS_HINT}")
    return [f"-I{p}" for p in includes]


def _run(cmd: list[str], log: Path) -> None:
    done = subprocess.run(cmd, capture_output=True, text=True)
    with log.open("a") as f:
        f.write(" ".join(cmd) + "\n" + done.stdout + done.stderr + "\n")
    if done.returncode:
        first = next((line for line in done.stderr.splitlines() if "error" in line), done.stderr.strip()[:300])
        raise Sm90GemmUnavailable(f"build failed ({first.strip()[:300]}); full log: {log}")


def build(progress: bool = True) -> Path:
    """The cached library, built first if missing (minutes: one nvcc run per configuration, in parallel)."""
    lib = library_path()
    if lib.is_file():
        return lib
    nvcc, includes = find_nvcc(), cutlass_includes()
    try:
        lib.parent.mkdir(parents=True, exist_ok=True)
        lock = open(lib.parent / ".build.lock", "w")
    except OSError as exc:
        raise Sm90GemmUnavailable(f"the kernel cache {lib.parent} is not writable ({type(exc).__name__}); set "
                                  "ACT24_KERNEL_CACHE to a writable folder") from exc
    with lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be building the same library
        if lib.is_file():
            return lib
        log = lib.with_suffix(".log")
        log.write_text("")
        with tempfile.TemporaryDirectory(dir=lib.parent) as tmp:
            objects = [Path(tmp) / f"{c.name}.o" for c in CONFIGS]
            jobs = [[nvcc, *FLAGS, *includes, *c.defines(), "-c", str(SOURCE), "-o", str(o)]
                    for c, o in zip(CONFIGS, objects)]
            print(f"building the sm90a 2:4 FP8 GEMM ({len(jobs)} configurations; once, cached at {lib})", flush=True)
            with concurrent.futures.ThreadPoolExecutor(max_workers=os.cpu_count() or 1) as pool:
                futures = [pool.submit(_run, job, log) for job in jobs]
                _wait(futures, progress)
            _run([nvcc, "-shared", ARCH, *map(str, objects), "-o", str(Path(tmp) / lib.name)], log)
            os.replace(Path(tmp) / lib.name, lib)
        version = subprocess.run([nvcc, "--version"], capture_output=True, text=True).stdout.strip().splitlines()
        lib.with_suffix(".json").write_text(json.dumps(
            {"nvcc": version[-1] if version else "", "includes": includes, "flags": FLAGS,
             "configs": [c.name for c in CONFIGS]}, indent=1))
    return lib


def _wait(futures, progress: bool) -> None:
    from tqdm import tqdm

    done = concurrent.futures.as_completed(futures)
    for future in tqdm(done, total=len(futures), desc="nvcc", disable=not progress):
        future.result()


@functools.cache
def load() -> ctypes.CDLL:
    """The loaded library with its entry points typed; Sm90GemmUnavailable says why not."""
    lib = ctypes.CDLL(str(build()))
    p, i, size = ctypes.c_void_p, ctypes.c_int, ctypes.c_size_t
    for c in CONFIGS:
        workspace = getattr(lib, f"act24_sp24_fp8_workspace_{c.name}")
        workspace.argtypes, workspace.restype = [i] * 6, size
        gemm = getattr(lib, f"act24_sp24_fp8_gemm_{c.name}")
        gemm.argtypes, gemm.restype = [p] * 6 + [i] * 6 + [p, p, ctypes.c_char_p, i], i
        clusters = getattr(lib, f"act24_sp24_fp8_max_active_clusters_{c.name}")
        clusters.argtypes, clusters.restype = [], i
    return lib
