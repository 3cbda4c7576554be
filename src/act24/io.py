"""Small I/O helpers shared by the workflow scripts and the CLI."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import subprocess
import sys
import traceback
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None, append: bool = False) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to `path` for the duration of the block (after what it
    holds if `append`). An exception that leaves the block is written there too (the log ends with its
    traceback), then raised as usual."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a" if append else "w", buffering=1) as f, contextlib.redirect_stdout(f), \
            contextlib.redirect_stderr(f):
        try:
            yield
        except BaseException:
            traceback.print_exc(file=f)
            raise


def write_atomic(path: str | os.PathLike, data: bytes, what: str = "file") -> None:
    """Write `data` to `path` atomically: a crash leaves the previous file (if any) intact; a failed write (disk
    full, no permission) leaves no partial file and raises OSError naming `what`, the path and the cause."""
    path = Path(path)
    tmp = path.with_name(path.name + ".partial")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        raise OSError(exc.errno, f"cannot write {what} {path} ({exc.strerror or exc}; {len(data) / 1e6:.1f} MB); "
                                 "the previous one, if any, is kept") from exc


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_atomic(path, (json.dumps(obj, indent=2, default=str) + "\n").encode(), "JSON file")


class SetupError(RuntimeError):
    """The machine cannot do what the settings ask (no CUDA device, fewer devices than processes, a backend that
    cannot run here): the command line reports it in one line, like a config error."""


class InputFileError(RuntimeError):
    """A file a step reads is missing, truncated or malformed; the message names it and how to rebuild it."""


def rebuild_hint(path: str | os.PathLike) -> str:
    return f"rebuild it: snakemake --force {path}"


@contextlib.contextmanager
def reading(path: str | os.PathLike, what: str, hint: str = "") -> Iterator[None]:
    """Any failure to read or parse `path` (a `what`) inside the block becomes an InputFileError that names the file
    and ends with `hint` (default: the command that rebuilds it)."""
    try:
        yield
    except InputFileError:
        raise
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as exc:
        cause = "missing" if isinstance(exc, FileNotFoundError) else \
            f"not a readable {what} ({type(exc).__name__}: {(str(exc).splitlines() or [''])[0]})"
        raise InputFileError(f"{path}: {cause}; {hint or rebuild_hint(path)}") from exc


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    with reading(path, what):
        return json.loads(Path(path).read_text())


def read_csv(path: str | os.PathLike, what: str = "CSV table"):
    """A pandas DataFrame of the CSV at `path`; failures name the file (`reading`)."""
    import pandas as pd

    with reading(path, what):
        return pd.read_csv(path)


def git_commit() -> str:
    """The commit of the checkout this package runs from, '+changes' when tracked files differ from it;
    ACT24_GIT_COMMIT where the checkout travelled without its history (e.g. a copy on a GPU machine)."""
    if os.environ.get("ACT24_GIT_COMMIT"):
        return os.environ["ACT24_GIT_COMMIT"]
    repo = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(repo), "rev-parse", "HEAD"], capture_output=True, text=True,
                              timeout=10)
        changes = subprocess.run(["git", "-C", str(repo), "status", "--porcelain", "--untracked-files=no"],
                                 capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"unknown ({type(exc).__name__})"
    if head.returncode:
        return "unknown (not a git checkout)"
    return head.stdout.strip() + ("+changes" if changes.stdout.strip() else "")


def environment_info() -> dict[str, Any]:
    """Versions and device facts written next to results."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu": cpu_model(),
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "git_commit": git_commit(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    info.update(xformers_info())
    return info


def cpu_model() -> str:
    """The processor's model name (/proc/cpuinfo on Linux; else what `platform` knows): results of CPU runs can
    depend on it (its floating-point kernels' summation order)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


class _CpuExtensionWarning(logging.Filter):
    """Drops xformers' "can't load C++/CUDA extensions ... Please reinstall xformers" warning: on a machine without
    CUDA it is expected (xformers' wheels are CUDA builds) and reads as a broken install. `xformers_info` says
    instead whether the extensions load, and why not."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "can't load C++/CUDA extensions" not in record.getMessage()


@contextlib.contextmanager
def quiet_xformers_on_cpu() -> Iterator[None]:
    """Import xformers inside this block: without a CUDA device its extension warning is not shown."""
    if torch_has_cuda():  # on a GPU machine the warning is a real problem: let it through
        yield
        return
    logger, quiet = logging.getLogger("xformers"), _CpuExtensionWarning()
    logger.addFilter(quiet)
    try:
        yield
    finally:
        logger.removeFilter(quiet)


def torch_has_cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def xformers_info() -> dict[str, str]:
    """xformers' version and whether its compiled extensions (the 2:4 kernels) load: the package imports without
    them (on a machine without CUDA they never load, and its warning is not shown: `quiet_xformers_on_cpu`)."""
    try:
        with quiet_xformers_on_cpu():
            import xformers
    except Exception as exc:  # reported, not hidden: the xformers backends need it
        return {"xformers": f"unavailable: {type(exc).__name__}: {exc}"}
    try:
        from xformers import _cpp_lib

        failure = _cpp_lib._cpp_library_load_exception
    except Exception as exc:  # noqa: BLE001 - a layout this code does not know is reported as such
        failure = exc
    loaded = "loaded" if failure is None else \
        f"not loaded: {type(failure).__name__}: {(str(failure).splitlines() or [''])[0][:300]}"
    if failure is not None and not torch_has_cuda():
        loaded += " (expected without CUDA: xformers' wheels are CUDA builds, and nothing on a CPU needs its kernels)"
    return {"xformers": xformers.__version__, "xformers_extensions": loaded}
