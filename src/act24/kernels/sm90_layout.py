"""The packed 2:4 format of CUTLASS's sm90 sparse GEMM (xformers' `_sparse24_fp8_sm90_cutlass_gemm`), in torch.

This is the format our fused sparsify kernels write (`kernels.fused`); here it is spelled out slowly so that
tests can check the kernels against it on the CPU, and the GPU tests check it bit for bit against CUTLASS's
own compressor (`_sparse24_sm90_cutlass_compress`). Read from CUTLASS 3.x `Sm90GemmSparseConfig`
(`fill_layoutA`, `fill_layoutE`) and `sm90_sparse_gemm_compressor.hpp`:

- Values: the 2 kept values of every group of 4, in column order, row-major (M x K/2).
- Metadata: 4 bits per group: bits 0-1 the index of the first kept value, bits 2-3 of the second; two groups
  per byte, the lower-column group in the low nibble. Bytes are laid out in atoms of 64 rows:
  8-bit values (FP8): atoms of 64 x 128 columns, row-major inside (16 bytes per row), stacked along M, then K.
  16-bit values (bf16): atoms of 64 x 64 columns in a swizzled order (the `TensorEAtom_16bit` layout).
- Which indices a group gets follows the compressor: the non-zeros in order; one non-zero at index p < 3
  gives (p, 3), one at 3 gives (0, 3) with the value second; no non-zero gives (0, 0). "Zero" ignores the
  sign bit.
"""

from __future__ import annotations

import torch

ATOM_M = 64
NAME = "cutlass"  # the layout's name in Packed24.layout and the backends


def atom_k(elem_bits: int) -> int:
    """Columns of one metadata atom: 128 for 8-bit values, 64 for 16-bit (the GEMM's tile K, at most 128)."""
    if elem_bits not in (8, 16):
        raise ValueError(f"sm90 2:4 layout: 8- or 16-bit values only, got {elem_bits}-bit")
    return 128 if elem_bits == 8 else 64


def check_shape(m: int, k: int, elem_bits: int) -> None:
    if m % ATOM_M or k % atom_k(elem_bits):
        raise ValueError(f"sm90 2:4 layout: rows must be a multiple of {ATOM_M} and columns of "
                         f"{atom_k(elem_bits)} for {elem_bits}-bit values, got {m} x {k}")


def meta_byte_offset(row: torch.Tensor, col: torch.Tensor, m: int, elem_bits: int) -> torch.Tensor:
    """Byte offset of the metadata byte holding column `col` (any of its 8 columns) of row `row`, for a
    matrix of `m` rows. Broadcasts like torch."""
    ak = atom_k(elem_bits)
    kb, kk = col // ak, col % ak
    if elem_bits == 8:
        logical = kb * m * ak + row * ak + kk
    else:
        mb, mm = row // ATOM_M, row % ATOM_M
        m0, m1, m2 = mm % 8, (mm // 8) % 2, mm // 16
        k0, k1, k2 = kk % 16, (kk // 16) % 2, kk // 32
        logical = (k0 + 16 * m1 + 32 * k2 + 64 * m0 + 512 * k1 + 1024 * m2) + mb * ATOM_M * ak + kb * m * ak
    return logical // 8  # 8 logical columns (two 4-bit groups) per byte


def _nonzero(x: torch.Tensor) -> torch.Tensor:
    return x.float() != 0  # -0.0 == 0.0: the sign bit is ignored, as in the compressor


def kept(a: torch.Tensor, pad_high: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """(values (M x K/2), 4-bit codes (M x K/4, uint8)) of `a` (M x K, FP8 e4m3 or bf16, at most 2 non-zeros in
    every group of 4 along K): what the sm90 compressors keep, before they arrange the codes. `pad_high`: as
    cuSPARSELt's does: groups with fewer than 2 non-zeros take the highest free indices (an empty group and a
    lone non-zero at 3 are (2, 3)), and the values are the bytes at the coded indices as they are (so a -0.0 there
    is kept, where CUTLASS writes +0)."""
    m, k = a.shape
    bits = a.element_size() * 8
    groups = a.reshape(m, k // 4, 4)
    nz = _nonzero(groups)
    if (nz.sum(-1) > 2).any():
        raise ValueError("sm90 2:4 compress: a group of 4 holds more than 2 non-zeros")
    pos = torch.arange(4).expand_as(nz)
    # Non-zero positions first (in order), then the others: the first two are the kept indices.
    order = torch.sort(torch.where(nz, pos, pos + 4), dim=-1).values % 4
    i0, i1 = order[..., 0], order[..., 1]
    n = nz.sum(-1)
    i0, i1 = torch.where(n == 0, 0, i0), torch.where(n == 0, 0, i1)
    one_at_3 = (n == 1) & (i0 == 3)
    i0, i1 = torch.where(one_at_3, 0, i0), torch.where(n == 1, 3, i1)
    v = torch.zeros(m, k // 4, 2, dtype=a.dtype)
    raw = groups.view(torch.uint8 if bits == 8 else torch.int16)  # copy values bit for bit
    vraw = v.view(raw.dtype)
    first = torch.gather(raw, -1, i0.unsqueeze(-1)).squeeze(-1)
    second = torch.gather(raw, -1, i1.unsqueeze(-1)).squeeze(-1)
    # Unused slots hold +0 (the compressor never copies a zero, not even -0.0).
    vraw[..., 0] = torch.where((n == 2) | ((n == 1) & ~one_at_3), first, 0)
    vraw[..., 1] = torch.where((n == 2) | one_at_3, second, 0)
    if pad_high:
        padded = (n == 0) | one_at_3
        i0, i1 = torch.where(padded, 2, i0), torch.where(padded, 3, i1)
        # cuSPARSELt stores the bytes at the coded indices as they are: -0.0 too
        vraw[..., 0] = torch.gather(raw, -1, i0.unsqueeze(-1)).squeeze(-1)
        vraw[..., 1] = torch.gather(raw, -1, i1.unsqueeze(-1)).squeeze(-1)
    return v.reshape(m, k // 2), (i0 | (i1 << 2)).to(torch.uint8)


def compress(a: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(values (M x K/2), metadata (M*K/8 bytes, uint8)) of `a` (M x K, FP8 e4m3 or bf16, at most 2 non-zeros
    in every group of 4 along K), exactly as CUTLASS's sm90 compressor writes them."""
    m, k = a.shape
    bits = a.element_size() * 8
    check_shape(m, k, bits)
    values, nibble = kept(a)
    byte = nibble[:, 0::2] | (nibble[:, 1::2] << 4)  # (M, K/8)
    rows = torch.arange(m).unsqueeze(1)
    cols = 8 * torch.arange(k // 8).unsqueeze(0)
    meta = torch.zeros(m * k // 8, dtype=torch.uint8)
    meta[meta_byte_offset(rows, cols, m, bits).flatten()] = byte.flatten()
    return values, meta


def decompress(values: torch.Tensor, meta: torch.Tensor) -> torch.Tensor:
    """The dense M x K matrix that (values, metadata) encode (inverse of `compress`; indices that repeat hold
    zeros, as the compressor writes them)."""
    m, half = values.shape
    k = 2 * half
    bits = values.element_size() * 8
    check_shape(m, k, bits)
    rows = torch.arange(m).unsqueeze(1)
    cols = 8 * torch.arange(k // 8).unsqueeze(0)
    byte = meta.cpu()[meta_byte_offset(rows, cols, m, bits)]  # (M, K/8)
    nibble = torch.stack([byte & 0xF, byte >> 4], -1).reshape(m, k // 4).long()
    idx = torch.stack([nibble & 3, nibble >> 2], -1)  # (M, K/4, 2)
    out = torch.zeros(m, k // 4, 4, dtype=torch.float32)
    v = values.cpu().float().reshape(m, k // 4, 2)
    out.scatter_add_(-1, idx, v)  # a repeated index (0, 0) holds two zeros
    return out.reshape(m, k).to(values.dtype)
