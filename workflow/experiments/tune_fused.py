"""Sweep the launch settings of the fused kernels on this GPU (not part of the pipeline).

    python workflow/experiments/tune_fused.py OUT.csv [T F]

Each setting is checked (same bits as the default setting's output) before it is timed with the benchmark
harness (`act24.gpubench.harness.bench_ms`); the defaults in act24.kernels.fused.formats (ROWS_CONFIG,
TOKENS_CONFIG, TRANSPOSE_CONFIG, COLUMNS_CONFIG, ...) were picked from this sweep on an H200 at T = 16384,
F = 16512. Shares of copy bandwidth count the fewest bytes each step must move."""

import dataclasses
import sys

import pandas as pd
import torch

from act24.gpubench import GpuBenchConfig
from act24.gpubench.harness import bench_ms, ceilings
from act24.kernels import fused
from act24.sparsity.pattern import feature_split


def same(a, b) -> bool:
    """Bit equality of two outputs (Packed24s, Kept24s, tensors, or tuples of them; None equals None)."""
    if isinstance(a, (tuple, list)):
        return all(same(u, v) for u, v in zip(a, b))
    if isinstance(a, fused.Packed24):
        return same((a.values, a.meta, a.scale), (b.values, b.meta, b.scale))
    if isinstance(a, fused.Kept24):
        return same((a.values, a.codes), (b.values, b.codes))
    if a is None or b is None:
        return a is None and b is None
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8)) if a.dtype.itemsize == 1 else torch.equal(a, b)


def sweep(rows: list[dict], kernel: str, run, configs, bytes_moved: float, cfg, copy: float) -> None:
    ref = run(None)
    for lc in configs:
        row = {"kernel": kernel, **dataclasses.asdict(lc)}
        try:
            ok = same(run(lc), ref)
        except Exception as exc:  # e.g. a tile that does not fit: a row saying so
            rows.append({**row, "correct": False, "error": str(exc)[:200]})
            continue
        ms = bench_ms(lambda: run(lc), cfg) if ok else float("nan")
        rows.append({**row, "correct": ok, "ms": ms, "share_of_copy_bandwidth": bytes_moved / ms / 1e6 / copy})
        print(rows[-1], flush=True)


def main(out_csv: str, t: int = 16384, f: int = 16512) -> None:
    cfg = GpuBenchConfig(rep_ms=100)
    copy = ceilings(cfg)["copy_GBps"]
    y = torch.randn(t, f, device="cuda", dtype=torch.bfloat16) - 1.6  # about 95% zeros after relu
    g = torch.randn(t, f, device="cuda", dtype=torch.bfloat16)
    L = fused.LaunchConfig
    loops = [L(1, 4096, 4), L(1, 4096, 8), L(2, 4096, 4), L(2, 4096, 8)]
    on_chip = [L(1, 4096, 4, w) for w in (4, 8, 16)]
    whole_max = [L(bm, 4096, w, whole_row_max=True) for bm in (1, 2) for w in (4, 8)]
    tail_block = [L(1, bk, w, whole_row_max=True, tail_block=True) for bk in (2048, 4096) for w in (4, 8)]
    rows: list[dict] = []
    fwd = lambda lc: fused.sparsify24_rows(y, cfg=lc)[0]  # noqa: E731
    sweep(rows, "rows (forward, FP8)", fwd, loops + on_chip + whole_max + tail_block, t * f * (2 + 0.625), cfg, copy)
    bwd = lambda lc: fused.sparsify24_rows(y, grad=g, write_kept=True, cfg=lc)  # noqa: E731
    sweep(rows, "rows (backward, FP8, kept dY1 + Ỹ2)", bwd, loops[:1] + whole_max + tail_block,
          t * f * (4 + 0.625 + 2.125), cfg, copy)
    sweep(rows, "rows (forward, bf16)", lambda lc: fused.sparsify24_rows(y, fp8=False, cfg=lc)[0],
          loops, t * f * (2 + 1.125), cfg, copy)
    sweep(rows, "relu² + FP8, dense",
          lambda lc: fused.quantize_rows(y, fused.FORWARD, cfg=lc or fused.QUANTIZE_CONFIG),
          loops[:1] + on_chip + whole_max[:1], t * f * 3, cfg, copy)
    _, dy1_kept, y2_kept = fused.sparsify24_rows(y, grad=g, write_kept=True)
    y2s = y2_kept.dense()
    sweep(rows, "column stats (max |.|, non-zeros)",
          lambda lc: fused.column_stats(y2s, True, cfg=lc or fused.COLUMNS_CONFIG),
          [L(bm, bk, 4) for bm in (16, 32, 64) for bk in (64, 128)],
          t * f * 2, cfg, copy)
    sweep(rows, "column stats of the kept Ỹ2 and dY1",
          lambda lc: fused.kept_column_stats(y2_kept, dy1_kept, cfg=lc),
          [L(bm, bk, w) for bm in (8, 16, 32) for bk in (64, 128, 256) for w in (2, 4)], t * f * 2.125, cfg, copy)
    d, n_sparse = 4096, f - f // 20
    order = torch.randperm(f, device="cuda")
    dest = fused.feature_destinations(f, order[:n_sparse].sort().values, order[n_sparse:].sort().values)
    sparse, dense = (torch.randn(n, d, device="cuda", dtype=torch.bfloat16) for n in (n_sparse, f - n_sparse))
    for transpose in (False, True):
        sweep(rows, f"gather rows ({'transposed' if transpose else 'in place'})",
              lambda lc, transpose=transpose: fused.gather_rows(sparse, dense, dest, transpose,
                                                                cfg=lc or fused.GATHER_CONFIG),
              [L(bm, bk, w) for bm in (32, 64, 128) for bk in (32, 64, 128) for w in (4, 8)], f * d * 4, cfg, copy)
    perm = torch.randperm(t, device="cuda")
    amax, counts = fused.column_stats(y2s, True)
    split = feature_split(y2s, 0.05, 128, counts)
    frac = len(split[0]) / f
    sweep(rows, "tokens (FP8, 95/5)", lambda lc: fused.sparsify24_tokens(y2s, perm, *split, amax=amax,
                                                                          cfg=lc or fused.TOKENS_CONFIG),
          [L(bf, bt, w) for bf in (16, 32, 64) for bt in (64, 128) for w in (2, 4)],
          t * f * (2 + frac * 0.625 + (1 - frac)), cfg, copy)
    sweep(rows, "tokens from the kept form (FP8, 95/5)",
          lambda lc: fused.sparsify24_tokens(y2_kept, perm, *split, amax=amax, cfg=lc),
          [L(bf, bt, w) for bf in (32, 64, 128) for bt in (32, 64, 128) for w in (1, 2, 4)],
          t * f * (1.125 + frac * 0.625 + (1 - frac)), cfg, copy)
    x = torch.randn(t, d, device="cuda", dtype=torch.bfloat16)
    sweep(rows, "quantize_transposed (x[perm], T x 4096; with column stats)",
          lambda lc: fused.quantize_transposed(x, perm, cfg=lc or fused.TRANSPOSE_CONFIG),
          [L(bf, bt, w) for bf in (16, 32, 64) for bt in (64, 128) for w in (2, 4)], t * d * 3, cfg, copy)
    pd.DataFrame(rows).to_csv(out_csv, index=False)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
