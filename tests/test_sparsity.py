import pytest
import torch

from act24.sparsity.pattern import is_24_sparse, mask24, token_permutation
from act24.sparsity.stats import (activation_stats, dropped_energy_fraction, dropped_fraction,
                                  feature_density, record_activations)


def test_mask24_keeps_two_largest_magnitudes_per_group():
    x = torch.tensor([[1.0, -5.0, 3.0, 2.0, 0.0, 0.0, 0.0, 7.0]])
    assert mask24(x).tolist() == [[False, True, True, False, True, False, False, True]]


def test_mask24_breaks_ties_towards_the_lower_index():
    x = torch.tensor([[2.0, 2.0, 2.0, 2.0], [0.0, 1.0, 1.0, 1.0]])
    assert mask24(x).tolist() == [[True, True, False, False], [False, True, True, False]]


@pytest.mark.parametrize("dim", [0, 1])
def test_mask24_is_2to4_in_the_stated_direction(dim):
    x = torch.randn(16, 24)
    masked = x * mask24(x, dim)
    assert is_24_sparse(masked, dim)
    assert mask24(x, dim).sum() == x.numel() // 2
    # Along the other direction the pattern is generally not 2:4.
    assert not is_24_sparse(masked, 1 - dim)


def test_mask24_rejects_sizes_not_multiple_of_4():
    with pytest.raises(ValueError, match="multiple of 4"):
        mask24(torch.randn(3, 6), dim=1)


def test_dropped_fraction_counts_excess_nonzeros_per_group():
    # Groups along features: [1,2,3,0] drops 1 of 3; [4,5,6,7] drops 2 of 4; [0,0,1,0] drops 0 of 1.
    a = torch.tensor([[1.0, 2, 3, 0, 4, 5, 6, 7, 0, 0, 1, 0]])
    assert dropped_fraction(a, dim=1) == pytest.approx(3 / 8)
    # The dropped values are the smallest of their group: 1, 4 and 5.
    assert dropped_energy_fraction(a, dim=1) == pytest.approx((1 + 16 + 25) / (1 + 4 + 9 + 16 + 25 + 36 + 49 + 1))
    assert dropped_fraction(torch.zeros(4, 4), dim=0) == 0.0


def test_token_direction_and_permutation():
    # Feature 0 fires on 4 consecutive tokens: a token-wise 2:4 mask drops half of them unless permuted.
    a = torch.zeros(8, 4)
    a[:4, 0] = 1.0
    assert dropped_fraction(a, dim=0) == 0.5
    perm = torch.tensor([0, 4, 1, 5, 2, 6, 3, 7])
    assert dropped_fraction(a[perm], dim=0) == 0.0
    stats = activation_stats(a, perm, dense_fraction=0.0)
    assert stats["zero_frac"] == pytest.approx(1 - 4 / 32)
    assert stats["drop24_tokens"] == 0.5 and stats["drop24_tokens_permuted"] == 0.0


def test_dense_feature_split_keeps_the_densest_features_dense():
    # Feature 0 is dense (all tokens), feature 1 sparse: with 1 of 4 features dense, nothing is dropped.
    a = torch.zeros(8, 4)
    a[:, 0] = 1.0
    a[0, 1] = 1.0
    perm = torch.arange(8)
    stats = activation_stats(a, perm, dense_fraction=0.25)
    assert stats["drop24_tokens_permuted"] == pytest.approx(4 / 9)
    assert stats["drop24_tokens_permuted_split"] == 0.0
    assert stats["dense_features_share"] == pytest.approx(8 / 9)
    assert feature_density(a).tolist() == [1.0, 0.125, 0.0, 0.0]


def test_activation_stats_rejects_bad_shapes():
    with pytest.raises(ValueError, match="2-D"):
        activation_stats(torch.zeros(2, 4, 4), torch.arange(2), 0.05)
    with pytest.raises(ValueError, match="permutation"):
        activation_stats(torch.zeros(8, 4), torch.arange(4), 0.05)


def test_token_permutation_is_fixed_by_seed():
    p = token_permutation(64, seed=3)
    assert torch.equal(p, token_permutation(64, seed=3))
    assert sorted(p.tolist()) == list(range(64))
    assert not torch.equal(p, token_permutation(64, seed=4))


def test_record_activations_captures_sqrelu_outputs():
    from act24.config import ModelConfig
    from act24.model import Transformer

    model = Transformer(ModelConfig(vocab_size=50, d_model=16, n_layers=2, n_heads=2, seq_len=8,
                                    ffn="sqrelu", ffn_multiple_of=8))
    with record_activations(model.ffn_modules()) as acts:
        model(torch.randint(0, 50, (2, 8)))
    assert [a.shape for a in acts] == [(16, 72), (16, 72)]  # F_sqrelu = 1.5 * 48
    assert all(bool((a >= 0).all()) for a in acts)
    # Hooks are removed afterwards.
    assert all(len(f.act_out._forward_hooks) == 0 for f in model.ffn_modules())


def test_feature_split_keeps_the_densest_dense_and_aligns_the_sparse_count():
    from act24.sparsity.pattern import feature_split

    a = torch.zeros(4, 8)
    a[:, 5] = 1.0
    a[:2, 2] = 1.0
    a[0, 7] = 1.0
    sparse, dense = feature_split(a, 0.25)  # 2 of 8 dense
    assert dense.tolist() == [2, 5] and sparse.tolist() == [0, 1, 3, 4, 6, 7]
    sparse, dense = feature_split(a, 0.25, multiple=4)  # 6 sparse rounded down to 4: ties to the lower index
    assert sparse.tolist() == [1, 3, 4, 6] and dense.tolist() == [0, 2, 5, 7]
    counts = torch.tensor([0, 0, 0, 9, 0, 0, 0, 0])  # given counts are used instead of a's
    assert feature_split(a, 0.25, nonzero_counts=counts)[1].tolist() == [0, 3]
    sparse, dense = feature_split(a, 0.0)
    assert len(sparse) == 8 and len(dense) == 0
