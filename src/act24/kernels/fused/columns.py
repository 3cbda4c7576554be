"""Column statistics (max |.| and non-zero counts, of dense and kept-form inputs), the per-column FP8 scales, and
the gather that puts the split GEMMs' rows back in feature order."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bits import FP8_MAX, _group_codes, _max2, _unkeep
from .formats import COLUMNS_CONFIG, COLUMN_CHUNK, GATHER_CONFIG, KEPT_COLUMNS_CONFIG, Kept24, LaunchConfig


@triton.jit
def _column_stats_kernel(a_ptr, amax_bits_ptr, count_ptr, R, C, stride_a,
                         COUNT: tl.constexpr, BR: tl.constexpr, BC: tl.constexpr, CHUNK: tl.constexpr):
    # A program reduces CHUNK rows of BC columns elementwise into (BR, BC) accumulators (no reduction across
    # threads inside the loop), then across its BR rows, then into the totals with one atomic per column: the
    # maximum on the float bits as int32 (non-negative floats order as their bits), the count by addition.
    cols = tl.program_id(0) * BC + tl.arange(0, BC)
    r0 = tl.program_id(1) * CHUNK
    amax = tl.zeros((BR, BC), tl.float32)
    count = tl.zeros((BR, BC), tl.int32)
    for i in range(0, CHUNK, BR):
        rows = r0 + i + tl.arange(0, BR)
        ok = (rows[:, None] < R) & (cols[None, :] < C)
        x = tl.load(a_ptr + rows[:, None].to(tl.int64) * stride_a + cols[None, :], mask=ok, other=0.0).to(tl.float32)
        amax = tl.maximum(amax, tl.abs(x))
        if COUNT:
            count += (x != 0).to(tl.int32)
    tl.atomic_max(amax_bits_ptr + cols, tl.max(amax, axis=0).to(tl.int32, bitcast=True), mask=cols < C)
    if COUNT:
        tl.atomic_add(count_ptr + cols, tl.sum(count, axis=0), mask=cols < C)


@triton.jit
def _kept_stats_kernel(a_ptr, b_ptr, codes_ptr, a_amax_ptr, a_count_ptr, b_amax_ptr, R, G,
                       HAS_B: tl.constexpr, BR: tl.constexpr, BG: tl.constexpr, CHUNK: tl.constexpr):
    # `_column_stats_kernel` on kept-form operands sharing their codes (`Kept24`), BG groups of features wide:
    # each group's dense words accumulate as bf16 pairs (maxima) and pairs of 16-bit counts (at most CHUNK).
    groups = tl.program_id(0) * BG + tl.arange(0, BG)
    group_pairs = tl.program_id(0) * (BG // 2) + tl.arange(0, BG // 2)
    r0 = tl.program_id(1) * CHUNK
    zero = tl.zeros((BR, BG), tl.uint32)
    a_lo, a_hi, n_lo, n_hi, b_lo, b_hi = zero, zero, zero, zero, zero, zero
    for i in range(0, CHUNK, BR):
        rows = (r0 + i + tl.arange(0, BR)).to(tl.int64)[:, None]
        ok = (rows < R) & (groups[None, :] < G)
        code = _group_codes(codes_ptr, tl.where(rows < R, rows, 0) * (G // 2) + group_pairs[None, :] % (G // 2))
        kept = tl.load(a_ptr.to(tl.pointer_type(tl.uint32)) + rows * G + groups[None, :], mask=ok, other=0)
        lo = _unkeep(kept, code, False) & 0x7FFF7FFF
        hi = _unkeep(kept, code, True) & 0x7FFF7FFF
        a_lo, a_hi = _max2(a_lo, lo), _max2(a_hi, hi)
        n_lo += ((lo + 0x7FFF7FFF) >> 15) & 0x00010001  # 1 per non-zero half: halves are at most 0x7FFF
        n_hi += ((hi + 0x7FFF7FFF) >> 15) & 0x00010001
        if HAS_B:
            kept = tl.load(b_ptr.to(tl.pointer_type(tl.uint32)) + rows * G + groups[None, :], mask=ok, other=0)
            b_lo = _max2(b_lo, _unkeep(kept, code, False) & 0x7FFF7FFF)
            b_hi = _max2(b_hi, _unkeep(kept, code, True) & 0x7FFF7FFF)
    feats = 4 * groups
    ok = groups < G
    _kept_stats_out(a_lo, a_hi, a_amax_ptr, feats, ok, True)
    _kept_stats_out(n_lo, n_hi, a_count_ptr, feats, ok, False)
    if HAS_B:
        _kept_stats_out(b_lo, b_hi, b_amax_ptr, feats, ok, True)


@triton.jit
def _kept_stats_out(lo, hi, out_ptr, feats, ok, MAX: tl.constexpr):
    """Reduce (BR, BG) words of a group's elements 0, 1 (lo) and 2, 3 (hi) over rows into the totals of the
    features: maxima as float bits (a bf16's bits << 16), or counts."""
    for k in tl.static_range(4):
        w = lo if k < 2 else hi
        half = (w >> 16) if k % 2 else (w & 0xFFFF)
        if MAX:
            tl.atomic_max(out_ptr + feats + k, (tl.max(half, axis=0) << 16).to(tl.int32, bitcast=True), mask=ok)
        else:
            tl.atomic_add(out_ptr + feats + k, tl.sum(half, axis=0).to(tl.int32), mask=ok)


@triton.jit
def _column_scales_kernel(amax_ptr, dest_ptr, inv_ptr, sparse_scale_ptr, dense_scale_ptr, C, BC: tl.constexpr):
    # Per column: the FP8 scale of its max |.| (as backends.fp8_scale: IEEE divisions), its inverse for the
    # token-wise kernel, and the scale placed at the column's row of the split's sparse or dense part.
    cols = tl.program_id(0) * BC + tl.arange(0, BC)
    ok = cols < C
    scale = tl.math.div_rn(tl.maximum(tl.load(amax_ptr + cols, mask=ok, other=0.0), 1e-12), FP8_MAX)
    tl.store(inv_ptr + cols, tl.math.div_rn(tl.full((BC,), 1.0, tl.float32), scale), mask=ok)
    dest = tl.load(dest_ptr + cols, mask=ok, other=0)
    tl.store(sparse_scale_ptr + dest, scale, mask=ok & (dest >= 0))
    tl.store(dense_scale_ptr + (-1 - dest), scale, mask=ok & (dest < 0))


@triton.jit
def _gather_rows_kernel(sparse_ptr, dense_ptr, dest_ptr, out_ptr, F, N, stride_out,
                        TRANSPOSE: tl.constexpr, BF: tl.constexpr, BN: tl.constexpr):
    # out[f] (or out[:, f]) = row dest[f] of the sparse part, or row -1 - dest[f] of the dense part. Loads run
    # along rows of the parts, stores along rows of out (in the transposed case, along features): both are
    # contiguous where Triton can see it, so it stages the transposed tile on chip.
    feats = tl.program_id(0) * BF + tl.arange(0, BF)
    cols = tl.program_id(1) * BN + tl.arange(0, BN)
    dest = tl.load(dest_ptr + feats, mask=feats < F, other=0)
    is_sparse = dest >= 0
    src = tl.where(is_sparse, dest, -1 - dest).to(tl.int64)
    if TRANSPOSE:  # tiles (columns, features)
        ok = (cols[:, None] < N) & (feats[None, :] < F)
        offs = src[None, :] * N + cols[:, None]
        v = tl.where(is_sparse[None, :], tl.load(sparse_ptr + offs, mask=ok & is_sparse[None, :], other=0.0),
                     tl.load(dense_ptr + offs, mask=ok & ~is_sparse[None, :], other=0.0))
        tl.store(out_ptr + cols[:, None].to(tl.int64) * stride_out + feats[None, :], v, mask=ok)
    else:  # tiles (features, columns)
        ok = (feats[:, None] < F) & (cols[None, :] < N)
        offs = src[:, None] * N + cols[None, :]
        v = tl.where(is_sparse[:, None], tl.load(sparse_ptr + offs, mask=ok & is_sparse[:, None], other=0.0),
                     tl.load(dense_ptr + offs, mask=ok & ~is_sparse[:, None], other=0.0))
        tl.store(out_ptr + feats[:, None].to(tl.int64) * stride_out + cols[None, :], v, mask=ok)


def column_stats(a: torch.Tensor, count_nonzero: bool = False,
                 cfg: LaunchConfig = COLUMNS_CONFIG) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Per column of a (R x C): max |a| (float32, as a.abs().amax(0)) and, if asked, the number of non-zeros
    (int32, as (a != 0).sum(0)), in one read of a."""
    r, c = a.shape
    a = a if a.stride(1) == 1 else a.contiguous()
    amax_bits, count = torch.zeros(2, c, dtype=torch.int32, device=a.device)  # one memset for both
    chunk = min(COLUMN_CHUNK, max(cfg.block_m, triton.next_power_of_2(r)))
    _column_stats_kernel[(triton.cdiv(c, cfg.block_k), triton.cdiv(r, chunk))](
        a, amax_bits, count, r, c, a.stride(0), COUNT=count_nonzero, BR=min(cfg.block_m, chunk),
        BC=cfg.block_k, CHUNK=chunk, num_warps=cfg.num_warps)
    return amax_bits.view(torch.float32), count if count_nonzero else None


def kept_column_stats(a: Kept24, b: Kept24 | None = None, cfg: LaunchConfig | None = None
                      ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """`column_stats` of the dense forms of a (max |.| and non-zero counts) and of b (max |.|, if given), which
    share a's codes, in one read of the kept forms: (a's maxima, a's counts, b's maxima or None)."""
    cfg = cfg or KEPT_COLUMNS_CONFIG
    r, c = a.shape
    if b is not None and (b.shape != a.shape or b.codes is not a.codes):
        raise ValueError("kept_column_stats: b must share a's shape and codes")
    stats = torch.zeros(3, c, dtype=torch.int32, device=a.values.device)  # one memset
    chunk = min(COLUMN_CHUNK, max(cfg.block_m, triton.next_power_of_2(r)))
    g = c // 4
    _kept_stats_kernel[(triton.cdiv(g, cfg.block_k // 4), triton.cdiv(r, chunk))](
        a.values, (a if b is None else b).values, a.codes, stats[0], stats[1], stats[2], r, g, HAS_B=b is not None,
        BR=min(cfg.block_m, chunk), BG=cfg.block_k // 4, CHUNK=chunk, num_warps=cfg.num_warps)
    return stats[0].view(torch.float32), stats[1], stats[2].view(torch.float32) if b is not None else None


def gather_rows(sparse: torch.Tensor, dense: torch.Tensor, dest: torch.Tensor, transpose: bool = False,
                cfg: LaunchConfig = GATHER_CONFIG) -> torch.Tensor:
    """The (F x N) result whose row f is sparse[dest[f]] (dest[f] >= 0) or dense[-1 - dest[f]] (see
    `feature_destinations`), or its (N x F) transpose, in one pass: the split GEMMs' rows back in feature order."""
    f, n = len(dest), sparse.shape[1]
    sparse = sparse.contiguous()
    dense = dense.contiguous() if dense.numel() else sparse
    out = torch.empty((n, f) if transpose else (f, n), dtype=sparse.dtype, device=sparse.device)
    _gather_rows_kernel[(triton.cdiv(f, cfg.block_m), triton.cdiv(n, cfg.block_k))](
        sparse, dense, dest, out, f, n, out.stride(0), TRANSPOSE=transpose, BF=cfg.block_m, BN=cfg.block_k,
        num_warps=cfg.num_warps)
    return out
