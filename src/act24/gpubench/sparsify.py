"""The sparsify step alone (Y1 -> what the sparse GEMM consumes), stock and fused, with achieved bandwidth."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from ..kernels.backends import CuSparseLtBackend, FusedFp8Sm90Backend, XformersFp8Sm90Backend
from ..kernels.fp8 import quantize_rowwise_fp8
from ..kernels.cuda12 import import_xformers_ops
from ..sparsity.pattern import feature_split, mask24
from .config import GpuBenchConfig
from .harness import bench_ms, ffn_inputs, gated, label, rel_error
from .tables import FUSED_FORWARD_STEP


def sparsify_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, copy_gbps: float) -> list[dict]:
    """The sparsify step alone (Y1 -> what the sparse GEMM consumes), and the backward's fused steps. Achieved
    GB/s counts the fewest bytes each step must move: its inputs read once (Y1 in bf16 for the forward) and its
    outputs written once (dense bf16 for the mask alone; half the values plus 4 bits of metadata per group of 4
    once packed). Each output is checked through the GEMM it feeds, or bit for bit against CUTLASS's packing."""
    x, w1, w2, _ = ffn_inputs(t, d, f, zero_frac)
    y1 = x @ w1.t()
    masked_ref = F.relu(y1.float()).square()
    masked_ref = masked_ref * mask24(masked_ref)
    gemm_ref = masked_ref @ w2.t().float()
    relu2_mask = torch.compile(lambda y: (lambda y2: y2 * mask24(y2))(F.relu(y).square()), dynamic=False)
    w2t = w2.t()
    # name: (step, check of its output, bytes read and written per element of Y1, tolerance)
    steps = {"relu² + 2:4 mask, dense output (torch.compile)": (
        lambda: relu2_mask(y1), lambda: rel_error(relu2_mask(y1), masked_ref), 2 + 2.0, cfg.tolerance)}
    if not CuSparseLtBackend().probe():
        steps["relu² + 2:4 mask + cuSPARSELt compress (bf16)"] = (
            lambda: torch._cslt_compress(relu2_mask(y1)),
            lambda: rel_error(torch._cslt_sparse_mm(torch._cslt_compress(relu2_mask(y1)), w2t), gemm_ref),
            2 + 1.0 + 1 / 8, cfg.tolerance)
    if not XformersFp8Sm90Backend().probe():
        ops, _ = import_xformers_ops()
        w8, w_scale = quantize_rowwise_fp8(w2)

        def fp8_step():
            a8, a_scale = quantize_rowwise_fp8(relu2_mask(y1))
            return ops._sparse24_sm90_cutlass_compress(a8), a_scale

        def fp8_check():
            (packed, meta), a_scale = fp8_step()
            out = ops._sparse24_fp8_sm90_cutlass_gemm(packed, meta, w8.t(), a_scale=a_scale,
                                                      b_scale=w_scale.t().contiguous())
            return rel_error(out, gemm_ref)

        steps["relu² + 2:4 mask + FP8 quantize + xformers sm90 compress"] = (
            fp8_step, fp8_check, 2 + 0.5 + 1 / 8, 2 * cfg.tolerance)
    if not FusedFp8Sm90Backend().probe():
        from ..kernels import fused

        ops, _ = import_xformers_ops()
        w8, w_scale = quantize_rowwise_fp8(w2)
        y2 = F.relu(y1).square()
        masked_bf16 = y2 * mask24(y2)

        def same_as_cutlass(ours, a):  # 0 when our packing equals CUTLASS's compressor bit for bit, else inf
            values, meta = ops._sparse24_sm90_cutlass_compress(a)
            raw = torch.uint8 if a.dtype == torch.float8_e4m3fn else torch.int16
            same = torch.equal(ours.values.view(raw), values.view(raw)) and torch.equal(ours.meta, meta)
            return 0.0 if same else math.inf

        def fused_check():
            packed = fused.sparsify24_rows(y1)[0]
            if same_as_cutlass(packed, quantize_rowwise_fp8(masked_bf16)[0]) != 0.0:
                return math.inf
            out = FusedFp8Sm90Backend.packed_gemm(packed.values, packed.meta, w8.t(), packed.scale,
                                                  w_scale.t().contiguous())
            return rel_error(out, gemm_ref)

        steps[FUSED_FORWARD_STEP] = (
            lambda: fused.sparsify24_rows(y1), fused_check, 2 + 0.5 + 1 / 8, 2 * cfg.tolerance)
        steps["fused (act24, Triton): relu² + 2:4 + sm90 packing, bf16"] = (
            lambda: fused.sparsify24_rows(y1, fp8=False),
            lambda: same_as_cutlass(fused.sparsify24_rows(y1, fp8=False)[0], masked_bf16), 2 + 1.0 + 1 / 8, 0.0)

        def dense_check():
            y8, y_scale = fused.quantize_rows(y1, fused.FORWARD)
            out = torch._scaled_mm(y8, w8.t(), scale_a=y_scale, scale_b=w_scale.t().contiguous(),
                                   out_dtype=torch.bfloat16)
            return rel_error(out, F.relu(y1.float()).square() @ w2.t().float())

        steps["fused (act24, Triton): relu² + FP8, dense (the dense FFN's step)"] = (
            lambda: fused.quantize_rows(y1, fused.FORWARD), dense_check, 2 + 1.0, 2 * cfg.tolerance)
        grad = torch.randn_like(y1)
        dense_dy1 = grad * (2 * F.relu(y1))

        def dense_backward_check():  # the dense FFN's backward step: values equal, bf16 outputs exact
            dy1_8, dy1_scale, dy1, y2_out = fused.dense_backward_rows(y1, grad)
            ref8, ref_scale = quantize_rowwise_fp8(dense_dy1)
            same = (torch.equal(dy1_8.float(), ref8.float()) and torch.equal(dy1_scale, ref_scale)
                    and torch.equal(dy1, dense_dy1) and torch.equal(y2_out, y2))
            return 0.0 if same else math.inf

        steps["fused (act24, Triton): dense backward, dY1 = dY2 ⊙ 2 relu(Y1) FP8 rows + dY1, Y2 bf16 "
              "(the dense FFN's step)"] = (lambda: fused.dense_backward_rows(y1, grad), dense_backward_check,
                                           4 + 1.0 + 2 * 2.0, 0.0)
        dy1_ref = dense_dy1 * mask24(y2)

        def backward_check():  # the kept forms decompress to the reference; the packing is CUTLASS's
            packed, dy1, y2s = fused.sparsify24_rows(y1, grad=grad, write_kept=True)
            if not (torch.equal(dy1.dense(), dy1_ref) and torch.equal(y2s.dense(), masked_bf16)):
                return math.inf
            return same_as_cutlass(packed, quantize_rowwise_fp8(dy1_ref)[0])

        steps["fused (act24, Triton): backward, dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M FP8 packed + dY1, Ỹ2 kept"] = (
            lambda: fused.sparsify24_rows(y1, grad=grad, write_kept=True), backward_check,
            4 + (0.5 + 1 / 8) + 2 * 1.0 + 1 / 8, 0.0)
        kept = fused.sparsify24_rows(y1, write_kept=True)[1]  # masked_bf16 in the kept form, as the FFN has Ỹ2
        split = feature_split(masked_bf16, cfg.dense_fraction, cfg.split_multiple)
        perm = torch.randperm(t, device="cuda")

        def tokens_check():
            packed, _, _ = fused.sparsify24_tokens(kept, perm, *split)
            sp = masked_bf16[perm].t()[split[0]]
            return same_as_cutlass(packed, quantize_rowwise_fp8(sp * mask24(sp, dim=1))[0])

        frac = len(split[0]) / f
        steps["fused (act24, Triton): token-wise from the kept form, permute + transpose + 2:4 + FP8 + packing, "
              "95/5 split"] = (lambda: fused.sparsify24_tokens(kept, perm, *split), tokens_check,
                               1.0 + 1 / 8 + frac * (0.5 + 1 / 8) + (1 - frac) * 1.0, 0.0)
    # The step exactly as act24's sparse FFN forward runs it (eager mask24, then the backend's packing).
    for precision, backend in (("bf16", CuSparseLtBackend()), ("fp8", XformersFp8Sm90Backend())):
        if backend.probe():
            continue
        pack = (torch._cslt_compress if precision == "bf16"
                else lambda a: import_xformers_ops()[0]._sparse24_sm90_cutlass_compress(quantize_rowwise_fp8(a)[0]))

        def ffn_step(pack=pack):
            y2 = F.relu(y1).square()
            return pack(y2 * mask24(y2, dim=1))

        steps[f"as in act24's sparse FFN ({precision}): eager relu² + mask24 + pack"] = (
            ffn_step, lambda: rel_error(relu2_mask(y1), masked_ref),
            2 + (1.0 + 1 / 8 if precision == "bf16" else 0.5 + 1 / 8), cfg.tolerance)
    rows: list[dict] = []
    for name, (fn, check, bytes_moved, tol) in steps.items():
        gated(rows, {"T": t, "F": f, **label(zero_frac), "step": name}, check, tol,
              lambda fn=fn: bench_ms(fn, cfg))
        if rows[-1]["status"] == "ok":
            rows[-1]["GBps"] = t * f * bytes_moved / rows[-1]["ms"] / 1e6
            rows[-1]["share_of_copy_bandwidth"] = rows[-1]["GBps"] / copy_gbps
    return rows
