"""Wheels for an offline GPU machine: what this project needs there beyond what a CUDA image already has.

    act24 wheels --out wheels/            # then copy wheels/ to the GPU machine (docs/gpu.md)

The requirements are resolved here (pip's dry-run report), then each pinned distribution is downloaded as a wheel
for the GPU machine's Python (default 3.12, x86_64 manylinux); what such an image ships (torch, triton, the
nvidia-* CUDA libraries, numpy, ...) is left out, except the CUDA 12 runtime that xformers' kernels link.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

# The 2:4 kernel stack, the sm90a GEMM's headers, the benchmark's NVML reader and the workflow engine.
DEFAULT_REQUIREMENTS = ("xformers==0.0.35", "nvidia-cuda-runtime-cu12==12.8.90", "nvidia-cutlass==4.2.0.0",
                        "nvidia-ml-py==13.615.71", "snakemake==9.27.1")
# What a CUDA PyTorch image has already (and which is huge): not carried.
PREINSTALLED = re.compile(r"^(torch|triton|nvidia-.*|cuda-.*|numpy|sympy|mpmath|networkx|filelock|fsspec|setuptools|"
                          r"jinja2|markupsafe|typing[-_]extensions)$", re.IGNORECASE)
CARRIED_ANYWAY = {"nvidia-cuda-runtime-cu12", "nvidia-cutlass", "nvidia-ml-py"}
PLATFORMS = ("manylinux_2_28_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64", "manylinux_2_5_x86_64", "any")


def pins_to_fetch(report: dict) -> list[str]:
    """`name==version` of every distribution of a pip install report that the GPU machine lacks."""
    pins = []
    for item in report["install"]:
        name, version = item["metadata"]["name"], item["metadata"]["version"]
        if name.lower() in CARRIED_ANYWAY or not PREINSTALLED.match(name):
            pins.append(f"{name}=={version}")
    return pins


def fetch(dest: str | Path, requirements: list[str] | tuple[str, ...] = DEFAULT_REQUIREMENTS,
          python: str = "3.12") -> list[str]:
    """Download the wheels into `dest`; returns the pins that could not be fetched (printed too)."""
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    pip = [sys.executable, "-m", "pip"]
    with tempfile.TemporaryDirectory() as tmp:
        report = Path(tmp) / "report.json"
        subprocess.run([*pip, "install", "-q", "--dry-run", "--ignore-installed", "--report", str(report),
                        *requirements], check=True)
        pins = pins_to_fetch(json.loads(report.read_text()))
    failed, platforms = [], [arg for p in PLATFORMS for arg in ("--platform", p)]
    for pin in pins:
        got = subprocess.run([*pip, "download", "-q", "--no-deps", "--only-binary=:all:", "--python-version", python,
                              "--implementation", "cp", *platforms, "-d", str(dest), pin])
        if got.returncode and subprocess.run([*pip, "wheel", "-q", "--no-deps", "-w", str(dest), pin]).returncode:
            failed.append(pin)
            print(f"could not fetch {pin}", file=sys.stderr)
    return failed
