"""Calling the sm90a 2:4 FP8 GEMM, and choosing its kernel per problem shape.

`search(m, k, n)` runs every compiled configuration (`CONFIGS`) with every launch parameter (raster order, swizzle,
SM cap) on fresh random operands of the shape, packed by act24's fused kernel; checks each result against the dense
FP8 GEMM (cuBLAS) of the same quantized operands; screens the correct ones with a few calls each; times the fastest
few again in interleaved rounds of back-to-back calls (closer to a training step than a burst; the GPU's power limit
slows every GEMM by 15-25% over longer runs, which the probe `workflow/experiments/sm90_gemm_probe.py` measures);
and keeps the fastest, per GPU and shape, for the life of the process (`choices` lists them). `sparse_fp8_gemm`
uses that choice.
"""

from __future__ import annotations

import ctypes
import functools
import os
import statistics
from dataclasses import dataclass

import torch

from ..autotune import Candidate, Choice, autotune
from ..timing import event_ms, gpu_name
from .build import Sm90GemmUnavailable, load
from .configs import CONFIGS, RASTERS, SM_CAPS, SWIZZLES, GemmConfig

# The sparse operand's rows (a metadata atom is 64 rows) and reduction dimension (atom: 128 columns; the kernels'
# K tile), and the output's columns (16-byte rows of bf16 for the TMA store).
MULTIPLES = (64, 128, 8)
TOLERANCE = 2e-2  # against cuBLAS on the same FP8 operands: both round to bf16; a wrong kernel lands near 1
SCREEN_CALLS = 3  # per launch, after the checked call
FINALISTS = 6  # the fastest screened launches, timed again
FINAL_ROUNDS, FINAL_ROUND_MS = 3, 20.0


@dataclass(frozen=True)
class Launch:
    config: GemmConfig
    raster: int = 0  # 0: along M, 1: along N
    swizzle: int = 1
    sms: int = 0  # cap on the persistent grid's SMs; 0: every SM that fits a cluster

    def describe(self) -> str:
        cap = f" {self.sms} SMs" if self.sms else ""
        return f"{self.config.name} raster {'MN'[self.raster]} swizzle {self.swizzle}{cap}"


_CHOICES: dict[tuple, Choice] = {}


def missing() -> str:
    """'' when the GEMM runs here, else why not (building the library first if it is not cached)."""
    if os.environ.get("ACT24_SM90_GEMM", "1") == "0":
        return "disabled by ACT24_SM90_GEMM=0"
    if not torch.cuda.is_available():
        return "no CUDA device"
    cap = torch.cuda.get_device_capability()
    if cap != (9, 0):
        return f"needs compute capability 9.0 (sm90a), device has {cap[0]}.{cap[1]}"
    return _load_error()


@functools.cache
def _load_error() -> str:
    """Why the library does not load ('' when it does); asked once per process, so a failing build runs once."""
    try:
        load()
    except (Sm90GemmUnavailable, OSError) as exc:
        return str(exc)
    return ""


def shape_error(m: int, k: int, n: int) -> str:
    mm, mk, mn = MULTIPLES
    if m <= 0 or k <= 0 or n <= 0 or m % mm or k % mk or n % mn:
        return (f"sm90a 2:4 FP8 GEMM: A ({m} x {k}) @ B ({k} x {n}) needs M % {mm} == 0, K % {mk} == 0 and "
                f"N % {mn} == 0 (all positive)")
    return ""


def _check(values, meta, b8, a_scale, b_scale) -> tuple[int, int, int]:
    """(M, K, N) of the operands, or ValueError naming the argument that does not fit."""
    m, k, n = values.shape[0], 2 * values.shape[1], b8.shape[1]
    if why := shape_error(m, k, n):
        raise ValueError(why)
    fp8 = torch.float8_e4m3fn
    if values.dtype != fp8 or b8.dtype != fp8:
        raise ValueError(f"sm90a 2:4 FP8 GEMM: values and b8 must be float8_e4m3fn, got {values.dtype}, {b8.dtype}")
    if not values.is_contiguous():
        raise ValueError("sm90a 2:4 FP8 GEMM: values must be a contiguous (M x K/2) tensor")
    if b8.shape[0] != k or b8.stride(0) != 1 or b8.stride(1) != k:
        raise ValueError(f"sm90a 2:4 FP8 GEMM: b8 must be ({k} x N) column-major (the transpose of a contiguous "
                         f"N x {k}), got shape {tuple(b8.shape)} strides {b8.stride()}")
    if meta.dtype != torch.uint8 or meta.numel() != m * k // 8 or not meta.is_contiguous():
        raise ValueError(f"sm90a 2:4 FP8 GEMM: meta must be {m * k // 8} contiguous bytes (CUTLASS's sm90 layout), "
                         f"got {meta.numel()} {meta.dtype}")
    for name, scale, size in (("a_scale", a_scale, m), ("b_scale", b_scale, n)):
        if scale.dtype != torch.float32 or scale.numel() != size or not scale.is_contiguous():
            raise ValueError(f"sm90a 2:4 FP8 GEMM: {name} must be {size} contiguous float32 values, got "
                             f"{scale.numel()} {scale.dtype}")
    return m, k, n


@functools.cache
def _entry(kind: str, name: str):
    """The library's entry point `kind` ("gemm", "workspace", ...) of configuration `name`."""
    return getattr(load(), f"act24_sp24_fp8_{kind}_{name}")


@functools.cache
def _workspace_bytes(launch: Launch, m: int, n: int, k: int) -> int:
    return _entry("workspace", launch.config.name)(m, n, k, launch.raster, launch.swizzle, launch.sms)


def max_active_clusters() -> dict[str, int]:
    """Per configuration, how many of its clusters fit on this GPU at once (0: the query failed)."""
    return {c.name: _entry("max_active_clusters", c.name)() for c in CONFIGS}


def run(launch: Launch, values, meta, b8, a_scale, b_scale) -> torch.Tensor:
    """One launch of one configuration: (a_scale ⊙ A) @ (B ⊙ b_scale) in bf16 (M x N). A is packed in CUTLASS's sm90
    layout (values M x K/2, meta), b8 (K x N) FP8 column-major, a_scale M floats, b_scale N floats."""
    return _launch(launch, *_check(values, meta, b8, a_scale, b_scale), values, meta, b8, a_scale, b_scale)


def _launch(launch: Launch, m, k, n, values, meta, b8, a_scale, b_scale) -> torch.Tensor:
    out = torch.empty(m, n, dtype=torch.bfloat16, device=values.device)
    workspace = torch.empty(_workspace_bytes(launch, m, n, k), dtype=torch.uint8, device=values.device)
    err = ctypes.create_string_buffer(256)
    status = _entry("gemm", launch.config.name)(
        values.data_ptr(), meta.data_ptr(), b8.data_ptr(), a_scale.data_ptr(), b_scale.data_ptr(), out.data_ptr(),
        m, n, k, launch.raster, launch.swizzle, launch.sms, workspace.data_ptr(),
        torch.cuda.current_stream().cuda_stream, err, len(err))
    if status:
        raise RuntimeError(f"sm90a 2:4 FP8 GEMM {launch.describe()} on {m} x {k} x {n}: {err.value.decode()}")
    return out


def sparse_fp8_gemm(values, meta, b8, a_scale, b_scale) -> torch.Tensor:
    """`run` with the launch `search` chose for the shape."""
    m, k, n = _check(values, meta, b8, a_scale, b_scale)
    return _launch(search(m, k, n).pick, m, k, n, values, meta, b8, a_scale, b_scale)


def launches() -> list[Launch]:
    return [Launch(c, r, s, sms) for c in CONFIGS for r in RASTERS for s in SWIZZLES for sms in SM_CAPS]


def random_operands(m: int, k: int, n: int, seed: int = 0) -> dict:
    """A random 2:4 (M x K) packed by the fused kernel, a random (K x N) B, and the dense FP8 GEMM of the same
    quantized values (cuBLAS): {"packed", "a8" (A in FP8, dense), "b8", "b_scale", "dense"}."""
    from ...sparsity.pattern import mask24
    from ..fp8 import quantize_rowwise_fp8, scaled_mm_rowwise
    from ..fused import PLAIN, sparsify24_rows

    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16)
    a = a * mask24(a)
    bt8, b_scale = quantize_rowwise_fp8(torch.randn(n, k, device="cuda", generator=g, dtype=torch.bfloat16))
    packed = sparsify24_rows(a, mode=PLAIN)[0]
    a8, a_scale = quantize_rowwise_fp8(a)
    return {"packed": packed, "a8": a8, "b8": bt8.t(), "b_scale": b_scale.reshape(-1),
            "dense": scaled_mm_rowwise(a8, a_scale, bt8, b_scale)}


def search(m: int, k: int, n: int, seed: int = 0) -> Choice:
    """The fastest correct launch (`Choice.pick`) for (M x K, 2:4) @ (K x N); RuntimeError when none is correct."""
    key = (gpu_name(), m, k, n)
    if key in _CHOICES:
        return _CHOICES[key]
    if why := shape_error(m, k, n):
        raise ValueError(why)
    ops = random_operands(m, k, n, seed)
    p = ops["packed"]
    candidates = [Candidate(launch, launch.describe(), functools.partial(
        run, launch, p.values, p.meta, ops["b8"], p.scale.reshape(-1), ops["b_scale"])) for launch in launches()]

    def sustained(calls: dict) -> dict:  # interleaved rounds of back-to-back calls
        rounds = {launch: [] for launch in calls}
        for _ in range(FINAL_ROUNDS):
            for launch, call in calls.items():
                rounds[launch].append(event_ms(call, budget_ms=FINAL_ROUND_MS))
        return {launch: statistics.median(t) for launch, t in rounds.items()}

    return autotune(_CHOICES, key, candidates, ops["dense"], TOLERANCE, lambda call: event_ms(call, calls=SCREEN_CALLS),
                    what=f"sm90a 2:4 FP8 GEMM: no launch gives correct results for {m} x {k} x {n}",
                    finalists=FINALISTS, refine=sustained)


def choices() -> dict[str, str]:
    """Every choice of this process: "M x K x N" -> `Choice.describe()`."""
    return {f"{m} x {k} x {n}": c.describe() for (_, m, k, n), c in _CHOICES.items()}
