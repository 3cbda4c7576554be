"""The token-wise kernel (BW2 / BW4 operands: 2:4 along permuted tokens on the sparse features, dense rows for the
dense ones, in one pass) and the 95/5 split's destinations without sorting."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bits import EMULATE_ROUNDING, _compress_pair, _fp8x4, _group_codes, _interleave16, _meta_offset, _pick2, _select24, _unkeep, _word64
from .columns import _column_scales_kernel, column_stats, kept_column_stats
from .formats import (CUTLASS, KEPT_TOKENS_CONFIG, TOKENS_CONFIG, TRANSPOSE_CONFIG, Kept24, LaunchConfig, arange32,
                      cached, check_operand, empty_packed, layout_code)


@triton.jit
def _token_tile(a_ptr, perm_ptr, t0, pairs, j: tl.constexpr, feats, stride_a):
    """Tokens t0 + 8 i + j (after the permutation) for all pair indices i, features `feats`: (BT/8, BF) bf16."""
    src = tl.load(perm_ptr + t0 + 8 * pairs + j).to(tl.int64)
    return tl.load(a_ptr + src[:, None] * stride_a + feats[None, :])


@triton.jit
def _token_words(a_ptr, perm_ptr, t0, pairs, j: tl.constexpr, feats, stride_a):
    """Tokens j and j + 1 of each group (`_token_tile`) as bf16 words: token j in bits 0-15."""
    lo = _token_tile(a_ptr, perm_ptr, t0, pairs, j, feats, stride_a)
    hi = _token_tile(a_ptr, perm_ptr, t0, pairs, j + 1, feats, stride_a)
    if EMULATE_ROUNDING:
        return lo.to(tl.uint16, bitcast=True).to(tl.uint32) | (hi.to(tl.uint16, bitcast=True).to(tl.uint32) << 16)
    # Two features' bf16 share a register: one byte permute per output word.
    return tl.inline_asm_elementwise("prmt.b32 $0, $2, $3, 0x5410; prmt.b32 $1, $2, $3, 0x7632;", "=r,=r,r,r",
                                     [lo, hi], dtype=tl.uint32, is_pure=True, pack=2)


@triton.jit
def _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, j: tl.constexpr, g0, BG: tl.constexpr, F):
    """Token t0 + 8 i + j (after the permutation) of a kept-form operand (`Kept24`), for all pair indices i and
    the BG groups of features from g0 (even): the dense words of elements 0, 1 and 2, 3 of each group, (BT/8, BG)
    each."""
    src = tl.load(perm_ptr + t0 + 8 * pairs + j).to(tl.int64)[:, None]
    kept = tl.load(a_ptr.to(tl.pointer_type(tl.uint32)) + src * (F // 4) + g0 + tl.arange(0, BG)[None, :])
    code = _group_codes(codes_ptr, src * (F // 8) + g0 // 2 + tl.arange(0, BG // 2)[None, :])
    return _unkeep(kept, code, False), _unkeep(kept, code, True)


@triton.jit
def _feature_words(l_a, l_b, h_a, h_b):
    """(BT/8, BF) words of two tokens a, b (a in bits 0-15) for features in order, from each token's dense words
    (BT/8, BF/4) of elements 0, 1 (l) and 2, 3 (h) of each group."""
    w = tl.join(tl.join(_interleave16(l_a, l_b, False), _interleave16(h_a, h_b, False)),
                tl.join(_interleave16(l_a, l_b, True), _interleave16(h_a, h_b, True)))  # [.., g, j, i]: 2 j + i
    return tl.reshape(w, (l_a.shape[0], 4 * l_a.shape[1]))


@triton.jit
def _tokens_out(e_lo, e_hi, o_lo, o_hi, feats, t0, pairs, dest_ptr, inv_scale_ptr, vals_ptr, meta_ptr, dense_ptr,
                T, M_SPARSE, FP8: tl.constexpr, LAYOUT: tl.constexpr, SPARSE: tl.constexpr):
    """Everything the token-wise kernel writes for features `feats`, from (BT/8, len(feats)) words of their
    tokens (0, 1), (2, 3) (the even group of each pair of groups along tokens) and (4, 5), (6, 7) (the odd one)."""
    dest = tl.load(dest_ptr + feats)
    inv = (feats * 0 + 1).to(tl.float32)[None, :]
    if FP8:
        inv = tl.load(inv_scale_ptr + feats)[None, :]
    is_sparse = (dest >= 0)[:, None]
    if SPARSE:  # else every feature is dense (`quantize_transposed`)
        ie0, ie1 = _select24(e_lo & 0x7FFF7FFF, e_hi & 0x7FFF7FFF)
        io0, io1 = _select24(o_lo & 0x7FFF7FFF, o_hi & 0x7FFF7FFF)
        ne, we = _compress_pair(_pick2(e_lo, e_hi, ie0, ie1), ie0, ie1, inv, FP8, LAYOUT)
        no, wo = _compress_pair(_pick2(o_lo, o_hi, io0, io1), io0, io1, inv, FP8, LAYOUT)
        rows = tl.where(dest >= 0, dest, 0).to(tl.int64)[:, None]
        out = rows * (T // 8) + t0 // 8 + pairs[None, :]
        if FP8:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint32)) + out, tl.trans(we | (wo << 16)), mask=is_sparse)
        else:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint64)) + out, tl.trans(_word64(we, wo)), mask=is_sparse)
        moff = _meta_offset(rows, t0 + 8 * pairs[None, :], M_SPARSE, T, LAYOUT)
        tl.store(meta_ptr + moff, tl.trans((ne | (no << 4)).to(tl.uint8)), mask=is_sparse)
    if tl.sum((dest < 0).to(tl.int32)) > 0:  # most blocks hold sparse features only
        drows = tl.where(dest >= 0, 0, -dest - 1).to(tl.int64)[:, None]
        if FP8:
            tl.store(dense_ptr.to(tl.pointer_type(tl.uint64)) + drows * (T // 8) + t0 // 8 + pairs[None, :],
                     tl.trans(_word64(_fp8x4(e_lo, e_hi, inv), _fp8x4(o_lo, o_hi, inv))), mask=~is_sparse)
        else:
            d64 = dense_ptr.to(tl.pointer_type(tl.uint64)) + drows * (T // 4) + t0 // 4 + 2 * pairs[None, :]
            tl.store(d64, tl.trans(_word64(e_lo, e_hi)), mask=~is_sparse)
            tl.store(d64 + 1, tl.trans(_word64(o_lo, o_hi)), mask=~is_sparse)


@triton.jit
def _tokens_kernel(a_ptr, codes_ptr, perm_ptr, dest_ptr, inv_scale_ptr, vals_ptr, meta_ptr, dense_ptr,
                   T, F, M_SPARSE, stride_a, FP8: tl.constexpr, LAYOUT: tl.constexpr, SPARSE: tl.constexpr,
                   KEPT: tl.constexpr, BF: tl.constexpr, BT: tl.constexpr):
    # Tiles are (token pairs of groups, features): the 8 tokens of a pair of groups are 8 gathered row tiles,
    # so selection needs no data movement; only the packed results are transposed (to rows = features).
    t0 = tl.program_id(1) * BT
    pairs = tl.arange(0, BT // 8)
    if KEPT:  # a's rows in the kept form: each group's dense words, in feature order
        g0 = tl.program_id(0) * (BF // 4)
        l0, h0 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 0, g0, BF // 4, F)
        l1, h1 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 1, g0, BF // 4, F)
        l2, h2 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 2, g0, BF // 4, F)
        l3, h3 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 3, g0, BF // 4, F)
        l4, h4 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 4, g0, BF // 4, F)
        l5, h5 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 5, g0, BF // 4, F)
        l6, h6 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 6, g0, BF // 4, F)
        l7, h7 = _kept_token_words(a_ptr, codes_ptr, perm_ptr, t0, pairs, 7, g0, BF // 4, F)
        feats = tl.program_id(0) * BF + tl.arange(0, BF)
        _tokens_out(_feature_words(l0, l1, h0, h1), _feature_words(l2, l3, h2, h3), _feature_words(l4, l5, h4, h5),
                    _feature_words(l6, l7, h6, h7), feats, t0, pairs, dest_ptr, inv_scale_ptr, vals_ptr, meta_ptr,
                    dense_ptr, T, M_SPARSE, FP8, LAYOUT, SPARSE)
    else:
        feats = tl.program_id(0) * BF + tl.arange(0, BF)
        _tokens_out(_token_words(a_ptr, perm_ptr, t0, pairs, 0, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 2, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 4, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 6, feats, stride_a), feats, t0, pairs, dest_ptr,
                    inv_scale_ptr, vals_ptr, meta_ptr, dense_ptr, T, M_SPARSE, FP8, LAYOUT, SPARSE)


def feature_destinations(n_features: int, sparse_idx: torch.Tensor, dense_idx: torch.Tensor) -> torch.Tensor:
    """For every feature: its row in the sparse output (>= 0) or -(1 + its row in the dense output)."""
    dest = torch.empty(n_features, dtype=torch.int32, device=sparse_idx.device)
    dest[sparse_idx] = arange32(len(sparse_idx), sparse_idx.device)
    dest[dense_idx] = -1 - arange32(len(dense_idx), sparse_idx.device)
    return dest


def split_destinations(counts: torch.Tensor, n_sparse: int, max_count: int) -> torch.Tensor:
    """`feature_destinations` of `pattern.feature_split` from the split's per-feature non-zero counts (each at most
    max_count), without sorting: the features whose (count, lower index first) rank among the top
    len(counts) - n_sparse are dense. One selection for the threshold, then one small kernel."""
    f = counts.numel()
    if n_sparse >= f:
        return arange32(f, counts.device)
    # Keys count * F + (F - 1 - index) are distinct: a larger count first, ties to the lower index. int32 keys
    # when they fit: the selection takes half the passes (77 against 150 us at F = 16512 on an H200).
    dtype = torch.int32 if (max_count + 1) * f < 2**31 else torch.int64
    reverse = cached(("reverse", f, str(counts.device), dtype),
                      lambda: torch.arange(f - 1, -1, -1, device=counts.device, dtype=dtype))
    key = counts.to(dtype) * f + reverse
    threshold = key.kthvalue(n_sparse + 1).values  # the smallest dense key
    dest = torch.empty(f, dtype=torch.int32, device=counts.device)
    _split_destinations_kernel[(1,)](key, threshold, dest, f, BLOCK=1024)
    return dest


@triton.jit
def _split_destinations_kernel(key_ptr, threshold_ptr, dest_ptr, F: tl.constexpr, BLOCK: tl.constexpr):
    # One program: a running count of the dense features so far gives every feature its row in its part.
    threshold = tl.load(threshold_ptr)
    dense_before = 0
    for start in range(0, F, BLOCK):
        i = start + tl.arange(0, BLOCK)
        dense = (tl.load(key_ptr + i, mask=i < F, other=-1) >= threshold).to(tl.int32)
        upto = dense_before + tl.cumsum(dense, axis=0)  # dense features up to and including i
        tl.store(dest_ptr + i, tl.where(dense > 0, -upto, i - upto), mask=i < F)
        dense_before += tl.sum(dense, axis=0)


def tokens_split(a: torch.Tensor | Kept24, perm: torch.Tensor | None, dest: torch.Tensor, m_sparse: int, *,
                 fp8: bool = True, amax: torch.Tensor | None = None, cfg: LaunchConfig | None = None,
                 layout: str = CUTLASS):
    """`sparsify24_tokens` for a split given as `feature_destinations` (or `split_destinations`) with m_sparse
    sparse features, of a dense (T x F) bf16 `a` or of one in the kept form: (Packed24 in `layout`, dense rows,
    their FP8 row scales (F - m_sparse x 1) or None)."""
    kept = isinstance(a, Kept24)
    cfg = cfg or (KEPT_TOKENS_CONFIG if kept else TOKENS_CONFIG)
    t, f = a.shape
    n_dense = f - m_sparse
    check_operand(a.values if kept else a, "tokens_split", m_sparse, t, fp8, layout)
    if f % cfg.block_m or t % cfg.block_k:
        raise ValueError(f"tokens_split: F={f} must be a multiple of {cfg.block_m} and T={t} of {cfg.block_k}")
    src, codes = (a.values.contiguous(), a.codes.contiguous()) if kept else (a.contiguous(), dest)
    perm = (arange32(t, src.device) if perm is None else perm).to(torch.int32).contiguous()
    dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    packed = empty_packed(m_sparse, t, fp8, layout, src.device)
    dense = torch.empty(n_dense, t, dtype=dtype, device=src.device)
    sparse_scale = dense_scale = None
    inv = dest  # unused without FP8
    if fp8:  # row-wise scales of aᵀ (one per column of a), as quantize_rowwise_fp8(aᵀ) computes them
        if amax is None:
            amax = kept_column_stats(a)[0] if kept else column_stats(a)[0]
        inv = torch.empty(f, dtype=torch.float32, device=src.device)
        sparse_scale = torch.empty(m_sparse, 1, dtype=torch.float32, device=src.device)
        dense_scale = torch.empty(n_dense, 1, dtype=torch.float32, device=src.device)
        _column_scales_kernel[(triton.cdiv(f, 1024),)](amax, dest, inv, sparse_scale, dense_scale, f, BC=1024)
    _tokens_kernel[(f // cfg.block_m, t // cfg.block_k)](
        src, codes, perm, dest, inv, packed.values, packed.meta, dense, t, f, m_sparse, src.stride(0), FP8=fp8,
        LAYOUT=layout_code(layout, fp8),
        SPARSE=m_sparse > 0, KEPT=kept, BF=cfg.block_m, BT=cfg.block_k, num_warps=cfg.num_warps)
    packed.scale = sparse_scale
    return packed, dense, dense_scale


def sparsify24_tokens(a: torch.Tensor | Kept24, perm: torch.Tensor | None, sparse_idx: torch.Tensor,
                      dense_idx: torch.Tensor, *, fp8: bool = True, amax: torch.Tensor | None = None,
                      cfg: LaunchConfig | None = None, layout: str = CUTLASS):
    """The BW2 / BW4 operands of `a` (T x F, bf16, dense or `Kept24`) in one pass: rows `sparse_idx` of a[perm]ᵀ,
    2:4 along tokens, packed (Packed24), and rows `dense_idx` of a[perm]ᵀ dense (FP8 with the same row scales, or
    bf16), with the dense rows' scales. amax: max |a| per column, if known."""
    dest = feature_destinations(a.shape[1], sparse_idx, dense_idx)
    return tokens_split(a, perm, dest, len(sparse_idx), fp8=fp8, amax=amax, cfg=cfg, layout=layout)


def quantize_transposed(b: torch.Tensor, perm: torch.Tensor | None = None,
                        cfg: LaunchConfig = TRANSPOSE_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise FP8 of b[perm]ᵀ (b: K x N bf16) in one pass, as `quantize_rowwise_fp8(b[perm].t().contiguous())`:
    the token-wise kernel with every column dense."""
    n = b.shape[1]
    dest = cached(("all dense", n, str(b.device)), lambda: -1 - arange32(n, b.device))  # in order
    _, dense, scale = tokens_split(b, perm, dest, 0, cfg=cfg)
    return dense, scale


def transposed_fits(b: torch.Tensor, cfg: LaunchConfig = TRANSPOSE_CONFIG) -> bool:
    return (b.dtype == torch.bfloat16 and b.dim() == 2 and b.shape[0] % max(cfg.block_k, 128) == 0
            and b.shape[1] % cfg.block_m == 0)
