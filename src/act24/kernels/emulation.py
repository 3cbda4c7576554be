"""FP8 math without FP8 kernels: what row-wise FP8 quantization, and 2:4 selection on FP8-rounded values, lose by
themselves.

The GPU benchmark checks its FP8 paths against an fp32 reference. An FP8 2:4 FFN loses more there than a dense FP8
FFN even when computed exactly: its masks are chosen on values that FP8 GEMMs rounded to bf16, and where two of a
group's four values are close, the rounding can keep the other one (an error the size of the value, not of a
rounding step). `Fp8EmulationBackend` computes the FFN with the FP8 backends' quantization (row-wise
float8_e4m3fn, `quantize_rowwise_fp8`, the bits the kernels match) and exact GEMMs: fp32 products of the FP8
values, scaled afterwards and rounded to bf16, as the kernels' epilogues do. Its error is the scale an FP8 path of
the same FFN is held to.
"""

from __future__ import annotations

import torch

from .backend import ReferenceBackend
from .fp8 import quantize_rowwise_fp8


class Fp8EmulationBackend(ReferenceBackend):
    name = "fp8_emulation"
    description = "row-wise FP8 operands, exact fp32 GEMMs, bf16 outputs (any device): FP8 math without its kernels"
    dtype = torch.bfloat16  # inputs arrive in bf16, as they do for the FP8 kernels
    dense_math = False  # the token-wise GEMMs split into their sparse and dense features, each quantized on its own

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        a8, a_scale = quantize_rowwise_fp8(a)
        bt8, b_scale = quantize_rowwise_fp8(b.t().contiguous())
        # FP8 values are exact in fp32 (and TF32); the scales apply after the sum, as in the kernels' epilogues.
        return ((a8.float() @ bt8.float().t()) * a_scale * b_scale.t()).to(torch.bfloat16)

    mm24 = mm  # the sparse operand arrives masked: the same exact GEMM of its FP8 values
