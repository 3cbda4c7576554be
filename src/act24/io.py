"""Small I/O helpers shared by the workflow scripts and the CLI."""

from __future__ import annotations

import contextlib
import json
import os
import platform
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any


@contextlib.contextmanager
def log_to(path: str | os.PathLike | None) -> Iterator[None]:
    """Send stdout and stderr (progress bars included) to `path` for the duration of the block."""
    if path is None:
        yield
        return
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", buffering=1) as f, contextlib.redirect_stdout(f), contextlib.redirect_stderr(f):
        yield


def write_json(path: str | os.PathLike, obj: Any) -> None:
    """Write JSON atomically (a crash never leaves a half-written file behind)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    tmp.write_text(json.dumps(obj, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def read_json(path: str | os.PathLike) -> Any:
    return json.loads(Path(path).read_text())


def environment_info() -> dict[str, Any]:
    """Versions and device facts written next to results."""
    import numpy
    import torch

    info: dict[str, Any] = {
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "torch": torch.__version__,
        "numpy": numpy.__version__,
        "cpu_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
        info["cuda"] = torch.version.cuda
        info["compute_capability"] = ".".join(map(str, torch.cuda.get_device_capability(0)))
    try:
        import xformers

        info["xformers"] = xformers.__version__
    except Exception as exc:  # reported, not hidden: the xformers backends need it
        info["xformers"] = f"unavailable: {type(exc).__name__}: {exc}"
    return info
