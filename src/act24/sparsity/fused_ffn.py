"""The sparse FFN of `sparsity.ffn` on fused kernels: the same math and recipe, fewer passes over memory.

Forward:  Y1 = X W1ᵀ (FP8 GEMM); one kernel: relu², 2:4 along F, row-wise FP8, packing; Y3 = Ỹ2 W2ᵀ (2:4 GEMM).
Backward: dY2 = dY3 W2 (FP8 GEMM); one kernel reads Y1 and dY2 once and writes dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M
          packed for BW3 (dX = dY1 W1, 2:4 along F) plus dY1 and Ỹ2 in the kept form (`fused.Kept24`: half the
          bytes of dense) for the token-wise GEMMs; one kernel per token-wise operand writes its permuted
          transpose: 2:4 along tokens on the sparse features and FP8 rows for the dense ones (BW2: dW2 = dY3ᵀ Ỹ2,
          BW4: dW1 = dY1ᵀ X). The column statistics of both (the FP8 scales of the transposes, the split's
          non-zero counts) take one read; the split GEMMs' rows go back to their features, transposed for dW2,
          in one pass.

Results equal `SparseSqReluFFNFunction` on the unfused FP8 backend (same quantization, same masks, same GEMMs);
the tests check that. Only the paper's recipe runs fused (backward "sparse" with the dY1 mask); other settings
use the unfused function.
"""

from __future__ import annotations

import torch

from ..kernels import fused
from ..kernels.backends import Backend
from .pattern import n_sparse_features


def fused_recipe_supported(recipe, backend: Backend) -> bool:
    return backend.fused and recipe.backward == "sparse" and recipe.mask_dy1


def tokenwise_fused_mm(a: torch.Tensor | fused.Kept24, b: torch.Tensor, dest: torch.Tensor, n_sparse: int,
                       perm: torch.Tensor | None, backend, a_amax: torch.Tensor | None = None,
                       transpose: bool = False) -> torch.Tensor:
    """a[perm]ᵀ b[perm] (F x N; N x F with `transpose`): 2:4 along tokens on the split's sparse features, dense
    FP8 on the others (as sparsity.ffn.tokenwise_sparse_mm computes it on an FP8 backend). dest: the split as
    `fused.feature_destinations` gives it, n_sparse: its number of sparse features; a_amax: max |a| per column,
    if known."""
    packed, dense8, dense_scale = fused.tokens_split(a, perm, dest, n_sparse, amax=a_amax)
    bt8, b_scale = backend.quantize_t(b, perm)  # b[perm]ᵀ (N x T): one scale per output column
    b_scale = b_scale.t().contiguous()
    sparse_out = backend.packed_gemm(packed.values, packed.meta, bt8.t(), packed.scale, b_scale)
    dense_out = torch._scaled_mm(dense8, bt8.t(), scale_a=dense_scale, scale_b=b_scale, out_dtype=torch.bfloat16,
                                 use_fast_accum=True) if len(dest) > n_sparse else sparse_out[:0]
    # The GEMMs' rows are features in split order: put back in feature order (and transposed) in one pass.
    return fused.gather_rows(sparse_out, dense_out, dest, transpose)


class FusedSparseSqReluFFNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w2, recipe, backend):
        y1 = backend.mm(x, w1.t())
        y3 = backend.sparse_gemm(fused.sparsify24_rows(y1)[0], w2.t())
        ctx.save_for_backward(x, w1, w2, y1)
        ctx.recipe, ctx.backend = recipe, backend
        return y3.to(x.dtype)

    @staticmethod
    def backward(ctx, dy3):
        from .ffn import cached_permutation, split_multiple

        x, w1, w2, y1 = ctx.saved_tensors
        recipe, backend = ctx.recipe, ctx.backend
        dy3 = dy3.to(x.dtype)
        dy2 = backend.mm(dy3, w2)  # BW1 (dense)
        packed_dy1, dy1, y2s = fused.sparsify24_rows(y1, grad=dy2.to(y1.dtype), write_kept=True)
        dx = backend.sparse_gemm(packed_dy1, w1).to(x.dtype)  # BW3
        # One read of the kept forms for the split (Ỹ2's non-zeros) and the FP8 scales of BW2 and BW4.
        y2_amax, y2_counts, dy1_amax = fused.kept_column_stats(y2s, dy1)
        t, f = y1.shape
        n_sparse = n_sparse_features(f, recipe.dense_fraction, split_multiple(recipe, backend))
        dest = fused.split_destinations(y2_counts, n_sparse, t)  # the 95/5 split, unsorted
        perm = cached_permutation(t, recipe.permutation_seed, x.device, torch.int32) \
            if recipe.token_permutation else None
        dw2 = tokenwise_fused_mm(y2s, dy3, dest, n_sparse, perm, backend, y2_amax, transpose=True)  # BW2
        dw1 = tokenwise_fused_mm(dy1, x, dest, n_sparse, perm, backend, dy1_amax)  # BW4
        return dx, dw1, dw2, None, None
