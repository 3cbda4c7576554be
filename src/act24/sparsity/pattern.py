"""The reference definition of 2:4 sparsity: which values a 2:4 mask keeps.

Keep the 2 largest magnitudes of every group of 4 consecutive elements along `dim`. Ties are broken
deterministically: among equal magnitudes the lower index wins (stable sort). Every kernel backend is
checked against this definition.
"""

from __future__ import annotations

import torch

from .recipe import n_sparse_features


def _check_group_dim(x: torch.Tensor, dim: int) -> int:
    dim = dim % x.dim()
    if x.shape[dim] % 4:
        raise ValueError(
            f"2:4 sparsity needs the size along dim {dim} to be a multiple of 4, got shape {tuple(x.shape)}"
        )
    return dim


def mask24(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Boolean mask keeping the 2 largest |x| in each group of 4 consecutive elements along `dim`.

    Element i of a group is kept when fewer than 2 others beat it; j beats i if |x_j| > |x_i|, or if
    |x_j| == |x_i| and j < i. Six pairwise comparisons per group on strided views: no sort, no copy."""
    dim = _check_group_dim(x, dim)
    groups = x.abs().unflatten(dim, (x.shape[dim] // 4, 4))
    a0, a1, a2, a3 = groups.unbind(dim + 1)
    c01, c02, c03 = (a1 > a0).byte(), (a2 > a0).byte(), (a3 > a0).byte()
    c12, c13, c23 = (a2 > a1).byte(), (a3 > a1).byte(), (a3 > a2).byte()
    beaten = (c01 + c02 + c03, 1 - c01 + c12 + c13, 2 - c02 - c12 + c23, 3 - c03 - c13 - c23)
    return (torch.stack(beaten, dim + 1) < 2).flatten(dim, dim + 1)


def is_24_sparse(x: torch.Tensor, dim: int = -1) -> bool:
    """True when every group of 4 consecutive elements along `dim` holds at most 2 non-zeros."""
    dim = _check_group_dim(x, dim)
    xt = (x != 0).movedim(dim, -1)
    counts = xt.reshape(*xt.shape[:-1], xt.shape[-1] // 4, 4).sum(-1)
    return bool((counts <= 2).all())


def token_permutation(n_tokens: int, seed: int = 0) -> torch.Tensor:
    """A fixed random permutation of token positions (the paper permutes tokens before the FFN)."""
    gen = torch.Generator().manual_seed(seed)
    return torch.randperm(n_tokens, generator=gen)


_PERMUTATIONS: dict[tuple[int, int, str, torch.dtype], torch.Tensor] = {}


def cached_permutation(n_tokens: int, seed: int, device: torch.device,
                       dtype: torch.dtype = torch.int64) -> torch.Tensor:
    """`token_permutation` on `device`, made once per (size, seed, device, dtype): the backward asks every step."""
    key = (n_tokens, seed, str(device), dtype)
    if key not in _PERMUTATIONS:
        _PERMUTATIONS[key] = token_permutation(n_tokens, seed).to(device=device, dtype=dtype)
    return _PERMUTATIONS[key]


def feature_split(a: torch.Tensor, dense_fraction: float, multiple: int = 1,
                  nonzero_counts: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """(sparse_features, dense_features) indices of `a` (tokens x features), each ascending: the paper's 95/5
    split, the densest `dense_fraction` of the features (most non-zeros; ties to the lower index) stay dense;
    see n_sparse_features for the count. `nonzero_counts`: the per-feature counts if already computed."""
    n_features = a.shape[1]
    n_sparse = n_sparse_features(n_features, dense_fraction, multiple)
    counts = (a != 0).sum(0) if nonzero_counts is None else nonzero_counts
    order = torch.sort(counts, descending=True, stable=True).indices
    return order[n_features - n_sparse:].sort().values, order[: n_features - n_sparse].sort().values
