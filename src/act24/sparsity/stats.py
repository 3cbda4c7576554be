"""Activation statistics of FFN activations Y2 (tokens x features).

For each layer: the fraction of exact zeros; the fraction of non-zeros a 2:4 mask would drop along
features (the forward pass), along tokens in natural order and after a fixed token permutation (the
backward pass), and the same on the sparsest features only (the 95/5 split); per-feature density, from
which the "dense features" of the split are found.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from .pattern import feature_split, mask24


def dropped_fraction(a: torch.Tensor, dim: int) -> float:
    """Fraction of the non-zeros of `a` that a 2:4 mask along `dim` drops (0 when `a` has no non-zero)."""
    nonzero = a != 0
    n = int(nonzero.sum())
    if n == 0:
        return 0.0
    return int((nonzero & ~mask24(a, dim)).sum()) / n


def dropped_energy_fraction(a: torch.Tensor, dim: int) -> float:
    """Fraction of sum(a²) that a 2:4 mask along `dim` drops."""
    sq = a.double().square()
    total = float(sq.sum())
    return 0.0 if total == 0 else float(sq[~mask24(a, dim)].sum()) / total


def feature_density(a: torch.Tensor) -> torch.Tensor:
    """Per-feature fraction of tokens with a non-zero activation, shape (features,)."""
    return (a != 0).float().mean(0)


def activation_stats(a: torch.Tensor, perm: torch.Tensor, dense_fraction: float) -> dict[str, float]:
    """Scalar statistics of one layer's activations `a` (tokens x features); `perm` permutes tokens;
    `dense_fraction` of the features (the densest) are left out of the split's token-wise 2:4."""
    if a.dim() != 2:
        raise ValueError(f"activations must be 2-D (tokens x features), got shape {tuple(a.shape)}")
    if perm.numel() != a.shape[0]:
        raise ValueError(f"token permutation has {perm.numel()} entries for {a.shape[0]} tokens")
    sparse_features, _ = feature_split(a, dense_fraction)
    sparse_part = a[perm][:, sparse_features]
    nonzero = max(float((a != 0).sum()), 1.0)
    nonzero_sparse_part = float((sparse_part != 0).sum())
    return {
        "zero_frac": 1.0 - float((a != 0).sum()) / a.numel(),
        "drop24_features": dropped_fraction(a, dim=1),
        "drop24_features_energy": dropped_energy_fraction(a, dim=1),
        "drop24_tokens": dropped_fraction(a, dim=0),
        "drop24_tokens_permuted": dropped_fraction(a[perm], dim=0),
        # The 95/5 split: token-wise 2:4 only on the sparsest features (as a share of all non-zeros).
        "drop24_tokens_permuted_split": dropped_fraction(sparse_part, dim=0) * nonzero_sparse_part / nonzero,
        "dense_features_share": 1.0 - nonzero_sparse_part / nonzero,
        "split_dense_fraction": dense_fraction,  # the split these two columns measure
    }


@contextlib.contextmanager
def record_activations(ffns: list[nn.Module]) -> Iterator[list[torch.Tensor | None]]:
    """Capture each FFN's activation output (`act_out`) as a detached (tokens x features) tensor."""
    captured: list[torch.Tensor | None] = [None] * len(ffns)
    handles = []
    for i, ffn in enumerate(ffns):
        def hook(_module, _inputs, output, i=i):
            captured[i] = output.detach().reshape(-1, output.shape[-1])
        handles.append(ffn.act_out.register_forward_hook(hook))
    try:
        yield captured
    finally:
        for h in handles:
            h.remove()
