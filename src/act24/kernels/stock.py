"""The stock 2:4 backends: the sparse GEMMs as PyTorch and xformers ship them, each packing its own operand."""

from __future__ import annotations

import torch

from . import cusparselt
from .backend import Backend, Fp8Backend, cuda_capability, cusparselt_missing, sm90_missing
from .cuda12 import import_xformers_ops


class CuSparseLtBackend(Backend):
    name = "cusparselt"
    description = ("PyTorch's cuSPARSELt: torch._cslt_compress + torch._cslt_sparse_mm with the algorithm searched "
                   "per shape, each checked first (bf16, sm80+)")
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (16, 16, 8)

    def probe(self):
        return cusparselt_missing()

    def mm24(self, a, b):
        return cusparselt.sparse_mm(torch._cslt_compress(a), b, a.shape[0])

    def gemm_choices(self):
        return cusparselt.choices()


class XformersCutlassBackend(Backend):
    name = "xformers_cutlass"
    description = "xformers CUTLASS 2:4 GEMM: sparse24_sparsify_both_ways + _sparse24_gemm (bf16, sm80 only)"
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (32, 64, 8)

    def probe(self):
        ops, why = import_xformers_ops()
        if ops is None:
            return why
        cap = cuda_capability()
        if cap[0] != 8:
            return f"xformers' _sparse24_gemm supports compute capability 8.x only, device has {cap[0]}.{cap[1]}"
        return ""

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        packed, meta, *_ = ops.sparse24_sparsify_both_ways(a, algorithm="", backend="cutlass")
        return ops._sparse24_gemm(packed, b, meta)[: a.shape[0]]


class XformersCusparseLtBackend(Backend):
    name = "xformers_cusparselt"
    description = ("xformers' packing for cuSPARSELt (sparse24_sparsify_both_ways backend='cusparselt') + "
                   "torch._cslt_sparse_mm; known to be wrong on sm90, so it is checked, never trusted")
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (16, 16, 8)

    def probe(self):
        ops, why = import_xformers_ops()
        if ops is None:
            return why
        if cuda_capability() < (8, 0):
            return "needs compute capability >= 8.0"
        return ""

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        packed, *_ = ops.sparse24_sparsify_both_ways(a, algorithm="", backend="cusparselt")
        return torch._cslt_sparse_mm(packed, b)


def xformers_fp8_missing() -> str:
    """'' when xformers' sm90 FP8 2:4 GEMM and its compressor run here, else why not."""
    ops, why = import_xformers_ops()
    if ops is None:
        return why
    if why := sm90_missing():
        return why
    if not hasattr(ops, "_sparse24_fp8_sm90_cutlass_gemm"):
        return "this xformers build has no _sparse24_fp8_sm90_cutlass_gemm"
    return ""


class XformersFp8Sm90Backend(Fp8Backend):
    name = "xformers_fp8_sm90"
    description = ("xformers FP8 on sm90: _sparse24_sm90_cutlass_compress + _sparse24_fp8_sm90_cutlass_gemm, "
                   "row-wise scales for a, column-wise for b; bf16 output")

    def probe(self):
        return xformers_fp8_missing()

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        a8, a_scale = self.quantize(a)
        bt8, b_scale = self.quantize_t(b)
        packed, meta = ops._sparse24_sm90_cutlass_compress(a8)
        # The kernel takes b as the transpose of a contiguous (N x K) tensor ("row-major" in its terms; a
        # contiguous (K x N) b is rejected), and scales shaped (M, 1) and (1, N).
        return ops._sparse24_fp8_sm90_cutlass_gemm(packed, meta, bt8.t(), a_scale=a_scale,
                                                   b_scale=b_scale.t().contiguous())
