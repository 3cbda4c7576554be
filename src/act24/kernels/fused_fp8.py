"""The fused FP8 backend: act24's fused Triton sparsify kernels (relu², 2:4, row-wise FP8 and packing in one pass)
feeding one 2:4 FP8 GEMM (`sparse_fp8_gemms`), which it is parameterized by. The sparse FFN runs its fused forward
and backward on it (act24.ffn.fused): it quantizes with the fused kernels (the same bits as `Fp8Backend`'s), asks
its GEMM which layout to pack for a shape, and calls it."""

from __future__ import annotations

import torch

from .backend import Fp8Backend, triton_missing
from .fp8 import quantize_rowwise_fp8
from .sparse_fp8_gemms import Act24Gemm, AutoGemm, CusparseltGemm, SparseFp8Gemm, XformersGemm


class FusedFp8Backend(Fp8Backend):
    fused = True

    def __init__(self, gemm: SparseFp8Gemm, name: str, description: str):
        self.gemm, self.name, self.description = gemm, name, description
        self.multiples = gemm.multiples

    def probe(self):
        return self.gemm.probe() or triton_missing()

    # The same bits as Fp8Backend's quantization, in single Triton passes where the shape allows.
    @staticmethod
    def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .fused import quantize_fits, quantize_rows

        return quantize_rows(x) if quantize_fits(x) else quantize_rowwise_fp8(x)

    @classmethod
    def quantize_t(cls, b: torch.Tensor, perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from .fused import quantize_transposed, transposed_fits

        if perm is None and b.t().is_contiguous():
            return cls.quantize(b.t())
        if transposed_fits(b):
            return quantize_transposed(b, perm)
        return super().quantize_t(b, perm)

    def layout_for(self, m: int, k: int, n: int) -> str:
        """The packed layout of the sparse operand of the (M x K) @ (K x N) GEMM: the one its GEMM reads."""
        return self.gemm.layout_for(m, k, n)

    def sparse_gemm(self, a, b: torch.Tensor) -> torch.Tensor:
        """a @ b for a packed 2:4 FP8 operand `a` (kernels.fused.Packed24) and a dense bf16 `b` (K x N)."""
        bt8, b_scale = self.quantize_t(b)
        return self.gemm(a, bt8.t(), b_scale.t().contiguous())

    def mm24(self, a, b):
        from .fused import PLAIN, sparsify24_rows

        layout = self.layout_for(a.shape[0], a.shape[1], b.shape[1])
        return self.sparse_gemm(sparsify24_rows(a.to(torch.bfloat16), mode=PLAIN, layout=layout)[0], b)

    def gemm_choices(self):
        return self.gemm.choices()


def fused_fp8_sm90() -> FusedFp8Backend:
    return FusedFp8Backend(XformersGemm(), "fused_fp8_sm90", (
        "act24's fused Triton sparsify (relu² + 2:4 + row-wise FP8 + sm90 packing in one pass) + xformers' "
        "_sparse24_fp8_sm90_cutlass_gemm; bf16 output"))


def fused_fp8_cusparselt() -> FusedFp8Backend:
    return FusedFp8Backend(CusparseltGemm(), "fused_fp8_cusparselt", (
        "act24's fused Triton sparsify writing cuSPARSELt's sm90 layout + torch._cslt_sparse_mm (FP8, algorithm "
        "searched and checked per shape) + one pass applying the row-wise scales; bf16 output"))


def fused_fp8_tuned() -> FusedFp8Backend:
    return FusedFp8Backend(Act24Gemm(), "fused_fp8_tuned", (
        "act24's fused Triton sparsify + act24's sm90a CUTLASS 2:4 FP8 GEMM (row-wise scales in the epilogue; kernel "
        "searched and checked per shape; built just in time with nvcc); bf16 output"))


def fused_fp8_auto() -> FusedFp8Backend:
    return FusedFp8Backend(AutoGemm(), "fused_fp8_auto", (
        "act24's fused Triton sparsify feeding, per GEMM shape, the fastest correct 2:4 FP8 GEMM: xformers' CUTLASS, "
        "act24's sm90a CUTLASS (tuned) or cuSPARSELt (searched algorithm); the choices go to the run's log and "
        "summary"))
