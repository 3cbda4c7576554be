"""Profile the fused FFN step on this GPU (not part of the pipeline): where device and host time go.

    python workflow/scripts/profile_fused.py device [T d F]   # torch.profiler over 5 forward + backward steps
    python workflow/scripts/profile_fused.py host [T d F]     # host time per call, then cProfile of 20 steps
    python workflow/scripts/profile_fused.py timeline [T d F] # do_bench times and the device timeline of the
                                                              # fused and the compiled dense FP8 FFN: busy, idle

Defaults: the 7B-like FFN at 16k tokens (device, timeline), the 1.5B-like at 1k tokens (host: GPU work too small
to hide it). reference/h200/fused/earlier/profile_* and host_profile_*, and the timeline_*.txt files there, came
from it."""

import collections
import cProfile
import json
import pstats
import sys
import tempfile
import time

import torch

from act24.gpubench import COMPILED_DENSE_FP8_FORWARD, COMPILED_DENSE_FP8_STEP, GpuBenchConfig, bench_ms, ffn_inputs
from act24.kernels.backends import FusedFp8Sm90Backend
from act24.sparsity.ffn import SparseRecipe, sparse_sqrelu_ffn


def main(what: str, t: int | None = None, d: int | None = None, f: int | None = None) -> None:
    t, d, f = (t, d, f) if f else ((1024, 2048, 8448) if what == "host" else (16384, 4096, 16512))
    x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
    params = [v.clone().requires_grad_() for v in (x, w1, w2)]
    backend, recipe = FusedFp8Sm90Backend(), SparseRecipe(split_multiple=128)

    def step():
        for p in params:
            p.grad = None
        sparse_sqrelu_ffn(*params, recipe, backend).backward(dy)

    def forward():
        with torch.no_grad():
            sparse_sqrelu_ffn(*params, recipe, backend)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    print(f"T={t} d={d} F={f}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if what == "timeline":
        dense_step = lambda: COMPILED_DENSE_FP8_STEP(x, w1, w2, dy)  # noqa: E731
        dense_forward = lambda: COMPILED_DENSE_FP8_FORWARD(x, w1, w2)  # noqa: E731
        calls = {"fused step": step, "fused fwd": forward, "dense step": dense_step, "dense fwd": dense_forward}
        for fn in calls.values():
            fn()
        for name in ("fused step", "fused fwd", "dense step", "dense fwd", "fused step", "fused fwd"):
            print(f"{name}: do_bench median {bench_ms(calls[name], GpuBenchConfig()):.3f} ms", flush=True)
        for name, fn in calls.items():
            timeline(fn, name)
        return
    if what == "device":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=70))
        return
    for name, fn in (("fwd", forward), ("step", step)):
        start = time.perf_counter()
        for _ in range(20):
            fn()
        host = (time.perf_counter() - start) / 20
        torch.cuda.synchronize()
        print(f"{name}: host {host * 1e3:.2f} ms per call (launch only), with sync "
              f"{(time.perf_counter() - start) / 20 * 1e3:.2f} ms")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


def timeline(fn, label: str, n: int = 10) -> None:
    """Device ops of n back-to-back calls from a profiler trace: busy time per kernel, idle time between ops
    (launch gaps) and the pairs of ops around the largest idle shares."""
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            fn()
        torch.cuda.synchronize()
    with tempfile.NamedTemporaryFile(suffix=".json") as trace:
        prof.export_chrome_trace(trace.name)
        events = json.load(open(trace.name))["traceEvents"]
    ops = sorted((e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
                 key=lambda e: e["ts"])
    busy = sum(e["dur"] for e in ops)
    span = ops[-1]["ts"] + ops[-1]["dur"] - ops[0]["ts"]
    idle_after = collections.Counter()
    for a, b in zip(ops, ops[1:]):
        if (gap := b["ts"] - a["ts"] - a["dur"]) > 3:  # microseconds
            idle_after[a["name"][:60], b["name"][:60]] += gap
    print(f"\n{label}: {n} calls, span {span / 1e3 / n:.3f} ms per call, kernels busy {busy / 1e3 / n:.3f} ms per "
          f"call, idle {(span - busy) / 1e3 / n:.3f} ms per call, {len(ops) // n} device ops per call")
    for (before, after), gap in idle_after.most_common(10):
        print(f"  idle {gap / n:8.1f} us per call  after {before}  before {after}")
    per_kernel = collections.Counter()
    for e in ops:
        per_kernel[e["name"][:70]] += e["dur"]
    for name, us in per_kernel.most_common(14):
        print(f"  busy {us / n / 1e3:7.3f} ms  {name}")


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
