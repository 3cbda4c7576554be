"""The benchmark's GEMM table (`act24.gpubench.gemm.gemm_rows`) alone: every configured FFN shape's down-projection
GEMM, dense and 2:4, bf16 and FP8, each backend checked then timed, without the FFN sweep.

    python workflow/experiments/gemm_table.py OUT.csv [TOKENS ...]

Prints each row, the cuSPARSELt algorithm and act24's sm90a launch chosen for every shape."""

import sys

import pandas as pd
import torch

from act24.gpubench.config import GpuBenchConfig
from act24.gpubench.gemm import gemm_rows
from act24.kernels import cusparselt, sm90_gemm


def main(out: str, tokens: list[int]) -> None:
    cfg = GpuBenchConfig()
    rows = []
    for t in tokens:
        for shape, (d, f) in cfg.shapes.items():
            rows += gemm_rows(cfg, t, d, f, cfg.sweep_zero_frac, shape)
            torch.cuda.empty_cache()
    table = pd.DataFrame(rows)
    table.to_csv(out, index=False)
    cols = [c for c in ("shape", "M", "K", "N", "gemm", "status", "rel_error", "ms", "speedup_vs_dense", "speedup_low",
                        "speedup_high") if c in table]
    print(table[cols].to_string(index=False))
    for shape, choice in cusparselt.choices().items():
        print(f"cuSPARSELt {shape}: {choice}")
    for shape, choice in sm90_gemm.choices().items():
        print(f"act24 sm90a {shape}: {choice}")


if __name__ == "__main__":
    main(sys.argv[1], [int(t) for t in sys.argv[2:]] or [16384])
