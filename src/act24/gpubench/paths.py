"""The FFN paths the benchmark compares, per precision: every dense baseline and every 2:4 path.

A path has a forward (x, W1, W2 -> Y3) and a training step (-> dX, dW1, dW2 for dY). Dense paths come in three
forms where the precision has them: eager PyTorch, `torch.compile` (inductor fuses the activation, its derivative
and every quantization into neighbouring kernels), and this project's fused kernels (FP8: relu² + FP8 in one pass,
the backward's dY1 and its transposes likewise: every fusion the 2:4 path has for work the dense path also does).
The FP8 2:4 paths on the fused kernels come one per sparse GEMM they feed (`tables.FUSED_PATHS`): xformers' CUTLASS,
cuSPARSELt's, act24's own sm90a GEMM (`kernels.sm90_gemm`), and per GEMM shape the fastest correct one (`auto`).
The speedup tables take the fastest dense path of the same precision measured in the same run.

Nothing is compiled at import: compiled functions are made on first use.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass

import torch.nn.functional as F

from ..ffn import dense_sqrelu_ffn, sparse_sqrelu_ffn
from ..kernels.backend import Backend, cuda_capability
from ..kernels.backends import get_backend
from ..kernels.fp8 import fp8_mm
from ..sparsity.recipe import SparseRecipe
from .harness import backend_here
from .tables import FUSED_PATHS, STOCK_PATHS


@dataclass(frozen=True)
class FfnPath:
    name: str
    sparse: bool
    forward: Callable  # (x, w1, w2) -> y3
    step: Callable  # (x, w1, w2, dy) -> (dx, dw1, dw2)


def _dense_bf16(x, w1, w2):
    return F.linear(F.relu(F.linear(x, w1)).square(), w2)


def _dense_fp8(x, w1, w2):
    """The dense FP8 forward written out for inductor (row-wise FP8 operands, bf16 out, cuBLAS)."""
    return fp8_mm(F.relu(fp8_mm(x, w1.t())).square(), w2.t())


def _dense_fp8_step(x, w1, w2, dy):
    """Forward and backward of the dense FP8 FFN written out (DenseSqReluFFNFunction's math) for inductor."""
    mm = fp8_mm
    y1 = mm(x, w1.t())
    y2 = F.relu(y1).square()
    dy1 = mm(dy, w2) * (2 * F.relu(y1))
    return mm(dy1, w1), mm(dy1.t().contiguous(), x), mm(dy.t().contiguous(), y2)


@functools.cache
def compiled(fn: Callable) -> Callable:
    """`fn` under torch.compile with the token dimension dynamic and every other dimension static: one compile per
    FFN shape, not per token count (a fully dynamic compile ran the FP8 step 1.6x slower on an H200)."""
    import torch._dynamo

    torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)
    torch._dynamo.config.automatic_dynamic_shapes = False  # only what maybe_mark_dynamic names
    inner = torch.compile(fn)

    def run(x, *rest):
        torch._dynamo.maybe_mark_dynamic(x, 0)
        if len(rest) == 3:  # the step's dY shares the token dimension
            torch._dynamo.maybe_mark_dynamic(rest[2], 0)
        return inner(x, *rest)

    return run


def autograd_step(forward: Callable) -> Callable:
    """The training step of a differentiable forward: (dX, dW1, dW2) for dY."""
    def step(x, w1, w2, dy):
        params = [v.detach().requires_grad_() for v in (x, w1, w2)]
        forward(*params).backward(dy)
        return tuple(p.grad for p in params)
    return step


def _compiled_bf16_step(x, w1, w2, dy):
    return autograd_step(compiled(_dense_bf16))(x, w1, w2, dy)


def sparse_path(name: str, backend: Backend, recipe: SparseRecipe) -> FfnPath:
    forward = lambda x, w1, w2: sparse_sqrelu_ffn(x, w1, w2, recipe, backend)  # noqa: E731
    return FfnPath(name, True, forward, autograd_step(forward))


def ffn_paths(precision: str, recipe: SparseRecipe) -> tuple[list[FfnPath], list[dict]]:
    """The paths of `precision` ("bf16" or "fp8") that can run here, and a row per path that cannot (why; with
    `sparse`, as the paths have it)."""
    paths, missing = [], []
    if precision == "bf16":
        paths += [FfnPath("dense (eager)", False, _dense_bf16, autograd_step(_dense_bf16)),
                  FfnPath("dense (torch.compile)", False, compiled(_dense_bf16), _compiled_bf16_step)]
        candidates = [(STOCK_PATHS["cusparselt"], "cusparselt")]
    else:
        cap = cuda_capability()
        if cap is None or cap < (8, 9):
            return [], [{"path": "all FP8 paths", "sparse": False,
                         "status": f"unavailable: FP8 GEMMs need compute capability >= 8.9, device has {cap}"}]
        dense_fp8 = get_backend("xformers_fp8_sm90")  # only its dense mm (fp8_mm: cuBLAS, no xformers) runs here
        eager = lambda x, w1, w2: dense_sqrelu_ffn(x, w1, w2, dense_fp8)  # noqa: E731
        paths += [FfnPath("dense (eager)", False, eager, autograd_step(eager)),
                  FfnPath("dense (torch.compile)", False, compiled(_dense_fp8), compiled(_dense_fp8_step))]
        fused_backend, fused_why = backend_here("fused_fp8_sm90")
        if fused_backend:
            from ..ffn.fused import dense_fused_fp8_ffn  # Triton: imported where it runs

            paths.append(FfnPath("dense (fused kernels)", False, dense_fused_fp8_ffn,
                                 autograd_step(dense_fused_fp8_ffn)))
        else:
            missing.append({"path": "dense (fused kernels)", "sparse": False, "status": fused_why})
        candidates = [(STOCK_PATHS["xformers_fp8_sm90"], "xformers_fp8_sm90"),
                      *((p, b) for b, p in FUSED_PATHS.items())]
    for name, backend_name in candidates:
        backend, why = backend_here(backend_name)
        if backend:
            paths.append(sparse_path(name, backend, recipe))
        else:
            missing.append({"path": name, "sparse": True, "status": why})
    return paths, missing
