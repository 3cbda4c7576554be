"""The reference definition of 2:4 sparsity: which values a 2:4 mask keeps.

Keep the 2 largest magnitudes of every group of 4 consecutive elements along `dim`. Ties are broken
deterministically: among equal magnitudes the lower index wins (stable sort). Every kernel backend is
checked against this definition.
"""

from __future__ import annotations

import torch


def _check_group_dim(x: torch.Tensor, dim: int) -> int:
    dim = dim % x.dim()
    if x.shape[dim] % 4:
        raise ValueError(
            f"2:4 sparsity needs the size along dim {dim} to be a multiple of 4, got shape {tuple(x.shape)}"
        )
    return dim


def mask24(x: torch.Tensor, dim: int = -1) -> torch.Tensor:
    """Boolean mask keeping the 2 largest |x| in each group of 4 consecutive elements along `dim`."""
    dim = _check_group_dim(x, dim)
    xt = x.movedim(dim, -1)
    groups = xt.abs().reshape(*xt.shape[:-1], xt.shape[-1] // 4, 4)
    order = torch.sort(groups, dim=-1, descending=True, stable=True).indices[..., :2]
    keep = torch.zeros_like(groups, dtype=torch.bool).scatter_(-1, order, True)
    return keep.reshape(xt.shape).movedim(-1, dim)


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
