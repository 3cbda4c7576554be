"""The row and column scales of an FP8 GEMM applied to its bf16 output in one pass, for GEMMs that take no per-row
scale (cuSPARSELt on sm90, `kernels.cusparselt`)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bits import _round_bf16
from .formats import LaunchConfig

SCALE_CONFIG = LaunchConfig(block_m=32, block_k=128, num_warps=4)  # block_k: columns


@triton.jit
def _scale_kernel(out_ptr, a_ptr, b_ptr, M, N, BM: tl.constexpr, BN: tl.constexpr):
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    ok = (rows < M)[:, None] & (cols < N)[None, :]
    offs = rows[:, None].to(tl.int64) * N + cols[None, :]
    x = tl.load(out_ptr + offs, mask=ok, other=0.0).to(tl.float32)
    x = x * tl.load(a_ptr + rows, mask=rows < M, other=0.0)[:, None] * tl.load(b_ptr + cols, mask=cols < N,
                                                                                other=0.0)[None, :]
    tl.store(out_ptr + offs, _round_bf16(x).to(tl.bfloat16), mask=ok)  # nearest even, interpreted too


def scale_rows_cols_(out: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor,
                     cfg: LaunchConfig = SCALE_CONFIG) -> torch.Tensor:
    """out[i, j] *= a_scale[i] * b_scale[j] in place (out: (M x N) bf16, contiguous; scales fp32, M and N values,
    any shape), rounded once to bf16. Returns out."""
    m, n = out.shape
    if out.dtype != torch.bfloat16 or not out.is_contiguous() or a_scale.numel() != m or b_scale.numel() != n:
        raise ValueError(f"scale_rows_cols_: a contiguous (M x N) bf16 output and M, N scales, got "
                         f"{tuple(out.shape)} {out.dtype} with {a_scale.numel()} and {b_scale.numel()} scales")
    grid = (triton.cdiv(m, cfg.block_m), triton.cdiv(n, cfg.block_k))
    _scale_kernel[grid](out, a_scale.float().contiguous(), b_scale.float().contiguous(), m, n, BM=cfg.block_m,
                        BN=cfg.block_k, num_warps=cfg.num_warps)
    return out
