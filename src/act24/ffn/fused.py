"""The Squared-ReLU FFN on fused kernels, 2:4 and dense: the same math as `ffn.sparse`, fewer passes over memory.

2:4 (`FusedSparseSqReluFFNFunction`, the paper's recipe):
Forward:  Y1 = X W1ᵀ (FP8 GEMM); one kernel: relu², 2:4 along F, row-wise FP8, packing; Y3 = Ỹ2 W2ᵀ (2:4 GEMM).
Backward: dY2 = dY3 W2 (FP8 GEMM); one kernel reads Y1 and dY2 once and writes dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M
          packed for BW3 (dX = dY1 W1, 2:4 along F) plus dY1 and Ỹ2 in the kept form (`fused.Kept24`: half the
          bytes of dense) for the token-wise GEMMs; one kernel per token-wise operand writes its permuted
          transpose: 2:4 along tokens on the sparse features and FP8 rows for the dense ones (BW2: dW2 = dY3ᵀ Ỹ2,
          BW4: dW1 = dY1ᵀ X). The column statistics of both (the FP8 scales of the transposes, the split's
          non-zero counts) take one read; the split GEMMs' rows go back to their features, transposed for dW2,
          in one pass.

Dense (`DenseFusedFp8FFNFunction`, the strongest dense FP8 baseline: every fusion the 2:4 path has for work the
dense path also does):
Forward:  Y1 = X W1ᵀ (FP8 GEMM); one kernel: relu² + row-wise FP8; Y3 = Y2 W2ᵀ (FP8 GEMM).
Backward: dY2 = dY3 W2; one kernel reads Y1 and dY2 once and writes dY1 in FP8 rows (BW3) and dY1, Y2 in bf16;
          the transposes BW2 / BW4 need are quantized in one pass each (`fused.quantize_transposed`).

Results equal `SparseSqReluFFNFunction` / `DenseSqReluFFNFunction` on the unfused FP8 backend (same quantization,
same masks, same GEMMs); the tests check that. Only the paper's recipe runs fused (backward "sparse" with the dY1
mask); other settings use the unfused function. `fused_ffn_op` runs either through registered custom ops, so that
`torch.compile` of a model keeps them whole (one opaque node each way) instead of breaking its graph.
"""

from __future__ import annotations

import torch

from ..kernels import fused
from ..kernels.backends import Backend, get_backend
from ..sparsity.pattern import cached_permutation
from ..sparsity.recipe import SparseRecipe


def tokenwise_fused_mm(a: torch.Tensor | fused.Kept24, b: torch.Tensor, dest: torch.Tensor, n_sparse: int,
                       perm: torch.Tensor | None, backend, a_amax: torch.Tensor | None = None,
                       transpose: bool = False) -> torch.Tensor:
    """a[perm]ᵀ b[perm] (F x N; N x F with `transpose`): 2:4 along tokens on the split's sparse features, dense
    FP8 on the others (as ffn.sparse.tokenwise_sparse_mm computes it on an FP8 backend). dest: the split as
    `fused.feature_destinations` gives it, n_sparse: its number of sparse features; a_amax: max |a| per column,
    if known."""
    t, n = b.shape
    packed, dense8, dense_scale = fused.tokens_split(a, perm, dest, n_sparse, amax=a_amax,
                                                     layout=backend.layout_for(n_sparse, t, n))
    bt8, b_scale = backend.quantize_t(b, perm)  # b[perm]ᵀ (N x T): one scale per output column
    b_scale = b_scale.t().contiguous()
    sparse_out = backend.gemm(packed, bt8.t(), b_scale)
    dense_out = torch._scaled_mm(dense8, bt8.t(), scale_a=dense_scale, scale_b=b_scale, out_dtype=torch.bfloat16,
                                 use_fast_accum=True) if len(dest) > n_sparse else sparse_out[:0]
    # The GEMMs' rows are features in split order: put back in feature order (and transposed) in one pass.
    return fused.gather_rows(sparse_out, dense_out, dest, transpose)


def sparse_forward(x, w1, w2, backend) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y3, Y1) of the 2:4 FFN; Y1 is what the backward needs."""
    y1 = backend.mm(x, w1.t())
    layout = backend.layout_for(y1.shape[0], y1.shape[1], w2.shape[0])
    return backend.sparse_gemm(fused.sparsify24_rows(y1, layout=layout)[0], w2.t()), y1


def sparse_backward(dy3, x, w1, w2, y1, recipe, backend) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX, dW1, dW2) of the 2:4 FFN with the paper's recipe."""
    dy2 = backend.mm(dy3, w2)  # BW1 (dense)
    t, f = y1.shape
    packed_dy1, dy1, y2s = fused.sparsify24_rows(y1, grad=dy2.to(y1.dtype), write_kept=True,
                                                 layout=backend.layout_for(t, f, w1.shape[1]))
    dx = backend.sparse_gemm(packed_dy1, w1)  # BW3
    # One read of the kept forms for the split (Ỹ2's non-zeros) and the FP8 scales of BW2 and BW4.
    y2_amax, y2_counts, dy1_amax = fused.kept_column_stats(y2s, dy1)
    n_sparse = recipe.sparse_features(f, backend.multiples[0])
    dest = fused.split_destinations(y2_counts, n_sparse, t)  # the 95/5 split, unsorted
    perm = cached_permutation(t, recipe.permutation_seed, x.device, torch.int32) if recipe.token_permutation else None
    dw2 = tokenwise_fused_mm(y2s, dy3, dest, n_sparse, perm, backend, y2_amax, transpose=True)  # BW2
    dw1 = tokenwise_fused_mm(dy1, x, dest, n_sparse, perm, backend, dy1_amax)  # BW4
    return dx, dw1, dw2


def dense_forward(x, w1, w2, backend) -> tuple[torch.Tensor, torch.Tensor]:
    """(Y3, Y1) of the dense FP8 FFN: relu² and the quantization of Y2 in one pass."""
    y1 = backend.mm(x, w1.t())
    return backend.gemm8(*fused.quantize_rows(y1, fused.FORWARD), *backend.quantize_t(w2.t())), y1


def dense_backward(dy3, x, w1, w2, y1, backend) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(dX, dW1, dW2) of the dense FP8 FFN."""
    dy2 = backend.mm(dy3, w2)  # BW1
    dy1_8, dy1_scale, dy1, y2 = fused.dense_backward_rows(y1, dy2)
    dx = backend.gemm8(dy1_8, dy1_scale, *backend.quantize_t(w1))  # BW3
    dw1 = backend.gemm8(*fused.quantize_transposed(dy1), *backend.quantize_t(x))  # BW4: dY1ᵀ X
    dw2 = backend.gemm8(*fused.quantize_transposed(dy3), *backend.quantize_t(y2))  # BW2: dY3ᵀ Y2
    return dx, dw1, dw2


class FusedSparseSqReluFFNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w2, recipe, backend):
        y3, y1 = sparse_forward(x, w1, w2, backend)
        ctx.save_for_backward(x, w1, w2, y1)
        ctx.recipe, ctx.backend = recipe, backend
        return y3.to(x.dtype)

    @staticmethod
    def backward(ctx, dy3):
        x, w1, w2, y1 = ctx.saved_tensors
        dx, dw1, dw2 = sparse_backward(dy3.to(x.dtype), x, w1, w2, y1, ctx.recipe, ctx.backend)
        return dx.to(x.dtype), dw1, dw2, None, None


class DenseFusedFp8FFNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w2, backend):
        y3, y1 = dense_forward(x, w1, w2, backend)
        ctx.save_for_backward(x, w1, w2, y1)
        ctx.backend = backend
        return y3

    @staticmethod
    def backward(ctx, dy3):
        x, w1, w2, y1 = ctx.saved_tensors
        return (*dense_backward(dy3.to(x.dtype).contiguous(), x, w1, w2, y1, ctx.backend), None)


def dense_fused_fp8_ffn(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor,
                        backend: Backend | None = None) -> torch.Tensor:
    """relu(x W1ᵀ)² W2ᵀ, dense, FP8 with row-wise scales on the fused kernels (x: (T, d) bf16; W1: (F, d); W2: (d, F))."""
    return DenseFusedFp8FFNFunction.apply(x, w1, w2, backend or get_backend("fused_fp8_sm90"))


# Custom ops: the same functions as single graph nodes for torch.compile. The recipe travels as JSON (custom ops
# take tensors, numbers and strings); "" means the dense FFN. The backend travels by name (a fused one).
@torch.library.custom_op("act24::fused_sqrelu_ffn", mutates_args=())
def _op_forward(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, recipe: str,
                backend: str) -> tuple[torch.Tensor, torch.Tensor]:
    return (sparse_forward if recipe else dense_forward)(x, w1, w2, get_backend(backend))


@_op_forward.register_fake
def _(x, w1, w2, recipe, backend):
    return x.new_empty(x.shape[0], w2.shape[0]), x.new_empty(x.shape[0], w1.shape[0])


@torch.library.custom_op("act24::fused_sqrelu_ffn_backward", mutates_args=())
def _op_backward(dy3: torch.Tensor, x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, y1: torch.Tensor,
                 recipe: str, backend: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    backend = get_backend(backend)
    if not recipe:
        return dense_backward(dy3, x, w1, w2, y1, backend)
    return sparse_backward(dy3, x, w1, w2, y1, SparseRecipe.from_json(recipe), backend)


@_op_backward.register_fake
def _(dy3, x, w1, w2, y1, recipe, backend):
    return torch.empty_like(x), torch.empty_like(w1), torch.empty_like(w2)


def _op_setup_context(ctx, inputs, output):
    x, w1, w2, ctx.recipe, ctx.backend = inputs
    ctx.save_for_backward(x, w1, w2, output[1])


def _op_autograd(ctx, dy3, _dy1):
    x, w1, w2, y1 = ctx.saved_tensors
    return (*_op_backward(dy3.contiguous(), x, w1, w2, y1, ctx.recipe, ctx.backend), None, None)


_op_forward.register_autograd(_op_autograd, setup_context=_op_setup_context)


def recipe_spec(recipe) -> str:
    """The custom ops' form of a recipe: its JSON ("" for the dense FFN). Make it outside compiled code (a string
    is a constant there; a dataclass is not on every torch version)."""
    if recipe is None:
        return ""
    if not recipe.is_papers:
        raise ValueError(f"fused_ffn_op: only the paper's recipe runs fused, got {recipe}")
    return recipe.to_json()


def fused_ffn_op(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, spec: str = "",
                 backend: str = "fused_fp8_sm90") -> torch.Tensor:
    """relu(x W1ᵀ)² W2ᵀ through the custom ops: 2:4 with the recipe `spec` (`recipe_spec`), else ("") dense; FP8
    on the fused kernels (sm90) and the fused backend named `backend`'s sparse GEMMs. x: (..., d), any float dtype
    (computed in bf16)."""
    if not get_backend(backend).fused:
        raise ValueError(f"fused_ffn_op: {backend!r} is not a fused backend")
    lead = x.shape[:-1]
    with torch.autocast(x.device.type, enabled=False):
        y3, _ = _op_forward(x.reshape(-1, x.shape[-1]).to(torch.bfloat16), w1.to(torch.bfloat16),
                            w2.to(torch.bfloat16), spec, backend)
    return y3.reshape(*lead, -1)
