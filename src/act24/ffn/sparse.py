"""The paper's 2:4 activation-sparse Squared-ReLU FFN as one autograd function over a kernel backend.

Forward:  Y1 = X W1ᵀ (dense);  Y2 = relu(Y1)²;  Ỹ2 = Y2 ⊙ M, M the 2:4 mask along features;
          Y3 = Ỹ2 W2ᵀ (FW2, sparse: Ỹ2 is 2:4 along F = K).
Backward: dY2 = dY3 W2 (BW1, dense);  dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M ("sparsify y1 in BW");
          dX  = dY1 W1 (BW3, sparse: dY1 is 2:4 along F by the forward mask);
          dW2 = dY3ᵀ Ỹ2 and dW1 = dY1ᵀ X (BW2, BW4) reduce over tokens: their sparse operand (Ỹ2, dY1) is made
          2:4 along tokens after a fixed token permutation, on the sparsest features only; the densest
          `dense_fraction` of features (by density of Ỹ2) go through a dense GEMM. Token-wise masks apply on
          top of the forward mask: what the forward dropped stays dropped.

Every switch of the paper's Table 1 ablation is a field of `SparseRecipe` (act24.sparsity.recipe). With the
reference backend this runs anywhere (masks on dense tensors); with a GPU backend the sparse GEMMs run on sparse
tensor cores.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..kernels.backends import Backend, ReferenceBackend
from ..sparsity.pattern import cached_permutation, feature_split, mask24
from ..sparsity.recipe import SparseRecipe


def tokenwise_sparse_mm(a: torch.Tensor, b: torch.Tensor, sparse_idx: torch.Tensor, dense_idx: torch.Tensor,
                        perm: torch.Tensor | None, backend: Backend) -> torch.Tensor:
    """aᵀ b (F x N) for a (T x F), b (T x N): 2:4 along tokens on the features `sparse_idx`, dense on
    `dense_idx`. Tokens are reordered by `perm` first (it only changes which values the mask drops)."""
    if perm is not None:
        a, b = a[perm], b[perm]
    if backend.dense_math:
        # Same values as the split below, in one GEMM: the token-wise mask, lifted on the dense features.
        keep = mask24(a, dim=0)
        keep[:, dense_idx] = True
        return (a * keep).t() @ b
    out = torch.empty(a.shape[1], b.shape[1], dtype=b.dtype, device=b.device)
    a_sparse_t = a[:, sparse_idx].t()  # (F_sparse x T): 2:4 along T = K
    out[sparse_idx] = backend.mm24((a_sparse_t * mask24(a_sparse_t, dim=1)).contiguous(), b).to(out.dtype)
    if dense_idx.numel():
        out[dense_idx] = backend.mm(a[:, dense_idx].t().contiguous(), b).to(out.dtype)
    return out


def runs_fused(recipe: SparseRecipe, backend: Backend) -> bool:
    """Whether the fused kernels (act24.ffn.fused) run this recipe on this backend: only the paper's recipe does."""
    return backend.fused and recipe.is_papers


def check_shapes(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, recipe: SparseRecipe,
                 backend: Backend) -> None:
    t, d = x.shape
    f = w1.shape[0]
    if w1.shape != (f, d) or w2.shape != (d, f):
        raise ValueError(f"sparse FFN: expected W1 (F x d) and W2 (d x F) for d={d}, got {tuple(w1.shape)} "
                         f"and {tuple(w2.shape)}")
    if f % 4:
        raise ValueError(f"sparse FFN: F={f} must be a multiple of 4 (2:4 groups along features)")
    if t % 4:
        raise ValueError(f"sparse FFN: the token count {t} must be a multiple of 4 (2:4 groups along tokens)")
    gemms = {"FW2 (Ỹ2 W2ᵀ)": (t, f, d)}
    if recipe.backward == "sparse":
        f_sparse = recipe.sparse_features(f, backend.multiples[0])
        gemms.update({"BW3 (dY1 W1)": (t, f, d), "BW2 (Ỹ2ᵀ dY3, 2:4 along tokens)": (f_sparse, t, d),
                      "BW4 (dY1ᵀ X, 2:4 along tokens)": (f_sparse, t, d)})
    for what, (m, k, n) in gemms.items():
        if err := backend.shape_error(m, k, n):
            raise ValueError(f"sparse FFN {what}: {err}")


class SparseSqReluFFNFunction(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, w1, w2, recipe: SparseRecipe, backend: Backend):
        y1 = backend.mm(x, w1.t())
        y2 = F.relu(y1).square()
        mask = mask24(y2, dim=1)
        y3 = backend.mm24(y2 * mask, w2.t())
        ctx.save_for_backward(x, w1, w2, y1, mask)
        ctx.recipe, ctx.backend = recipe, backend
        return y3.to(x.dtype)

    @staticmethod
    def backward(ctx, dy3):
        x, w1, w2, y1, mask = ctx.saved_tensors
        recipe, backend = ctx.recipe, ctx.backend
        dy3 = dy3.to(x.dtype)
        relu_y1 = F.relu(y1)
        y2s = relu_y1.square() * mask
        dy1 = backend.mm(dy3, w2) * (2 * relu_y1)  # BW1 (dense), then the derivative of relu²
        if recipe.backward == "straight_through":
            return dy1 @ w1, dy1.t() @ x, dy3.t() @ y2s, None, None
        if recipe.mask_dy1:
            dy1 = dy1 * mask
        if recipe.backward == "masked_dense":
            return dy1 @ w1, dy1.t() @ x, dy3.t() @ y2s, None, None
        # BW3: dY1 is 2:4 along F through the forward mask; without that mask it is dense.
        dx = (backend.mm24(dy1, w1) if recipe.mask_dy1 else backend.mm(dy1, w1)).to(x.dtype)
        sparse_idx, dense_idx = feature_split(y2s, recipe.dense_fraction,
                                                recipe.split_multiple_for(backend.multiples[0]))
        perm = cached_permutation(x.shape[0], recipe.permutation_seed, x.device) if recipe.token_permutation else None
        dw2 = tokenwise_sparse_mm(y2s, dy3, sparse_idx, dense_idx, perm, backend).t()  # BW2
        dw1 = tokenwise_sparse_mm(dy1, x, sparse_idx, dense_idx, perm, backend)  # BW4
        return dx, dw1, dw2, None, None


def sparse_sqrelu_ffn(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, recipe: SparseRecipe,
                      backend: Backend | None = None) -> torch.Tensor:
    """relu(x W1ᵀ)² W2ᵀ with 2:4 activation sparsity. x: (..., d); W1: (F, d); W2: (d, F)."""
    backend = backend or ReferenceBackend()
    lead = x.shape[:-1]
    x2 = x.reshape(-1, x.shape[-1])
    if backend.dtype is not None:
        # Real kernels run in their dtype; gradients flow back in the callers' dtypes.
        x2, w1, w2 = x2.to(backend.dtype), w1.to(backend.dtype), w2.to(backend.dtype)
    elif torch.is_autocast_enabled(x.device.type):
        dtype = torch.get_autocast_dtype(x.device.type)
        x2, w1, w2 = x2.to(dtype), w1.to(dtype), w2.to(dtype)
    check_shapes(x2, w1, w2, recipe, backend)
    function = SparseSqReluFFNFunction
    if runs_fused(recipe, backend):
        from .fused import FusedSparseSqReluFFNFunction as function  # Triton: imported only where it runs
    with torch.autocast(x.device.type, enabled=False):
        y = function.apply(x2, w1, w2, recipe, backend)
    return y.reshape(*lead, -1)


class DenseSqReluFFNFunction(torch.autograd.Function):
    """The dense Squared-ReLU FFN with all six GEMMs in the backend's dense precision (`backend.mm`):
    the like-for-like baseline of the sparse FFN (e.g. FP8 dense against FP8 2:4)."""

    @staticmethod
    def forward(ctx, x, w1, w2, backend: Backend):
        y1 = backend.mm(x, w1.t())
        ctx.save_for_backward(x, w1, w2, y1)
        ctx.backend = backend
        return backend.mm(F.relu(y1).square(), w2.t()).to(x.dtype)

    @staticmethod
    def backward(ctx, dy3):
        x, w1, w2, y1 = ctx.saved_tensors
        mm, dy3 = ctx.backend.mm, dy3.to(x.dtype)
        relu_y1 = F.relu(y1)
        dy1 = (mm(dy3, w2) * (2 * relu_y1)).to(x.dtype)
        dw2 = mm(dy3.t().contiguous(), relu_y1.square().to(x.dtype))
        return mm(dy1, w1), mm(dy1.t().contiguous(), x), dw2, None


def dense_sqrelu_ffn(x: torch.Tensor, w1: torch.Tensor, w2: torch.Tensor, backend: Backend) -> torch.Tensor:
    """relu(x W1ᵀ)² W2ᵀ with every GEMM through `backend.mm` (x: (T, d), W1: (F, d), W2: (d, F))."""
    return DenseSqReluFFNFunction.apply(x, w1, w2, backend)
