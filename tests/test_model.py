import pytest
import torch

from act24.config import FFN_KINDS, ConfigError, ModelConfig, RunConfig
from act24.config import ffn_width, parameter_counts
from act24.model import FeedForward, Transformer, apply_rope, rope_tables

SMALL = dict(vocab_size=97, d_model=32, n_layers=2, n_heads=4, seq_len=16, ffn_multiple_of=8)


@pytest.mark.parametrize("kind", FFN_KINDS)
def test_logits_shape_and_loss(kind):
    model = Transformer(ModelConfig(**SMALL, ffn=kind))
    idx = torch.randint(0, 97, (3, 16))
    logits, loss = model(idx, torch.randint(0, 97, (3, 16)))
    assert logits.shape == (3, 16, 97)
    # Near-uniform predictions at init: loss close to log(vocab).
    assert abs(loss.item() - torch.log(torch.tensor(97.0)).item()) < 0.5


def test_ffn_kinds_have_equal_parameter_counts():
    counts = {k: sum(p.numel() for p in Transformer(ModelConfig(**SMALL, ffn=k)).parameters()) for k in FFN_KINDS}
    assert len(set(counts.values())) == 1, counts
    assert ffn_width(ModelConfig(**SMALL, ffn="sqrelu")) * 2 == ffn_width(ModelConfig(**SMALL, ffn="swiglu")) * 3


@pytest.mark.parametrize("kind", FFN_KINDS)
@pytest.mark.parametrize("tie", [True, False])
def test_parameter_counts_formula_matches_the_built_model(kind, tie):
    cfg = ModelConfig(**SMALL, ffn=kind, tie_embeddings=tie)
    model = Transformer(cfg)
    counts = parameter_counts(cfg)
    assert counts["total_params"] == sum(p.numel() for p in model.parameters())
    assert counts["ffn_params"] == sum(p.numel() for f in model.ffn_modules() for p in f.parameters())


def test_ffn_widths_are_multiples_and_llama_7b_like():
    cfg = ModelConfig(d_model=4096, ffn_multiple_of=128, ffn="swiglu")
    assert ffn_width(cfg) == 11008  # Llama-7B's SwiGLU width
    assert ffn_width(cfg, "sqrelu") == 16512 and 16512 % 128 == 0


def test_sqrelu_activation_values():
    ffn = FeedForward(ModelConfig(**SMALL, ffn="sqrelu"))
    y1 = torch.tensor([[-2.0, -0.0, 0.5, 3.0]])
    assert torch.equal(ffn.activation(y1, None), torch.tensor([[0.0, 0.0, 0.25, 9.0]]))


@pytest.mark.parametrize("kind", ["swiglu", "sqrelu"])
def test_causal_masking_future_tokens_do_not_change_past_logits(kind):
    torch.manual_seed(0)
    model = Transformer(ModelConfig(**SMALL, ffn=kind)).eval()
    a = torch.randint(0, 97, (1, 16))
    b = a.clone()
    b[0, 10:] = torch.randint(0, 97, (6,))
    la, lb = model(a)[0], model(b)[0]
    torch.testing.assert_close(la[0, :10], lb[0, :10])
    assert not torch.allclose(la[0, 10:], lb[0, 10:])


def test_rope_preserves_norm_and_is_relative():
    cos, sin = rope_tables(8, 4, 10000.0)
    q = torch.randn(1, 1, 8, 4)
    rq = apply_rope(q, cos, sin)
    torch.testing.assert_close(rq.norm(dim=-1), q.norm(dim=-1))
    # The same vector at positions (i, j) scores like at (i + s, j + s).
    v = torch.randn(4).expand(1, 1, 8, 4)
    rv = apply_rope(v, cos, sin)[0, 0]
    torch.testing.assert_close(rv[1] @ rv[3], rv[4] @ rv[6])


def test_sequence_longer_than_seq_len_is_rejected():
    model = Transformer(ModelConfig(**SMALL))
    with pytest.raises(ValueError, match="seq_len=16"):
        model(torch.zeros(1, 17, dtype=torch.long))


@pytest.mark.parametrize(
    "model, message",
    [
        ({"ffn": "tanh"}, "model.ffn"),
        ({"d_model": 30, "n_heads": 4}, "model.n_heads"),
        ({"ffn_multiple_of": 6}, "model.ffn_multiple_of"),
        ({"d_model": "big"}, "model.d_model': expected int"),
        ({"widht": 3}, "unknown config key 'model.widht'"),
    ],
)
def test_bad_model_config_names_the_key(model, message):
    with pytest.raises(ConfigError, match=message):
        RunConfig.from_dict({"model": model})


def test_run_config_round_trips():
    cfg = RunConfig.from_dict({"name": "x", "model": {"ffn": "relu"}, "train": {"lr": 1}})
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert RunConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize("kind", FFN_KINDS)
def test_inference24_keeps_the_two_largest_of_four_activations(kind):
    from act24.sparsity.pattern import is_24_sparse, mask24
    from act24.sparsity.stats import record_activations

    torch.manual_seed(0)
    model = Transformer(ModelConfig(**SMALL, ffn=kind)).eval()
    ffn = model.ffn_modules()[0]
    x = torch.randn(5, 32)
    dense = ffn(x)
    model.set_inference24(True)
    with record_activations([ffn]) as acts:
        sparse = ffn(x)
    y2 = acts[0]  # the activation before the mask
    assert torch.allclose(sparse, ffn.w2(y2 * mask24(y2)), atol=1e-6)
    assert is_24_sparse(y2 * mask24(y2)) and not torch.allclose(sparse, dense)
    model.set_inference24(False)
    assert torch.equal(ffn(x), dense)


def test_set_sparse_turns_the_inference_mask_on_and_off():
    from act24.sparsity.recipe import SparseRecipe

    model = Transformer(ModelConfig(**SMALL, ffn="sqrelu"))
    model.set_sparse(SparseRecipe())
    assert all(f.mask24_forward and f.sparse is not None for f in model.ffn_modules())
    model.set_sparse(None)
    assert not any(f.mask24_forward or f.sparse is not None for f in model.ffn_modules())


def test_ffn_kernel_replaces_the_ffn_in_training_only():


    cfg = ModelConfig(d_model=32, n_layers=1, n_heads=2, seq_len=8, ffn="sqrelu", ffn_multiple_of=16)
    ffn = FeedForward(cfg)
    x = torch.randn(2, 8, 32)
    calls = []

    def kernel(x, w1, w2):
        calls.append((w1.shape, w2.shape))
        return torch.relu(x @ w1.t()).square() @ w2.t() * 2

    ffn.kernel = kernel
    ffn.eval()
    dense = ffn(x)
    assert calls == []  # evaluation keeps the module's own FFN
    ffn.train()
    assert torch.allclose(ffn(x), 2 * dense) and calls == [(ffn.w1.weight.shape, ffn.w2.weight.shape)]
    model = Transformer(cfg)
    model.set_ffn_kernel(kernel)
    assert all(f.kernel is kernel for f in model.ffn_modules())
    with pytest.raises(ValueError, match="Squared-ReLU"):
        Transformer(ModelConfig(d_model=32, n_layers=1, n_heads=2, ffn="swiglu", ffn_multiple_of=16)).set_ffn_kernel(
            kernel)


def test_compiled_blocks_train_like_eager_ones_with_the_sparse_ffn_too():
    """train.compile: the same losses and gradients as eager (the 2:4 recipe's masks compile with the block), and the
    activation statistics still see every layer (their hooks run eagerly)."""
    from act24.sparsity.recipe import SparseRecipe
    from act24.train import layer_statistics
    from act24.sparsity.pattern import token_permutation

    cfg = ModelConfig(d_model=32, n_layers=2, n_heads=2, seq_len=16, vocab_size=64, ffn="sqrelu", ffn_multiple_of=16)
    x = torch.randint(0, 64, (4, 16), generator=torch.Generator().manual_seed(1))
    models = []
    for compiled in (False, True):
        torch.manual_seed(0)
        m = Transformer(cfg)
        m.set_sparse(SparseRecipe(permutation_seed=0))
        if compiled:
            m.compile_blocks()
        loss = m(x, x)[1]
        loss.backward()
        models.append((m, loss))
    (eager, loss_e), (comp, loss_c) = models
    assert torch.allclose(loss_e, loss_c, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(eager.named_parameters(), comp.parameters()):
        assert torch.allclose(p.grad, q.grad, rtol=1e-4, atol=1e-6), name
    rows, density = layer_statistics(comp, x, token_permutation(x.numel(), seed=0), 0.05)
    assert [r["layer"] for r in rows] == [0, 1] and density.shape == (2, comp.blocks[0].ffn.w1.out_features)
