"""Measuring on the GPU: inputs, the correctness gate, CUDA-event timing in interleaved rounds, kernel breakdowns."""

from __future__ import annotations

import functools
import math
import os
import random
import re
import statistics
from collections.abc import Callable
from dataclasses import dataclass

import torch

from ..io import reading
from ..kernels.backends import Backend, BackendUnavailable, select_backend
from ..kernels.timing import event_ms, rel_error  # noqa: F401 (the benchmarks' helpers, here with the others)
from .config import GpuBenchConfig


def backend_here(name: str) -> tuple[Backend | None, str]:
    """(backend, "") when this GPU can run the 2:4 backend `name`, else (None, "unavailable: why"). Chosen through
    `select_backend` like training's; the benchmark checks every result itself (`gated`), so only the probe runs."""
    try:
        return select_backend(name, "cuda", check=False)[0], ""
    except BackendUnavailable as exc:
        return None, str(exc)


def trained_zero_fracs(cfg: GpuBenchConfig, f: int, seed: int = 0) -> torch.Tensor:
    """Per-feature zero fractions (f,) following the trained profile's distribution, features shuffled."""
    import numpy as np

    with reading(cfg.trained_profile, "feature-density profile (npz with 'density')",
                 hint="gpu_bench.trained_profile names it (resources/README.md says how it was made)"), \
            np.load(cfg.trained_profile) as z:
        density = np.sort(z["density"][cfg.trained_layer])
    density = np.interp(np.linspace(0, 1, f), np.linspace(0, 1, len(density)), density)
    density = np.clip(density, 1e-4, 1 - 1e-4)[np.random.default_rng(seed).permutation(f)]
    return torch.tensor(1 - density, dtype=torch.float32)


def label(zero_frac) -> dict:
    """Row columns for a sparsity level: a float (synthetic, uniform) or per-feature zero fractions."""
    if isinstance(zero_frac, torch.Tensor):
        return {"activations": "trained profile", "zero_frac": round(float(zero_frac.mean()), 4)}
    return {"activations": "synthetic", "zero_frac": zero_frac}


def ffn_inputs(t: int, d: int, f: int, zero_frac, seed: int = 0, device: str = "cuda"):
    """x (t x d), W1 (f x d), W2 (d x f), dY (t x d) in bf16 on `device`, never zeros, drawn from `seed` (each
    benchmark process its own). W1's first column and x's first feature (constant 1) shift Y1 so that a
    `zero_frac` share of relu(Y1) is zero (a float, or one value per feature)."""
    g = torch.Generator(device=device).manual_seed(seed)
    x = torch.randn(t, d, device=device, generator=g)
    x[:, 0] = 1.0
    w1 = torch.randn(f, d, device=device, generator=g) / math.sqrt(d - 1)
    keep = 1.0 - torch.as_tensor(zero_frac, dtype=torch.float32)
    w1[:, 0] = -torch.distributions.Normal(0.0, 1.0).icdf(keep).to(device)
    w2 = torch.randn(d, f, device=device, generator=g) / math.sqrt(f * float(keep.mean()))
    dy = torch.randn(t, d, device=device, generator=g)
    return [v.bfloat16() for v in (x, w1, w2, dy)]


def bench_ms(fn: Callable[[], object], cfg: GpuBenchConfig, rep_ms: float | None = None) -> float:
    """Median milliseconds of `fn` (CUDA events via triton.testing.do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=cfg.warmup_ms, rep=rep_ms or cfg.rep_ms, return_mode="median"))


def worst_error(outs, refs) -> float:
    """The largest relative error of several outputs against their references (inf for any non-finite)."""
    return max(rel_error(o, r) for o, r in zip(outs, refs, strict=True))


def gated(rows: list[dict], base: dict, check: Callable[[], float], tol: float, time_it: Callable[..., float],
          pending: list | None = None):
    """Append a row: the correctness check first; only a correct path is timed. With `pending`, a correct row
    is timed later by `time_rounds` (time_it then takes the milliseconds to spend per round)."""
    try:
        err = check()
    except Exception as exc:  # a failing kernel is a result to report
        rows.append({**base, "status": f"failed: {type(exc).__name__}: {str(exc)[:200]}", "rel_error": math.nan,
                     "ms": math.nan})
        return
    if not err <= tol:
        rows.append({**base, "status": f"incorrect: relative error {err:.3g} > {tol}", "rel_error": err,
                     "ms": math.nan})
        return
    if pending is None:
        rows.append({**base, "status": "ok", "rel_error": err, "ms": time_it()})
    else:
        rows.append({**base, "status": "ok", "rel_error": err, "ms": math.nan})
        pending.append((rows[-1], time_it))


ROW_ONLY = ("status", "rel_error", "ms", "ms_min", "ms_max")  # a row's results, not what identifies it
HOST_BOUND = 1.2  # a path whose timed median exceeds its kernels' sum by this factor waits on the host
STREAM, GRAPH = "stream", "CUDA graph"  # how a path's kernels are launched: one by one, or replayed as one graph


@dataclass(frozen=True)
class Checked:
    """A correctness check run once: its error, or the exception it raised (`result` raises it again, so that
    `gated` reports it)."""

    error: float | None
    exception: Exception | None = None

    def result(self) -> float:
        if self.exception is not None:
            raise self.exception
        return self.error


def checked(check: Callable[[], float]) -> Checked:
    try:
        return Checked(check())
    except Exception as exc:  # noqa: BLE001 - a failing kernel is a result to report
        return Checked(None, exc)


RELATIVE_TOLERANCE = 1.25  # an FP8 path may err at most this much more than the dense FP8 path on the same inputs


def relative_tolerances(errors: dict[tuple[str, str, bool], float], limit: float,
                        factor: float = RELATIVE_TOLERANCE,
                        inherent: dict[tuple[str, bool], float] | None = None
                        ) -> dict[tuple[str, bool], tuple[float, str]]:
    """Per pass and sparsity: (the relative error allowed, why) for every path of a precision whose own
    quantization error sets the scale (FP8). Dense paths: `factor` x the smallest error of a dense path of that pass
    (`errors`: (pass, path, sparse) -> error against the fp32 reference), when that path is within the absolute
    `limit` itself; else `limit`. 2:4 paths: the same, or `factor` x `inherent[pass, True]` where that is larger and
    within `limit`: the error of FP8 2:4 math itself (act24.kernels.emulation), which selects its masks on
    FP8-rounded values."""
    out = {}
    for ps in dict.fromkeys(k[0] for k in errors):
        dense = {path: e for (p, path, sparse), e in errors.items() if p == ps and not sparse and e <= limit}
        if dense:
            path = min(dense, key=dense.get)
            out[ps, False] = (factor * dense[path], f"{factor:g} x the error of {path}, {dense[path]:.3g}")
        else:
            out[ps, False] = (limit, f"the configured limit {limit:g} (no dense path of this precision within it)")
        own = (inherent or {}).get((ps, True))
        if own is not None and own <= limit and factor * own > out[ps, False][0]:
            out[ps, True] = (factor * own, f"{factor:g} x the error of FP8 2:4 math itself (exact GEMMs of the same "
                                           f"FP8 operands), {own:.3g}")
        else:
            out[ps, True] = out[ps, False]
    return out


def time_rounds(pending: list[tuple[dict, Callable[[float], float]]], cfg: GpuBenchConfig, seed: int = 0,
                profile: Callable[[dict], list[dict]] | None = None) -> tuple[list[dict], list[dict]]:
    """Time the rows `gated` left pending in cfg.rounds interleaved rounds: each row once per round for
    cfg.round_ms, in an order shuffled anew every round (random.Random(seed)), so that no path keeps its place
    after another (a position effect of 3-10% was measured with a fixed cyclic order). Each row gets its median
    over the rounds and its rounds' spread.

    Returns (records, kernels): one record per row and round (the round's median ms, its position in the round,
    the seed, and the GPU's SM clock, power and temperature right after it, `gpu_state`), and, with `profile`
    (row -> its kernels, `kernel_breakdown`), each row's kernels profiled right after its slot in every round:
    kernel times measured in the same sustained rounds as the timings, from which the tables take their bounds."""
    rng = random.Random(seed)
    times: list[list[float]] = [[] for _ in pending]
    records: list[dict] = []
    kernels: list[dict] = []
    for r in range(cfg.rounds):
        for position, i in enumerate(rng.sample(range(len(pending)), len(pending))):
            row, time_it = pending[i]
            times[i].append(time_it(cfg.round_ms))
            keys = {k: v for k, v in row.items() if k not in ROW_ONLY}
            records.append({**keys, "round": r, "position": position, "order_seed": seed, "ms": times[i][-1],
                            **gpu_state()})
            if profile is not None:
                kernels += [{**keys, "round": r, **k} for k in profile(row)]
    for (row, _), t in zip(pending, times):
        row["ms"] = statistics.median(t)
        row["ms_min"], row["ms_max"] = min(t), max(t)
    pending.clear()
    return records, kernels


@functools.cache
def _nvml() -> tuple[object, object] | str:
    """(pynvml, this process's device handle), or why NVML cannot be read here."""
    try:
        import pynvml
    except ImportError:
        return "unavailable: the package nvidia-ml-py is not installed (the gpu extra has it)"
    try:
        pynvml.nvmlInit()
        index = torch.cuda.current_device()
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible:  # NVML numbers every GPU of the machine; CUDA only the visible ones
            index = int(visible.split(",")[index])
        return pynvml, pynvml.nvmlDeviceGetHandleByIndex(index)
    except Exception as exc:  # noqa: BLE001 - no NVML is a recorded fact, not an error
        return f"unavailable: {type(exc).__name__}: {str(exc)[:120]}"


def nvml_status() -> str:
    """"ok" when `gpu_state` reads the GPU, else why not (written to the benchmark's sidecar)."""
    return "ok" if isinstance(_nvml(), tuple) else _nvml()


def gpu_state() -> dict:
    """SM clock (MHz), power (W) and temperature (C) of this process's GPU now, or {} without NVML."""
    nvml = _nvml()
    if not isinstance(nvml, tuple):
        return {}
    pynvml, handle = nvml
    return {"sm_clock_mhz": pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
            "power_w": pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,
            "temperature_c": pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU)}


def graphed(fn: Callable[[], object]) -> Callable[[], object]:
    """`fn` captured in a CUDA graph (after warm-up calls on a side stream, as torch.cuda.graphs asks): a call
    replays the whole graph with one launch and returns the graph's outputs, which every replay refreshes. What a
    graph-captured training step would see of a path whose own launches leave the GPU waiting on the host."""
    stream = torch.cuda.Stream()
    stream.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(stream):
        for _ in range(3):
            fn()
    torch.cuda.current_stream().wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = fn()

    def replay():
        graph.replay()
        return out

    return replay


def host_bound(rows: list[dict], kernels: list[dict], factor: float) -> set[tuple[str, str]]:
    """(pass, path) of the timed rows whose median exceeds `factor` x the median over rounds of their kernels' sum
    (`kernels`: `time_rounds`' profiles)."""
    sums: dict[tuple, dict] = {}
    for k in kernels:
        per_round = sums.setdefault((k["pass"], k["path"]), {})
        per_round[k.get("process", 0), k["round"]] = per_round.get((k.get("process", 0), k["round"]), 0.0) + k["ms"]
    return {(r["pass"], r["path"]) for r in rows if r.get("status") == "ok" and (r["pass"], r["path"]) in sums
            and r["ms"] > factor * statistics.median(sums[r["pass"], r["path"]].values())}


# Kernels that are matrix products: cuBLAS / CUTLASS / cuSPARSELt names (sm90_xmma_gemm_*, nvjet_*, cutlass::...
# GemmUniversal..., *sparse*gemm*). Everything else (Triton kernels, torch's elementwise and copy kernels, CUTLASS's
# and cuSPARSELt's compressors) is not.
GEMM_KERNEL = re.compile(r"gemm|xmma|nvjet", re.IGNORECASE)


def is_gemm(kernel: str) -> bool:
    return bool(GEMM_KERNEL.search(kernel)) and "compress" not in kernel.lower()


def kernel_breakdown(fn: Callable[[], object], iters: int) -> list[dict]:
    """The device kernels one call of `fn` runs: name, calls and milliseconds per call of `fn` (torch.profiler over
    `iters` calls, after one unprofiled call). Whether a kernel is a GEMM is decided from its name (`is_gemm`)
    where the tables are made."""
    from torch.profiler import ProfilerActivity, profile

    fn()
    torch.cuda.synchronize()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        for _ in range(iters):
            fn()
        torch.cuda.synchronize()
    kernels: dict[str, list[float]] = {}
    for ev in prof.events():
        if ev.device_type == torch.autograd.DeviceType.CUDA and ev.device_time > 0:
            kernels.setdefault(ev.name, []).append(ev.device_time / 1000.0)
    return [{"kernel": name[:160], "calls": len(t) / iters, "ms": sum(t) / iters}
            for name, t in sorted(kernels.items(), key=lambda kv: -sum(kv[1]))]


def ceilings(cfg: GpuBenchConfig) -> dict[str, float]:
    """Device copy bandwidth (bytes read + written) and dense bf16 GEMM throughput, measured here."""
    src = torch.randn(256 * 2**20, device="cuda", dtype=torch.bfloat16)  # 512 MiB
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src), cfg)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = bench_ms(lambda: a @ b, cfg)
    return {"copy_GBps": 2 * src.numel() * 2 / copy_ms / 1e6, "dense_bf16_TFLOPs": 2 * 8192**3 / mm_ms / 1e9}
