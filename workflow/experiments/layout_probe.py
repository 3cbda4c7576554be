"""Recover a 2:4 compressor's metadata arrangement from its output, without its source.

A compressor (e.g. cuSPARSELt's `torch._cslt_compress`) turns an M x K matrix with 2 non-zeros in every group of 4
along K into a buffer: the kept values, then metadata, 2 bits per kept index. To find which metadata bit belongs to
which group, compress matrices whose groups pick one of two patterns by one bit of their group number
(`probe_inputs`): a metadata bit that flips between the two patterns in exactly the calls where a group's code
(its number + 1) has a 1 belongs to that group (`decode`). Two series of pattern pairs, (0,1)/(2,3) and
(0,2)/(1,3), flip different bits of a group's 4-bit code, so every bit of the code is attributed. Checked on the
CPU against the sm90 CUTLASS layout, whose arrangement is known (`kernels.sm90_layout`).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch

# Pattern pairs: the kept indices of a group when its bit is 0 / 1.
SERIES = (((0, 1), (2, 3)), ((0, 2), (1, 3)))


def group_bits(n_groups: int) -> int:
    """Bits of the probe codes: groups are coded g + 1, so that every group flips in some probe."""
    return max(1, math.ceil(math.log2(n_groups + 1)))


def pattern_matrix(m: int, k: int, choice: torch.Tensor, pair, dtype) -> torch.Tensor:
    """M x K with ones at the kept indices of `pair[choice[g]]` in each group g (row-major group numbers)."""
    a = torch.zeros(m * k // 4, 4)
    for bit, idx in enumerate(pair):
        rows = (choice == bit).nonzero().flatten()
        for i in idx:
            a[rows, i] = 1.0
    return a.reshape(m, k).to(dtype)


def probe_inputs(m: int, k: int, dtype) -> list[tuple[int, int, torch.Tensor]]:
    """(series, bit, matrix) for every probe: the all-zero-bit baseline is bit -1."""
    groups = torch.arange(m * k // 4)
    out = []
    for s, pair in enumerate(SERIES):
        out.append((s, -1, pattern_matrix(m, k, torch.zeros_like(groups), pair, dtype)))
        for b in range(group_bits(len(groups))):
            out.append((s, b, pattern_matrix(m, k, ((groups + 1) >> b) & 1, pair, dtype)))
    return out


def as_bits(buffer: torch.Tensor) -> torch.Tensor:
    """A uint8 buffer as its bits, least significant first within each byte."""
    b = buffer.view(torch.uint8).cpu().long()
    return ((b.unsqueeze(-1) >> torch.arange(8)) & 1).flatten()


def decode(outputs: dict[tuple[int, int], torch.Tensor], n_groups: int, start: int) -> torch.Tensor:
    """Per metadata bit (from byte `start` of the compressed buffers): the group it belongs to, or -1 for bits
    no probe flips. `outputs[(series, bit)]`: the compressed buffer of that probe."""
    n_bits = group_bits(n_groups)
    owner = None
    for s in range(len(SERIES)):
        base = as_bits(outputs[(s, -1)])[8 * start:]
        flips = torch.stack([as_bits(outputs[(s, b)])[8 * start:] != base for b in range(n_bits)])
        found = flips.any(0)
        number = (flips.long() << torch.arange(n_bits).unsqueeze(1)).sum(0)
        series_owner = torch.where(found, number - 1, -1)
        owner = series_owner if owner is None else torch.where(owner >= 0, owner, series_owner)
    return owner


def run(compress: Callable[[torch.Tensor], torch.Tensor], m: int, k: int, dtype, start: int) -> torch.Tensor:
    """Owner group of every metadata bit of `compress` (a function from M x K to a flat byte buffer) at M x K."""
    outputs = {(s, b): compress(a) for s, b, a in probe_inputs(m, k, dtype)}
    return decode(outputs, m * k // 4, start)


def basis(owner: torch.Tensor, k: int) -> dict:
    """The map from a code's position n to its (row, group along K), read from `owner` (`run`'s output for an
    M x K matrix) as the (row, group) of each power of two, and whether every position is the sum of its bits'
    (then the basis is the whole map)."""
    group = owner.reshape(-1, 4)
    if not (group == group[:, :1]).all() or (group < 0).any():
        return {"codes_of_4_bits": False}
    group = group[:, 0]
    row, col_group = group // (k // 4), group % (k // 4)
    n = torch.arange(len(group))
    bits = [b for b in range(len(group).bit_length()) if 1 << b < len(group)]
    rows = {b: int(row[1 << b]) for b in bits}
    cols = {b: int(col_group[1 << b]) for b in bits}
    linear = all(torch.equal(sum(((n >> b) & 1) * v[b] for b in bits), t) for v, t in ((rows, row), (cols, col_group)))
    return {"codes_of_4_bits": True, "linear": linear, "row_of_bit": [rows[b] for b in bits],
            "group_of_bit": [cols[b] for b in bits]}
