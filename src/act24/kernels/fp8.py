"""Row-wise FP8 (float8_e4m3fn) quantization: the reference the FP8 backends and the fused kernels match bit for bit."""

from __future__ import annotations

import torch

FP8_MAX = 448.0  # largest finite float8_e4m3fn


def fp8_scale(amax: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(scale, 1 / scale) in float32 for row maxima `amax`: scale = amax / 448, each an IEEE division.

    Divisions by tensors, not by Python numbers: CUDA torch multiplies by a rounded reciprocal when dividing by
    a Python number, the CPU divides; this way both devices and the fused kernels give the same bits."""
    amax = amax.float().clamp(min=1e-12)
    scale = amax / torch.full_like(amax, FP8_MAX)
    return scale, torch.ones_like(scale) / scale


def quantize_rowwise_fp8(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """float8_e4m3fn values and float32 scales (rows x 1) with x ≈ values * scales. Zeros stay zero. Values are
    x * (1 / scale), rounded to nearest even (the fused kernels reproduce this bit for bit)."""
    scale, inv = fp8_scale(x.abs().amax(dim=1, keepdim=True))
    return (x.float() * inv).clamp(-FP8_MAX, FP8_MAX).to(torch.float8_e4m3fn), scale


def scaled_mm_rowwise(a8: torch.Tensor, a_scale: torch.Tensor, bt8: torch.Tensor,
                      b_scale: torch.Tensor) -> torch.Tensor:
    """The dense FP8 GEMM (cuBLAS) of row-wise quantized a (M x K) and bᵀ (N x K), scales (M x 1) and (N x 1);
    bf16 out."""
    # torch._scaled_mm takes b column-major (the transpose of a contiguous (N x K) tensor).
    return torch._scaled_mm(a8, bt8.t(), scale_a=a_scale, scale_b=b_scale.t().contiguous(),
                            out_dtype=torch.bfloat16, use_fast_accum=True)


def fp8_mm(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """a @ b as a dense FP8 GEMM with row-wise scales (a's rows, b's columns): the FP8 FFN's dense GEMMs."""
    return scaled_mm_rowwise(*quantize_rowwise_fp8(a), *quantize_rowwise_fp8(b.t().contiguous()))
