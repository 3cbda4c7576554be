"""The 2:4 FP8 GEMMs the fused kernels feed, one class each: (a_scale ⊙ A) @ (B ⊙ b_scale) in bf16 for A packed by
the fused kernels (`fused.Packed24`) in the GEMM's `layout`, b8 (K x N) FP8 column-major (the transpose of a
contiguous N x K) and b_scale (1 x N).

Each has a `name`, the `layout` it reads (`layout_for` a shape), a capability `probe`, `__call__` and `choices`
(its per-shape decisions, for a run's summary). `AutoGemm` is a GEMM too: per shape, the fastest of the others
that gives correct results there."""

from __future__ import annotations

import functools

import torch

from ..sparsity.pattern import mask24
from . import cslt_layout, cusparselt, sm90_gemm, sm90_layout, timing
from .autotune import Candidate, Choice, autotune
from .backend import cusparselt_missing, sm90_missing
from .cuda12 import import_xformers_ops
from .fp8 import quantize_rowwise_fp8, scaled_mm_rowwise
from .stock import xformers_fp8_missing


class SparseFp8Gemm:
    name = ""
    layout = sm90_layout.NAME
    multiples = (64, 128, 64)  # M, K, N of (M x K, 2:4) @ (K x N) must be multiples of these

    def probe(self) -> str:
        """'' when this GEMM runs here, else why not."""
        raise NotImplementedError

    def layout_for(self, m: int, k: int, n: int) -> str:
        """The packed layout this GEMM reads for (M x K) @ (K x N)."""
        return self.layout

    def __call__(self, a, b8: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def choices(self) -> dict[str, str]:
        return {}

    def describe(self, m: int, k: int, n: int) -> str:
        """What this GEMM decided for the shape ('' when it decides nothing)."""
        return ""

    def check_layout(self, a, m: int, k: int, n: int) -> None:
        if a.layout != self.layout_for(m, k, n):
            raise ValueError(f"the {self.name} 2:4 GEMM reads the {self.layout_for(m, k, n)} layout, the operand is "
                             f"in {a.layout}")


def shape_of(a, b8: torch.Tensor) -> tuple[int, int, int]:
    """(M, K, N) of a packed (M x K) operand times b8 (K x N)."""
    return a.values.shape[0], 2 * a.values.shape[1], b8.shape[1]


class XformersGemm(SparseFp8Gemm):
    name = "xformers"

    def probe(self):
        return xformers_fp8_missing()

    def __call__(self, a, b8, b_scale):
        self.check_layout(a, *shape_of(a, b8))
        ops, _ = import_xformers_ops()
        return ops._sparse24_fp8_sm90_cutlass_gemm(a.values, a.meta, b8, a_scale=a.scale, b_scale=b_scale)


class CusparseltGemm(SparseFp8Gemm):
    """cuSPARSELt's FP8 GEMM, the algorithm searched per shape; the row-wise scales applied to its output in one
    pass (`kernels.cusparselt`)."""

    name = "cusparselt"
    layout = cslt_layout.NAME
    multiples = (64, 64, 16)

    def probe(self):
        return sm90_missing() or cusparselt_missing()

    def __call__(self, a, b8, b_scale):
        self.check_layout(a, *shape_of(a, b8))
        return cusparselt.fp8_gemm(a.buffer, b8, a.scale, b_scale)

    def choices(self):
        return cusparselt.choices()

    def describe(self, m, k, n):
        return cusparselt.search(m, k, n, torch.float8_e4m3fn).describe()


class Act24Gemm(SparseFp8Gemm):
    """act24's own sm90a GEMM (`kernels.sm90_gemm`): the row-wise scales in its epilogue, its kernel searched per
    shape."""

    name = "act24"

    def probe(self):
        return sm90_missing() or sm90_gemm.missing()

    def __call__(self, a, b8, b_scale):
        self.check_layout(a, *shape_of(a, b8))
        return sm90_gemm.sparse_fp8_gemm(a.values, a.meta, b8, a.scale.reshape(-1), b_scale.reshape(-1))

    def choices(self):
        return sm90_gemm.choices()

    def describe(self, m, k, n):
        return sm90_gemm.search(m, k, n).describe()


class AutoGemm(SparseFp8Gemm):
    """Per GEMM shape, the fastest of `CANDIDATES` that gives correct results there, decided once per process
    (`choose`); the decisions go to the run's log and summary."""

    name = "auto"
    CANDIDATES = (XformersGemm(), Act24Gemm(), CusparseltGemm())
    decided: dict[tuple[int, int, int], Choice] = {}  # shared by every instance: one decision per shape and process

    def probe(self):
        missing = {gemm: why for gemm, why in self.gemms().items() if why}
        if len(missing) == len(self.CANDIDATES):
            return "no 2:4 FP8 GEMM runs here: " + "; ".join(f"{k}: {v}" for k, v in missing.items())
        return sm90_missing()

    def gemms(self) -> dict[str, str]:
        """GEMM name -> '' when it runs here, else why not."""
        return {g.name: g.probe() for g in self.CANDIDATES}

    def gemm_for(self, m: int, k: int, n: int) -> SparseFp8Gemm:
        if (m, k, n) not in self.decided:
            self.decided[m, k, n] = choose(self.CANDIDATES, m, k, n)
            print(f"2:4 FP8 GEMM {m} x {k} x {n}: {note(self.decided[m, k, n])}", flush=True)
        return self.decided[m, k, n].pick

    def layout_for(self, m, k, n):
        return self.gemm_for(m, k, n).layout

    def __call__(self, a, b8, b_scale):
        return self.gemm_for(*shape_of(a, b8))(a, b8, b_scale)

    def choices(self):
        return {**{f"{m} x {k} x {n}": note(c) for (m, k, n), c in self.decided.items()},
                **{f"cuSPARSELt {shape}": alg for shape, alg in cusparselt.choices().items()},
                **{f"act24 sm90a {shape}": launch for shape, launch in sm90_gemm.choices().items()}}


def note(choice: Choice) -> str:
    """The GEMM chosen for a shape and what every candidate did: the line the run's log and summary get."""
    return f"{choice.label} (" + "; ".join(choice.tried) + ")"


def choose(gemms, m: int, k: int, n: int, calls: int = 10, seed: int = 0) -> Choice:
    """The fastest of `gemms` (`Choice.pick`) on a random 2:4 (M x K) @ (K x N), packed by the fused kernel in each
    one's layout and checked against the dense FP8 GEMM of the same quantized operands (`autotune`; median of
    `calls`); RuntimeError when none is correct."""
    from .fused import PLAIN, sparsify24_rows

    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16)
    a = a * mask24(a)
    b = torch.randn(k, n, device="cuda", generator=g, dtype=torch.bfloat16)
    bt8, b_scale = quantize_rowwise_fp8(b.t().contiguous())
    ref = scaled_mm_rowwise(*quantize_rowwise_fp8(a), bt8, b_scale)

    def packed_call(gemm: SparseFp8Gemm):
        try:
            packed = sparsify24_rows(a, mode=PLAIN, layout=gemm.layout)[0]
        except Exception as exc:  # noqa: BLE001 - the candidate fails with it when checked
            return functools.partial(_raise, exc)
        return functools.partial(gemm, packed, bt8.t(), b_scale.t().contiguous())

    candidates = (Candidate(gemm, gemm.name, None, why) if (why := gemm.probe()) else
                  Candidate(gemm, gemm.name, packed_call(gemm)) for gemm in gemms)
    return autotune({}, None, candidates, ref, cusparselt.TOLERANCE, lambda call: timing.event_ms(call, calls=calls),
                    what=f"2:4 FP8 GEMM {m} x {k} x {n}: no GEMM gives correct results here",
                    annotate=lambda gemm: gemm.describe(m, k, n))


def _raise(exc: Exception):
    raise exc
