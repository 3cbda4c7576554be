"""act24's sm90a 2:4 FP8 GEMM next to xformers' kernel of the same tile and cluster, on one GEMM shape: how many
clusters fit per configuration, host microseconds per call, GPU time in interleaved sustained rounds and under CUDA
graph replay (no host work between kernels), and every configuration's best launch at the power limit.

    python workflow/experiments/sm90_gemm_probe.py OUT.json [M K N ...]
"""

import json
import statistics
import sys
import time

import torch

from act24.kernels import sm90_gemm
from act24.kernels.cuda12 import import_xformers_ops
from act24.kernels.fp8 import scaled_mm_rowwise
from act24.kernels.sm90_gemm.gemm import Launch, random_operands
from act24.kernels.timing import event_ms


def host_us(fn, calls=200) -> float:
    fn()
    torch.cuda.synchronize()
    start = time.perf_counter()
    for _ in range(calls):
        fn()
    host = (time.perf_counter() - start) / calls * 1e6
    torch.cuda.synchronize()
    return host


def graph_ms(fn, calls=10) -> float:
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        fn()
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        for _ in range(calls):
            fn()
    return event_ms(graph.replay, calls=5) / calls


def probe(m: int, k: int, n: int) -> dict:
    ops = random_operands(m, k, n, seed=1)
    p, b8, b_scale = ops["packed"], ops["b8"], ops["b_scale"]
    args = (p.values, p.meta, b8, p.scale.reshape(-1), b_scale)
    xops, _ = import_xformers_ops()
    xf_meta = xops._sparse24_sm90_cutlass_compress(ops["a8"])[1]  # the bytes of p.meta, in the form xformers takes
    first = sm90_gemm.CONFIGS[0]
    calls = {
        "dense FP8 (cuBLAS)": lambda: scaled_mm_rowwise(ops["a8"], p.scale, b8.t(), b_scale.reshape(-1, 1)),
        "xformers (128x256x128, 2x1, raster N, swizzle 8, 128 SMs)": lambda: xops._sparse24_fp8_sm90_cutlass_gemm(
            p.values, xf_meta, b8, a_scale=p.scale, b_scale=b_scale.reshape(1, -1)),
        "act24, xformers' launch": lambda: sm90_gemm.run(Launch(first, 1, 8, 128), *args),
        "act24, first config, defaults": lambda: sm90_gemm.run(Launch(first), *args),
        "act24, searched": lambda: sm90_gemm.sparse_fp8_gemm(*args),
    }
    out = {"shape": [m, k, n], "search": sm90_gemm.search(m, k, n).describe(),
           "tried": list(sm90_gemm.search(m, k, n).tried), "max_active_clusters": sm90_gemm.gemm.max_active_clusters()}
    ref = calls["xformers (128x256x128, 2x1, raster N, swizzle 8, 128 SMs)"]()
    out["act24 vs xformers (max abs difference)"] = float((calls["act24, searched"]() - ref).abs().max())
    out["host_us"] = {name: host_us(fn) for name, fn in calls.items()}
    out["graph_ms"] = {name: graph_ms(fn) for name, fn in calls.items()}
    rounds = {name: [] for name in calls}
    for r in range(5):
        for name in list(calls)[r % len(calls):] + list(calls)[:r % len(calls)]:
            rounds[name].append(event_ms(calls[name], budget_ms=40))
    out["sustained_ms"] = {name: statistics.median(t) for name, t in rounds.items()}
    return out


def sustained_by_config(m: int, k: int, n: int, round_ms: float = 150, rounds: int = 3) -> dict:
    """Each configuration's best launch of a short burst, then all of them (and dense FP8, cuSPARSELt's searched GEMM
    alone) timed in interleaved rounds of round_ms of calls after 300 ms of heating: which kernel holds up at the
    power limit."""
    from act24.kernels import cusparselt
    from act24.kernels.sm90_gemm.configs import RASTERS, SWIZZLES

    ops = random_operands(m, k, n, seed=2)
    p, b8, b_scale = ops["packed"], ops["b8"], ops["b_scale"]
    args = (p.values, p.meta, b8, p.scale.reshape(-1), b_scale)
    calls = {}
    for c in sm90_gemm.CONFIGS:
        burst = {launch: event_ms(lambda launch=launch: sm90_gemm.run(launch, *args), calls=4)
                 for launch in (Launch(c, r, s) for r in RASTERS for s in SWIZZLES)}
        best = min(burst, key=burst.get)
        calls[best.describe()] = lambda best=best: sm90_gemm.run(best, *args)
    a8 = ops["a8"]
    calls["dense FP8 (cuBLAS)"] = lambda: scaled_mm_rowwise(a8, p.scale, b8.t(), b_scale.reshape(-1, 1))
    compressed = torch._cslt_compress(a8)
    calls["cuSPARSELt searched, GEMM alone"] = lambda: cusparselt.sparse_mm(compressed, b8, m)
    calls["cuSPARSELt searched, GEMM alone"]()
    heat = calls["dense FP8 (cuBLAS)"]
    event_ms(heat, budget_ms=300, max_calls=1000)
    times = {name: [] for name in calls}
    names = list(calls)
    for r in range(rounds):
        for name in names[r:] + names[:r]:
            times[name].append(event_ms(calls[name], budget_ms=round_ms, max_calls=1000))
    return {name: statistics.median(t) for name, t in sorted(times.items(), key=lambda kv: statistics.median(kv[1]))}


def main(path: str, shapes: list[int]) -> None:
    shapes = shapes or [16384, 16512, 4096, 16384, 20736, 5120]
    results = [probe(*shapes[i:i + 3]) for i in range(0, len(shapes), 3)]
    for r in results:
        r["sustained_by_config_ms"] = sustained_by_config(*r["shape"])
    for r in results:
        print(json.dumps({k: v for k, v in r.items() if k != "tried"}, indent=1))
    with open(path, "w") as f:
        json.dump(results, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1], [int(v) for v in sys.argv[2:]])
