"""The sparsify step alone (Y1 -> what the sparse GEMM consumes), stock and fused, with achieved bandwidth.

A step is a `Step` record: how to run it and check its output, the bytes it moves per element of Y1, its tolerance,
and the FFN path whose forward runs it (precision and path label), if one does. Achieved GB/s counts the fewest
bytes a step must move: its inputs read once (Y1 in bf16 for the forward) and its outputs written once (dense bf16
for the mask alone; half the values plus 4 bits of metadata per group of 4 once packed). Each output is checked
through the GEMM it feeds, or bit for bit against CUTLASS's packing.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from ..kernels import cusparselt
from ..kernels.cuda12 import import_xformers_ops
from ..kernels.fp8 import quantize_rowwise_fp8
from ..sparsity.pattern import feature_split, mask24
from .config import GpuBenchConfig
from .harness import backend_here, bench_ms, ffn_inputs, gated, label, rel_error
from .tables import CSLT_FORWARD_STEP, FUSED_FORWARD_STEP, FUSED_PATHS, STOCK_PATHS

PACKED_FP8, PACKED_BF16 = 0.5 + 1 / 8, 1.0 + 1 / 8  # bytes per element of a packed 2:4 operand


@dataclass(frozen=True)
class Step:
    """One sparsify step: `run` it, `check` its output (relative error, or 0 / inf for bit-exact checks)."""

    run: Callable[[], object]
    check: Callable[[], float]
    bytes_moved: float  # the fewest bytes per element of Y1 it must read and write
    tolerance: float
    precision: str = ""  # the FFN path whose forward runs this step as timed here: its precision
    path: str = ""  # ... and its label ("" when no FFN path runs it)

    def record(self) -> dict:
        return {"precision": self.precision, "path": self.path} if self.path else {}


@dataclass
class Case:
    """One shape's inputs and references, shared by every step."""

    cfg: GpuBenchConfig
    y1: torch.Tensor  # (T x F) bf16
    w2: torch.Tensor  # (d x F) bf16
    masked_ref: torch.Tensor  # relu(Y1)² ⊙ M in fp32
    gemm_ref: torch.Tensor  # (relu(Y1)² ⊙ M) W2ᵀ in fp32
    relu2_mask: Callable[[torch.Tensor], torch.Tensor]  # compiled relu² + 2:4 mask, dense output

    @classmethod
    def make(cls, cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac) -> "Case":
        x, w1, w2, _ = ffn_inputs(t, d, f, zero_frac)
        y1 = x @ w1.t()
        masked_ref = F.relu(y1.float()).square()
        masked_ref = masked_ref * mask24(masked_ref)
        relu2_mask = torch.compile(lambda y: (lambda y2: y2 * mask24(y2))(F.relu(y).square()), dynamic=False)
        return cls(cfg, y1, w2, masked_ref, masked_ref @ w2.t().float(), relu2_mask)

    def fp8_gemm(self, values, meta, scale) -> torch.Tensor:
        """The packed FP8 operand times W2ᵀ (xformers' sm90 GEMM)."""
        w8, w_scale = quantize_rowwise_fp8(self.w2)
        return import_xformers_ops()[0]._sparse24_fp8_sm90_cutlass_gemm(values, meta, w8.t(), a_scale=scale,
                                                                        b_scale=w_scale.t().contiguous())


def same_as_cutlass(ours, a: torch.Tensor) -> float:
    """0 when our packing equals CUTLASS's compressor of `a` bit for bit, else inf."""
    values, meta = import_xformers_ops()[0]._sparse24_sm90_cutlass_compress(a)
    raw = torch.uint8 if a.dtype == torch.float8_e4m3fn else torch.int16
    same = torch.equal(ours.values.view(raw), values.view(raw)) and torch.equal(ours.meta, meta)
    return 0.0 if same else math.inf


def stock_steps(c: Case) -> dict[str, Step]:
    """The mask alone, and the stock packings (cuSPARSELt bf16, xformers' FP8 sm90 compressor)."""
    tol, y1 = c.cfg.tolerance, c.y1
    steps = {"relu² + 2:4 mask, dense output (torch.compile)": Step(
        lambda: c.relu2_mask(y1), lambda: rel_error(c.relu2_mask(y1), c.masked_ref), 2 + 2.0, tol)}
    if backend_here("cusparselt")[0]:
        w2t = c.w2.t()

        def cslt_step():
            return torch._cslt_compress(c.relu2_mask(y1))

        steps["relu² + 2:4 mask + cuSPARSELt compress (bf16)"] = Step(
            cslt_step, lambda: rel_error(torch._cslt_sparse_mm(cslt_step(), w2t), c.gemm_ref), 2 + PACKED_BF16, tol)
    if backend_here("xformers_fp8_sm90")[0]:
        def fp8_step():
            a8, a_scale = quantize_rowwise_fp8(c.relu2_mask(y1))
            return import_xformers_ops()[0]._sparse24_sm90_cutlass_compress(a8), a_scale

        def fp8_check():
            (packed, meta), a_scale = fp8_step()
            return rel_error(c.fp8_gemm(packed, meta, a_scale), c.gemm_ref)

        steps["relu² + 2:4 mask + FP8 quantize + xformers sm90 compress"] = Step(fp8_step, fp8_check,
                                                                                  2 + PACKED_FP8, 2 * tol)
    return steps


def fused_forward_steps(c: Case) -> dict[str, Step]:
    """The fused kernels' forward steps: 2:4 packed FP8 and bf16, and the dense FFN's relu² + FP8."""
    from ..kernels import fused

    y1, tol = c.y1, c.cfg.tolerance
    y2 = F.relu(y1).square()
    masked_bf16 = y2 * mask24(y2)

    def packed_check():
        packed = fused.sparsify24_rows(y1)[0]
        if same_as_cutlass(packed, quantize_rowwise_fp8(masked_bf16)[0]) != 0.0:
            return math.inf
        return rel_error(c.fp8_gemm(packed.values, packed.meta, packed.scale), c.gemm_ref)

    def dense_check():
        y8, y_scale = fused.quantize_rows(y1, fused.FORWARD)
        w8, w_scale = quantize_rowwise_fp8(c.w2)
        out = torch._scaled_mm(y8, w8.t(), scale_a=y_scale, scale_b=w_scale.t().contiguous(),
                               out_dtype=torch.bfloat16)
        return rel_error(out, F.relu(y1.float()).square() @ c.w2.t().float())

    def cslt_check():  # bit for bit cuSPARSELt's own compressor, then its GEMM
        packed = fused.sparsify24_rows(y1, layout=fused.CUSPARSELT)[0]
        theirs = torch._cslt_compress(quantize_rowwise_fp8(masked_bf16)[0])
        if packed.buffer.shape != theirs.shape or not torch.equal(packed.buffer.view(torch.uint8),
                                                                  theirs.view(torch.uint8)):
            return math.inf
        w8, w_scale = quantize_rowwise_fp8(c.w2)
        return rel_error(cusparselt.fp8_gemm(packed.buffer, w8.t(), packed.scale, w_scale.t()), c.gemm_ref)

    cslt = {} if backend_here("fused_fp8_cusparselt")[1] else {CSLT_FORWARD_STEP: Step(
        lambda: fused.sparsify24_rows(y1, layout=fused.CUSPARSELT), cslt_check, 2 + PACKED_FP8, 2 * tol,
        "fp8", FUSED_PATHS["fused_fp8_cusparselt"])}
    return cslt | {
        FUSED_FORWARD_STEP: Step(lambda: fused.sparsify24_rows(y1), packed_check, 2 + PACKED_FP8, 2 * tol,
                                 "fp8", FUSED_PATHS["fused_fp8_sm90"]),
        "fused (act24, Triton): relu² + 2:4 + sm90 packing, bf16": Step(
            lambda: fused.sparsify24_rows(y1, fp8=False),
            lambda: same_as_cutlass(fused.sparsify24_rows(y1, fp8=False)[0], masked_bf16), 2 + PACKED_BF16, 0.0),
        "fused (act24, Triton): relu² + FP8, dense (the dense FFN's step)": Step(
            lambda: fused.quantize_rows(y1, fused.FORWARD), dense_check, 2 + 1.0, 2 * tol),
    }


def fused_backward_steps(c: Case) -> dict[str, Step]:
    """The fused kernels' backward steps: dense, 2:4 with the kept forms, and the token-wise operand."""
    from ..kernels import fused

    y1, t, f = c.y1, *c.y1.shape
    y2 = F.relu(y1).square()
    masked_bf16 = y2 * mask24(y2)
    grad = torch.randn_like(y1)
    dense_dy1 = grad * (2 * F.relu(y1))
    dy1_ref = dense_dy1 * mask24(y2)

    def dense_check():  # values equal, bf16 outputs exact
        dy1_8, dy1_scale, dy1, y2_out = fused.dense_backward_rows(y1, grad)
        ref8, ref_scale = quantize_rowwise_fp8(dense_dy1)
        same = (torch.equal(dy1_8.float(), ref8.float()) and torch.equal(dy1_scale, ref_scale)
                and torch.equal(dy1, dense_dy1) and torch.equal(y2_out, y2))
        return 0.0 if same else math.inf

    def sparse_check():  # the kept forms decompress to the reference; the packing is CUTLASS's
        packed, dy1, y2s = fused.sparsify24_rows(y1, grad=grad, write_kept=True)
        if not (torch.equal(dy1.dense(), dy1_ref) and torch.equal(y2s.dense(), masked_bf16)):
            return math.inf
        return same_as_cutlass(packed, quantize_rowwise_fp8(dy1_ref)[0])

    kept = fused.sparsify24_rows(y1, write_kept=True)[1]  # masked_bf16 in the kept form, as the FFN has Ỹ2
    split = feature_split(masked_bf16, c.cfg.dense_fraction, c.cfg.split_multiple)
    perm = torch.randperm(t, device=y1.device)

    def tokens_check():
        packed, _, _ = fused.sparsify24_tokens(kept, perm, *split)
        sp = masked_bf16[perm].t()[split[0]]
        return same_as_cutlass(packed, quantize_rowwise_fp8(sp * mask24(sp, dim=1))[0])

    frac = len(split[0]) / f
    return {
        "fused (act24, Triton): dense backward, dY1 = dY2 ⊙ 2 relu(Y1) FP8 rows + dY1, Y2 bf16 (the dense FFN's "
        "step)": Step(lambda: fused.dense_backward_rows(y1, grad), dense_check, 4 + 1.0 + 2 * 2.0, 0.0),
        "fused (act24, Triton): backward, dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M FP8 packed + dY1, Ỹ2 kept": Step(
            lambda: fused.sparsify24_rows(y1, grad=grad, write_kept=True), sparse_check,
            4 + PACKED_FP8 + 2 * 1.0 + 1 / 8, 0.0),
        "fused (act24, Triton): token-wise from the kept form, permute + transpose + 2:4 + FP8 + packing, 95/5 "
        "split": Step(lambda: fused.sparsify24_tokens(kept, perm, *split), tokens_check,
                      1.0 + 1 / 8 + frac * PACKED_FP8 + (1 - frac) * 1.0, 0.0),
    }


def as_in_the_ffn_steps(c: Case) -> dict[str, Step]:
    """The step exactly as the unfused sparse FFN's forward runs it (eager mask24, then the backend's packing); each
    is checked on its own output, through the GEMM that consumes it."""
    steps = {}
    if backend_here("cusparselt")[0]:
        def bf16_step():
            y2 = F.relu(c.y1).square()
            return torch._cslt_compress(y2 * mask24(y2, dim=1))

        steps["as in act24's sparse FFN (bf16): eager relu² + mask24 + pack"] = Step(
            bf16_step, lambda: rel_error(torch._cslt_sparse_mm(bf16_step(), c.w2.t()), c.gemm_ref),
            2 + PACKED_BF16, c.cfg.tolerance, "bf16", STOCK_PATHS["cusparselt"])
    if backend_here("xformers_fp8_sm90")[0]:
        def fp8_step():
            y2 = F.relu(c.y1).square()
            a8, scale = quantize_rowwise_fp8(y2 * mask24(y2, dim=1))
            return import_xformers_ops()[0]._sparse24_sm90_cutlass_compress(a8), scale

        def fp8_check():
            (values, meta), scale = fp8_step()
            return rel_error(c.fp8_gemm(values, meta, scale), c.gemm_ref)

        steps["as in act24's sparse FFN (fp8): eager relu² + mask24 + pack"] = Step(
            fp8_step, fp8_check, 2 + PACKED_FP8, 2 * c.cfg.tolerance, "fp8", STOCK_PATHS["xformers_fp8_sm90"])
    return steps


def sparsify_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, copy_gbps: float) -> list[dict]:
    """Every sparsify step at one shape, checked, then timed, with its achieved GB/s and share of copy bandwidth."""
    c = Case.make(cfg, t, d, f, zero_frac)
    steps = stock_steps(c)
    if backend_here("fused_fp8_sm90")[0]:
        steps |= fused_forward_steps(c) | fused_backward_steps(c)
    steps |= as_in_the_ffn_steps(c)
    rows: list[dict] = []
    for name, step in steps.items():
        gated(rows, {"T": t, "F": f, **label(zero_frac), "step": name, **step.record()}, step.check, step.tolerance,
              lambda fn=step.run: bench_ms(fn, cfg))
        if rows[-1]["status"] == "ok":
            rows[-1]["GBps"] = t * f * step.bytes_moved / rows[-1]["ms"] / 1e6
            rows[-1]["share_of_copy_bandwidth"] = rows[-1]["GBps"] / copy_gbps
    return rows
