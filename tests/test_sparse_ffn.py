"""The 2:4 sparse FFN autograd function against explicit formulas (float64, CPU, reference backend)."""

import pytest
import torch
import torch.nn.functional as F

from act24.config import ModelConfig
from act24.kernels.backends import ReferenceBackend
from act24.model import Transformer
from act24.ffn import sparse_sqrelu_ffn
from act24.sparsity.recipe import SparseRecipe
from act24.sparsity.pattern import is_24_sparse, mask24, token_permutation

T, D, FF = 64, 16, 128


def inputs(seed=0, t=T, d=D, f=FF):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(t, d, generator=g, dtype=torch.float64, requires_grad=True)
    w1 = (torch.randn(f, d, generator=g, dtype=torch.float64) / d**0.5).requires_grad_()
    w2 = (torch.randn(d, f, generator=g, dtype=torch.float64) / f**0.5).requires_grad_()
    dy = torch.randn(t, d, generator=g, dtype=torch.float64)
    return x, w1, w2, dy


def grads(recipe, seed=0, backend=None):
    x, w1, w2, dy = inputs(seed)
    y = sparse_sqrelu_ffn(x, w1, w2, recipe, backend)
    y.backward(dy)
    return y.detach(), x.grad, w1.grad, w2.grad


def explicit_masked(x, w1, w2):
    """The masked forward written out; autograd of it is the exact gradient (the mask is a constant)."""
    y2 = F.relu(x @ w1.t()).square()
    return (y2 * mask24(y2.detach(), dim=1)) @ w2.t()


def test_masked_dense_backward_is_the_exact_gradient_of_the_masked_forward():
    x, w1, w2, dy = inputs()
    y_ref = explicit_masked(x, w1, w2)
    ref = torch.autograd.grad(y_ref, (x, w1, w2), dy)
    y, gx, gw1, gw2 = grads(SparseRecipe(backward="masked_dense"))
    torch.testing.assert_close(y, y_ref.detach(), rtol=1e-12, atol=1e-12)
    for got, want in zip((gx, gw1, gw2), ref):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def expected_sparse_grads(recipe):
    """The paper's backward written out feature by feature, independently of the implementation."""
    x, w1, w2, dy = (t.detach() for t in inputs())
    y1 = x @ w1.t()
    y2 = F.relu(y1).square()
    m = mask24(y2, dim=1)
    y2s = y2 * m
    dy1 = (dy @ w2) * 2 * F.relu(y1)
    if recipe.mask_dy1:
        dy1 = dy1 * m
    dx = dy1 @ w1
    order = torch.arange(T)
    if recipe.token_permutation:
        order = token_permutation(T, recipe.permutation_seed)
    n_dense = FF - (FF - round(recipe.dense_fraction * FF)) // recipe.split_multiple * recipe.split_multiple
    dense = set(torch.sort((y2s != 0).sum(0), descending=True, stable=True).indices[:n_dense].tolist())
    dw1, dw2 = torch.zeros_like(w1), torch.zeros_like(w2)
    for j in range(FF):
        a2, a1 = y2s[order, j], dy1[order, j]
        if j not in dense:  # 2:4 along (permuted) tokens, of each operand's own magnitudes
            a2, a1 = a2 * mask24(a2, dim=0), a1 * mask24(a1, dim=0)
        dw2[:, j] = dy[order].t() @ a2
        dw1[j] = a1 @ x[order]
    return dx, dw1, dw2


@pytest.mark.parametrize("recipe", [
    SparseRecipe(),
    SparseRecipe(token_permutation=False),
    SparseRecipe(dense_fraction=0.0),
    SparseRecipe(mask_dy1=False),
    SparseRecipe(dense_fraction=0.25, split_multiple=8, permutation_seed=3),
], ids=["full", "no-permutation", "naive-no-split", "no-dy1-mask", "split-25%"])
@pytest.mark.parametrize("split_gemms", [False, True], ids=["fused-masks", "split-gemms"])
def test_sparse_backward_matches_the_written_out_recipe(recipe, split_gemms):
    _, gx, gw1, gw2 = grads(recipe, backend=SpyBackend() if split_gemms else None)
    want = expected_sparse_grads(recipe)
    for got, exp in zip((gx, gw1, gw2), want):
        torch.testing.assert_close(got, exp, rtol=1e-12, atol=1e-12)


def differs(a, b):
    return not torch.allclose(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("switch, changes", [
    (dict(token_permutation=False), {"dw1", "dw2"}),
    (dict(dense_fraction=0.0), {"dw1", "dw2"}),
    (dict(mask_dy1=False), {"dx", "dw1"}),
    (dict(backward="masked_dense"), {"dw1", "dw2"}),
    (dict(backward="straight_through"), {"dx", "dw1", "dw2"}),
])
def test_each_ablation_switch_changes_exactly_what_it_names(switch, changes):
    names = ("y", "dx", "dw1", "dw2")
    base = dict(zip(names, grads(SparseRecipe())))
    other = dict(zip(names, grads(SparseRecipe(**switch))))
    assert {n for n in names if differs(base[n], other[n])} == changes


def test_straight_through_ignores_the_mask_in_the_backward():
    x, w1, w2, dy = inputs()
    y2 = F.relu(x @ w1.t()).square()
    dy1 = (dy @ w2) * 2 * F.relu(x @ w1.t())
    _, gx, gw1, _ = grads(SparseRecipe(backward="straight_through"))
    torch.testing.assert_close(gx, (dy1 @ w1).detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(gw1, (dy1.t() @ x).detach(), rtol=1e-12, atol=1e-12)
    assert y2.shape == (T, FF)


class SpyBackend(ReferenceBackend):
    """Records every sparse operand, to check it is 2:4 along K (its rows). Not `dense_math`, so the
    function takes the split-GEMM path that real kernels take."""

    dense_math = False

    def __init__(self):
        self.operands = []

    def mm24(self, a, b):
        self.operands.append(a.detach().clone())
        return super().mm24(a, b)


def test_every_sparse_gemm_operand_is_2to4_along_its_reduction_dimension():
    spy = SpyBackend()
    grads(SparseRecipe(), backend=spy)
    shapes = [tuple(a.shape) for a in spy.operands]
    n_sparse = 96  # 128 - round(6.4) = 122, rounded down to a multiple of 32
    assert shapes == [(T, FF), (T, FF), (n_sparse, T), (n_sparse, T)]  # FW2, BW3, BW2, BW4
    assert all(is_24_sparse(a, dim=1) for a in spy.operands)
    # The forward mask is applied exactly: FW2's operand keeps half of the values of every group.
    assert int((spy.operands[0] != 0).sum()) <= T * FF // 2


def test_what_the_forward_dropped_stays_dropped_in_token_wise_operands():
    spy = SpyBackend()
    x, w1, w2, dy = inputs()
    sparse_sqrelu_ffn(x, w1, w2, SparseRecipe(token_permutation=False, dense_fraction=0.0), spy).backward(dy)
    y2 = F.relu(x @ w1.t()).square().detach()
    dropped_by_forward = ~mask24(y2, dim=1)
    # BW2's operand is (features x tokens), features in order (no permutation, no split).
    bw2_operand = spy.operands[2].t()
    assert bool((bw2_operand != 0).any())
    assert not bool((bw2_operand[dropped_by_forward] != 0).any())


def test_bad_shapes_name_the_constraint():
    x, w1, w2, _ = inputs()
    with pytest.raises(ValueError, match="multiple of 4 .2:4 groups along tokens"):
        sparse_sqrelu_ffn(x[:62], w1, w2, SparseRecipe())
    x, w1, w2, _ = inputs(f=126)
    with pytest.raises(ValueError, match="F=126 must be a multiple of 4"):
        sparse_sqrelu_ffn(x, w1, w2, SparseRecipe())
    x, w1, w2, _ = inputs()
    with pytest.raises(ValueError, match="expected W1 .F x d. and W2 .d x F."):
        sparse_sqrelu_ffn(x, w1, w2.t(), SparseRecipe())

    class Aligned(ReferenceBackend):
        name = "aligned"
        multiples = (128, 16, 8)

    with pytest.raises(ValueError, match=r"FW2 .*aligned: a \(64 x 128\) @ b \(128 x 16\) needs M % 128 == 0"):
        sparse_sqrelu_ffn(x, w1, w2, SparseRecipe(), Aligned())


def test_recipe_rejects_unknown_backward_mode():
    with pytest.raises(ValueError, match="sparse.backward"):
        SparseRecipe(backward="sparser")


def small_model(**over):
    cfg = ModelConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, seq_len=8, ffn="sqrelu",
                      ffn_multiple_of=8, **over)
    torch.manual_seed(0)
    return Transformer(cfg)


def test_model_with_sparsity_off_equals_the_dense_model():
    model = small_model()
    idx = torch.randint(0, 50, (2, 8))
    dense_logits = model(idx)[0]
    model.set_sparse(SparseRecipe())
    sparse_logits = model(idx)[0]
    assert differs(dense_logits.double(), sparse_logits.double())
    model.set_sparse(None)
    torch.testing.assert_close(model(idx)[0], dense_logits, rtol=0, atol=0)


def test_model_training_and_eval_forwards_agree_in_sparse_mode():
    model = small_model()
    model.set_sparse(SparseRecipe(split_multiple=8))
    idx = torch.randint(0, 50, (2, 8))
    train_logits = model.train()(idx)[0]  # the autograd function
    with torch.no_grad():
        eval_logits = model.eval()(idx)[0]  # masked dense inference
    torch.testing.assert_close(train_logits.detach(), eval_logits, rtol=1e-5, atol=1e-6)


def test_set_sparse_refuses_non_sqrelu_models():
    model = Transformer(ModelConfig(vocab_size=50, d_model=16, n_layers=1, n_heads=2, seq_len=8, ffn="swiglu",
                                    ffn_multiple_of=8))
    with pytest.raises(ValueError, match="Squared-ReLU"):
        model.set_sparse(SparseRecipe())


def test_dense_ffn_function_is_the_plain_ffn_with_its_gradients():
    from act24.ffn import dense_sqrelu_ffn

    x, w1, w2, dy = inputs()
    want_y = F.relu(x @ w1.t()).square() @ w2.t()
    want = torch.autograd.grad(want_y, (x, w1, w2), dy)
    y = dense_sqrelu_ffn(x, w1, w2, ReferenceBackend())
    got = torch.autograd.grad(y, (x, w1, w2), dy)
    torch.testing.assert_close(y, want_y, rtol=1e-12, atol=1e-12)
    for g, w in zip(got, want):
        torch.testing.assert_close(g, w, rtol=1e-12, atol=1e-12)
