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
