"""cuSPARSELt's 2:4 GEMM (`torch._cslt_sparse_mm`) with its algorithm chosen per shape, each candidate checked first.

torch runs algorithm 0 unless told otherwise, and `torch._cslt_sparse_mm_search` returns the fastest algorithm
without looking at its results; some algorithms give wrong ones (pytorch/pytorch#155333). `search` runs every
algorithm cuSPARSELt offers for the shape on fresh random operands, compares each result with the dense GEMM of
the same operands, times the correct ones and keeps the fastest. Choices are cached per device, shape and types,
for the life of the process (`choices` lists them: runs write them to their log and summary).

FP8 (`fp8_gemm`): on sm90 cuSPARSELt 0.8 rejects a per-row alpha vector ("operation not supported",
reference/h200/cslt_layout) and torch passes no scalar alpha, so the row-wise scales of both operands are applied
to the bf16 product in one pass over the (M x N) output (`fused.scale_rows_cols_`). The values are the same FP8
values as every other FP8 path's: the scheme changes no numerics, it costs that pass.
"""

from __future__ import annotations

import functools

import torch

from ..sparsity.pattern import mask24
from .autotune import Candidate, Choice, autotune
from .timing import event_ms, gpu_name

MAX_ALGORITHMS = 64  # a cap; the first algorithm id cuSPARSELt rejects ends the search
# Against the dense GEMM of the same operands: both round to bf16 (~3e-3 apart); a wrong algorithm lands near 1.
TOLERANCE = 2e-2
TIMED_CALLS = 5  # per algorithm, after one untimed call


_CHOICES: dict[tuple, Choice] = {}


def _operands(m: int, k: int, n: int, dtype: torch.dtype, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """A random 2:4 (M x K) and a dense (N x K) in `dtype`, on the GPU."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16)
    a = a * mask24(a)
    b = torch.randn(n, k, device="cuda", generator=g, dtype=torch.bfloat16)
    return a.to(dtype), b.to(dtype)


def _dense(a: torch.Tensor, bt: torch.Tensor) -> torch.Tensor:
    """a @ bt in bf16 out (cuBLAS, fp32 accumulation): the reference every algorithm is checked against."""
    if a.dtype == torch.float8_e4m3fn:
        one = torch.ones((), device=a.device)
        return torch._scaled_mm(a, bt, scale_a=one, scale_b=one, out_dtype=torch.bfloat16)
    return a @ bt


def search(m: int, k: int, n: int, dtype: torch.dtype, row_major_b: bool = False, seed: int = 0) -> Choice:
    """The fastest correct cuSPARSELt algorithm (`Choice.pick`, its id) for (M x K, 2:4) @ (K x N, column-major unless
    row_major_b) in `dtype` (FP8: bf16 out); RuntimeError when none is correct."""
    key = (gpu_name(), m, k, n, str(dtype), row_major_b)
    if key in _CHOICES:
        return _CHOICES[key]
    a, b = _operands(m, k, n, dtype, seed)
    compressed, bt = torch._cslt_compress(a), (b.t().contiguous() if row_major_b else b.t())
    out_dtype = torch.bfloat16 if dtype == torch.float8_e4m3fn else None

    def call(alg: int) -> torch.Tensor:
        return torch._cslt_sparse_mm(compressed, bt, out_dtype=out_dtype, alg_id=alg)

    candidates = (Candidate(alg, f"alg {alg}", functools.partial(call, alg)) for alg in range(MAX_ALGORITHMS))
    return autotune(_CHOICES, key, candidates, _dense(a, bt), TOLERANCE, lambda call: event_ms(call, calls=TIMED_CALLS),
                    what=f"cuSPARSELt: no algorithm gives correct results for {m} x {k} x {n} {dtype}",
                    end_on=RuntimeError)


def choices() -> dict[str, str]:
    """Every choice of this process: "M x K x N dtype" -> `Choice.describe()`."""
    return {f"{m} x {k} x {n} {dtype.replace('torch.', '')}" + (" (B row-major)" if row_major else ""): c.describe()
            for (_, m, k, n, dtype, row_major), c in _CHOICES.items()}


def sparse_mm(compressed: torch.Tensor, b: torch.Tensor, m: int) -> torch.Tensor:
    """(M x K, 2:4, compressed by cuSPARSELt or `cslt_layout`) @ b (K x N) with the searched algorithm: bf16 in and
    out, or FP8 in and bf16 out (then b column-major, the transpose of a contiguous (N x K))."""
    k, n = b.shape
    fp8 = compressed.dtype == torch.float8_e4m3fn
    alg = search(m, k, n, compressed.dtype, row_major_b=b.stride(1) == 1 and b.stride(0) != 1).pick
    return torch._cslt_sparse_mm(compressed, b, out_dtype=torch.bfloat16 if fp8 else None, alg_id=alg)


def fp8_gemm(compressed: torch.Tensor, b8: torch.Tensor, a_scale: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
    """The row-wise scaled FP8 2:4 GEMM: (a_scale ⊙ A) @ (B ⊙ b_scale) in bf16, A (M x K) compressed in FP8, b8
    (K x N) FP8 column-major, a_scale (M x 1), b_scale (1 x N)."""
    from .fused import scale_rows_cols_  # Triton: imported where it runs

    return scale_rows_cols_(sparse_mm(compressed, b8, a_scale.shape[0]), a_scale, b_scale)
