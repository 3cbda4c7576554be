"""Where do do_bench's extra 0.3-0.5 ms (over the profiler's span) come from? Fused and compiled dense FP8 FFN,
7B-like, 16k tokens: timings three ways (back-to-back, per-call events with and without an L2 flush), in 4
interleaved rounds; host launch time; torch's sync debug mode over one forward and one step; idle and busy time
per call from profiler traces. Made timing_methods_5d67ef9.txt at 5d67ef9:
    python3 reference/h200/fused/earlier/timing_methods.py"""
import collections
import json
import statistics
import sys
import tempfile
import time
import warnings

import torch

from act24.gpubench import COMPILED_DENSE_FP8_FORWARD, COMPILED_DENSE_FP8_STEP, ffn_inputs
from act24.kernels.backends import FusedFp8Sm90Backend
from act24.sparsity.ffn import SparseRecipe, sparse_sqrelu_ffn

t, d, f = 16384, 4096, 16512
x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
params = [v.clone().requires_grad_() for v in (x, w1, w2)]
backend, recipe = FusedFp8Sm90Backend(), SparseRecipe(split_multiple=128)
cache = torch.empty(int(256e6 // 4), dtype=torch.int, device="cuda")


def step():
    for p in params:
        p.grad = None
    sparse_sqrelu_ffn(*params, recipe, backend).backward(dy)


def forward():
    with torch.no_grad():
        sparse_sqrelu_ffn(*params, recipe, backend)


calls = {"fused fwd": forward, "dense fwd": lambda: COMPILED_DENSE_FP8_FORWARD(x, w1, w2),
         "fused step": step, "dense step": lambda: COMPILED_DENSE_FP8_STEP(x, w1, w2, dy)}
for fn in calls.values():
    for _ in range(3):
        fn()
torch.cuda.synchronize()


def back_to_back(fn, n):
    torch.cuda.synchronize()
    s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    s.record()
    for _ in range(n):
        fn()
    e.record()
    torch.cuda.synchronize()
    return s.elapsed_time(e) / n


def flushed(fn, n, flush=True):
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for s, e in ev:
        if flush:
            cache.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in ev)


def host(fn, n):
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(n):
        fn()
    h = (time.perf_counter() - start) / n
    torch.cuda.synchronize()
    return h * 1e3


print("host launch ms per call:", {k: round(host(fn, 10), 3) for k, fn in calls.items()}, flush=True)
res = collections.defaultdict(list)
for r in range(4):
    for name, fn in calls.items():
        n = 30 if "fwd" in name else 10
        res[name, "back-to-back"].append(back_to_back(fn, n))
        res[name, "per-call events, flush"].append(flushed(fn, n))
        res[name, "per-call events, no flush"].append(flushed(fn, n, flush=False))
for (name, how), v in res.items():
    print(f"{name:11s} {how:26s} median {statistics.median(v):.3f} ms  rounds {' '.join(f'{u:.3f}' for u in v)}")
for how in ("back-to-back", "per-call events, flush", "per-call events, no flush"):
    for p in ("fwd", "step"):
        print(f"speedup {p:4s} {how:26s} {statistics.median(res['dense ' + p, how]) / statistics.median(res['fused ' + p, how]):.3f}")

torch.cuda.set_sync_debug_mode("warn")
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    forward()
    step()
    torch.cuda.synchronize()
torch.cuda.set_sync_debug_mode(0)
print(f"sync debug: {len(caught)} warnings")
for w in caught[:10]:
    print("  ", str(w.message)[:300], w.filename, w.lineno)


def trace(fn, n, flush):
    torch.cuda.synchronize()
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA]) as prof:
        for _ in range(n):
            if flush:
                cache.zero_()
            fn()
        torch.cuda.synchronize()
    with tempfile.NamedTemporaryFile(suffix=".json") as tr:
        prof.export_chrome_trace(tr.name)
        events = json.load(open(tr.name))["traceEvents"]
    return sorted((e for e in events if e.get("ph") == "X" and e.get("cat") in ("kernel", "gpu_memset", "gpu_memcpy")),
                  key=lambda e: e["ts"])


for name in calls:
    for flush in (False, True):
        ops = trace(calls[name], 10, flush)
        per = len(ops) // 10
        spans, idles, busys = [], [], []
        for i in range(10):
            chunk = ops[i * per:(i + 1) * per]
            if flush:
                chunk = chunk[1:]  # the flush's fill kernel opens each call
            span = chunk[-1]["ts"] + chunk[-1]["dur"] - chunk[0]["ts"]
            busy = sum(e["dur"] for e in chunk)
            spans.append(span / 1e3)
            busys.append(busy / 1e3)
            idles.append((span - busy) / 1e3)
        print(f"{name:11s} flush={flush!s:5s} ops/call {per}: span " + " ".join(f"{s:.3f}" for s in spans))
        print(f"{'':11s} {'':11s} idle " + " ".join(f"{s:.3f}" for s in idles) + "   busy " + " ".join(f"{s:.3f}" for s in busys))
        if flush:
            by = collections.defaultdict(list)
            for i in range(10):
                for e in ops[i * per + 1:(i + 1) * per]:
                    by[e["name"][:60]].append(e["dur"])
            for k, v in sorted(by.items(), key=lambda kv: -sum(kv[1]))[:8]:
                print(f"     busy {sum(v) / 10 / 1e3:.3f} ms/call  first {v[0] / 1e3:.3f}  {k}")
