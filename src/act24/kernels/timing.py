"""Timing and checking on the GPU, shared by the per-shape kernel choices and the benchmarks."""

from __future__ import annotations

import functools
import math
import statistics
from collections.abc import Callable

import torch


def event_ms(fn: Callable[[], object], budget_ms: float = 0.0, max_calls: int = 100, calls: int | None = None) -> float:
    """Median milliseconds of `fn` over `calls` calls, or about `budget_ms` of calls (at least 2), each between two
    CUDA events, after one untimed call (which also sizes the budget)."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    fn()
    end.record()
    end.synchronize()
    n = calls or max(2, min(max_calls, round(budget_ms / max(start.elapsed_time(end), 1e-3))))
    events = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for s, e in events:
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in events)


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    """‖out - ref‖ / ‖ref‖ in float64; inf when out holds a NaN or an infinity."""
    if not torch.isfinite(out).all():
        return math.inf
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30))


@functools.cache
def _device_name(index: int) -> str:
    return torch.cuda.get_device_name(index)


def gpu_name() -> str:
    """The current GPU's name (per-shape choices are kept per GPU model; looked up once per device, not per GEMM)."""
    return _device_name(torch.cuda.current_device())
