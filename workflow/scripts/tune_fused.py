"""Sweep the launch settings of the fused sparsify kernels on this GPU (not part of the pipeline).

    python workflow/scripts/tune_fused.py OUT.csv [T F]

Each setting is checked (same bits as the default setting's output) before it is timed; the defaults in
act24.kernels.fused (ROWS_CONFIG, TOKENS_CONFIG) were picked from this sweep on an H200
(reference/h200/fused/tuning/)."""

import itertools
import sys

import pandas as pd
import torch

from act24.gpubench import GpuBenchConfig, bench_ms, ceilings
from act24.kernels import fused
from act24.sparsity.pattern import feature_split


def same(a: fused.Packed24, b: fused.Packed24) -> bool:
    return (torch.equal(a.values.view(torch.uint8), b.values.view(torch.uint8)) and torch.equal(a.meta, b.meta)
            and torch.equal(a.scale, b.scale))


def main(out: str, t: int = 16384, f: int = 16384) -> None:
    cfg = GpuBenchConfig(rep_ms=100)
    copy = ceilings(cfg)["copy_GBps"]
    y = torch.randn(t, f, device="cuda", dtype=torch.bfloat16) - 1.6  # about 95% zeros after relu
    rows = []
    ref = fused.sparsify24_rows(y)[0]
    for bm, bk, warps in itertools.product((1, 2, 4), (512, 1024, 2048, 4096), (4, 8)):
        lc = fused.LaunchConfig(bm, bk, warps)
        if f % bk or bm * bk > 16384:
            continue
        ok = same(fused.sparsify24_rows(y, cfg=lc)[0], ref)
        ms = bench_ms(lambda: fused.sparsify24_rows(y, cfg=lc), cfg) if ok else float("nan")
        rows.append({"kernel": "rows (forward, FP8)", "block_m": bm, "block_k": bk, "num_warps": warps,
                     "correct": ok, "ms": ms, "share_of_copy_bandwidth": t * f * (2 + 0.625) / ms / 1e6 / copy})
        print(rows[-1], flush=True)
    y2s = fused.sparsify24_rows(y, write_dense=True)[1]
    perm = torch.randperm(t, device="cuda")
    split = feature_split(y2s, 0.05, 128)
    ref = fused.sparsify24_tokens(y2s, perm, *split)[0]
    frac = len(split[0]) / f
    for bf, bt, warps in itertools.product((16, 32, 64), (64, 128), (2, 4, 8)):
        lc = fused.LaunchConfig(bf, bt, warps)
        try:
            ok = same(fused.sparsify24_tokens(y2s, perm, *split, cfg=lc)[0], ref)
        except Exception as exc:  # e.g. a tile that does not fit: a row saying so
            rows.append({"kernel": "tokens (FP8, 95/5)", "block_m": bf, "block_k": bt, "num_warps": warps,
                         "correct": False, "error": str(exc)[:200]})
            continue
        ms = bench_ms(lambda: fused.sparsify24_tokens(y2s, perm, *split, cfg=lc), cfg) if ok else float("nan")
        rows.append({"kernel": "tokens (FP8, 95/5)", "block_m": bf, "block_k": bt, "num_warps": warps, "correct": ok,
                     "ms": ms, "share_of_copy_bandwidth":
                     t * f * (2 + frac * 0.625 + (1 - frac)) / ms / 1e6 / copy})
        print(rows[-1], flush=True)
    pd.DataFrame(rows).to_csv(out, index=False)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
