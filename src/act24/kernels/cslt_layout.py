"""The packed 2:4 format of cuSPARSELt 0.8 on sm90 (`torch._cslt_compress`), in torch.

Recovered on an H200 with `workflow/experiments/layout_probe.py` (`cslt_layout_probe.py` there; what it found is
in `reference/h200/cslt_layout/`, and a test checks this module against every probed shape):

- One flat buffer: the values, then the metadata.
- Values: the same bytes as CUTLASS's sm90 compressor (`sm90_layout.kept`): the 2 kept values of every group of 4,
  row-major (M x K/2).
- Metadata: the 4-bit code per group of CUTLASS (bits 0-1 the first kept index, 2-3 the second), two codes per
  byte, the lower-numbered nibble in the low half, but for groups with fewer than 2 non-zeros: cuSPARSELt pads
  with the highest free indices, so an empty group and a lone non-zero at index 3 are (2, 3), where CUTLASS writes
  (0, 0) and (0, 3). The values are the same bytes either way.
- Codes are laid out in atoms of 64 rows x 64 columns, atoms along K first, then along M (for bf16 cuSPARSELt pads
  K to a multiple of 64; shapes are refused here instead). Inside an atom, the bits of a code's position n are
  bits of its row r (0-63) and of its group c along K (0-15):
    FP8:  n = c0 | r3<<1 | c3<<2 | c1<<3 | c2<<4 | r0<<5 | r1<<6 | r2<<7 | r4<<8 | r5<<9
    bf16: n = r3 | c2<<1 | c0<<2 | c1<<3 | r0<<4 | r1<<5 | r2<<6 | r4<<7 | r5<<8 | c3<<9
"""

from __future__ import annotations

import torch

from .sm90_layout import ATOM_M, kept

NAME = "cusparselt"  # the layout's name in Packed24.layout and the backends

# (source: "r" row or "c" group, bit) for each bit of the code's position inside an atom, lowest first.
INNER = {8: [("c", 0), ("r", 3), ("c", 3), ("c", 1), ("c", 2), ("r", 0), ("r", 1), ("r", 2), ("r", 4), ("r", 5)],
         16: [("r", 3), ("c", 2), ("c", 0), ("c", 1), ("r", 0), ("r", 1), ("r", 2), ("r", 4), ("r", 5), ("c", 3)]}


def atom_groups(elem_bits: int) -> int:
    """Groups of 4 along K in one atom: 16 (64 columns)."""
    if elem_bits not in INNER:
        raise ValueError(f"cuSPARSELt 2:4 layout: 8- or 16-bit values only, got {elem_bits}-bit")
    return 16


def check_shape(m: int, k: int, elem_bits: int) -> None:
    cols = 4 * atom_groups(elem_bits)
    if m % ATOM_M or k % cols:
        raise ValueError(f"cuSPARSELt 2:4 layout: rows must be a multiple of {ATOM_M} and columns of {cols} for "
                         f"{elem_bits}-bit values, got {m} x {k}")


def code_offset(row: torch.Tensor, group: torch.Tensor, k: int, elem_bits: int) -> torch.Tensor:
    """Position (in 4-bit codes from the start of the metadata) of the code of group `group` (column 4 * group)
    of row `row`, for a matrix of `k` columns. Broadcasts like torch."""
    ag = atom_groups(elem_bits)
    r, c = row % ATOM_M, group % ag
    inner = sum(((r if src == "r" else c) >> bit & 1) << i for i, (src, bit) in enumerate(INNER[elem_bits]))
    atom = group // ag + (k // (4 * ag)) * (row // ATOM_M)
    return inner + atom * ATOM_M * ag


def compress(a: torch.Tensor) -> torch.Tensor:
    """The flat byte buffer `torch._cslt_compress(a)` returns on sm90 for `a` (M x K, FP8 e4m3 or bf16, at most 2
    non-zeros in every group of 4 along K)."""
    m, k = a.shape
    bits = a.element_size() * 8
    check_shape(m, k, bits)
    values, codes = kept(a, pad_high=True)
    pos = code_offset(torch.arange(m).unsqueeze(1), torch.arange(k // 4).unsqueeze(0), k, bits).flatten()
    ordered = torch.empty(m * k // 4, dtype=torch.uint8)
    ordered[pos] = codes.flatten()
    meta = ordered[0::2] | (ordered[1::2] << 4)
    return torch.cat([values.contiguous().view(torch.uint8).flatten(), meta])


def decompress(buffer: torch.Tensor, m: int, k: int, dtype: torch.dtype) -> torch.Tensor:
    """The dense M x K matrix a cuSPARSELt sm90 buffer encodes (inverse of `compress`)."""
    bits = 8 * torch.empty((), dtype=dtype).element_size()
    check_shape(m, k, bits)
    buf = buffer.view(torch.uint8).cpu().flatten()
    n_values = m * k // 2 * bits // 8
    values = buf[:n_values].view(dtype).reshape(m, k // 4, 2).float()
    meta = buf[n_values:n_values + m * k // 8]
    codes = torch.stack([meta & 0xF, meta >> 4], -1).flatten()
    pos = code_offset(torch.arange(m).unsqueeze(1), torch.arange(k // 4).unsqueeze(0), k, bits)
    code = codes[pos].long()  # (M, K/4)
    out = torch.zeros(m, k // 4, 4)
    out.scatter_add_(-1, torch.stack([code & 3, code >> 2], -1), values)  # a repeated index holds two zeros
    return out.reshape(m, k).to(dtype)
