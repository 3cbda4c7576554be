"""Fused sparsify kernels (Triton): one pass from the FFN's activations to what the sparse GEMM consumes.

`sparsify24_rows` (forward, and dY1 in the backward), per row of a (T x F) input:
    values = relu(Y1)²            (forward)   or   dY2 ⊙ 2 relu(Y1)   (backward, "sparsify y1 in BW")
    2:4 selection along features  (by |values|; in the backward by relu(Y1)², the forward's mask)
    row-wise FP8 scale + quantize (or bf16, unquantized)
    packed values + metadata      (CUTLASS sm90 layout, `kernels.sm90_layout`)
and, when asked, the masked values and masked relu(Y1)² as dense bf16 (the backward's other operands).
Without selection it is a row-wise FP8 quantization (of relu(Y1)²: the dense FFN's fused step).

`sparsify24_tokens` (backward BW2 / BW4): the transpose of a (T x F) forward-masked operand, tokens permuted,
2:4 along tokens on the sparse features and quantized dense rows for the dense features of the 95/5 split,
in one pass.

Each row's FP8 scale needs the row's maximum before any value is written: the row kernel reads its rows
twice, the second time mostly from L2 (a program owns a few rows). Values and metadata follow the reference
quantization (`backends.quantize_rowwise_fp8`) and CUTLASS's compressor bit for bit: ties keep the lower
index, groups whose kept values quantize to zero get the compressor's indices.

Run on the CPU under `TRITON_INTERPRET=1` (slow; the tests use small shapes).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from .backends import fp8_scale
from .sm90_layout import ATOM_M, atom_k

FP8_MAX = tl.constexpr(448.0)  # largest finite float8 e4m3 (a constexpr: kernels read it)
FORWARD, BACKWARD, PLAIN = 0, 1, 2  # how values and selection scores come from the inputs


@dataclass
class Packed24:
    """A 2:4 operand in the sm90 GEMM's format: values (M x K/2), metadata bytes, row scales (M x 1, FP8)."""

    values: torch.Tensor
    meta: torch.Tensor
    scale: torch.Tensor | None


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int = 4
    block_k: int = 512
    num_warps: int = 4


ROWS_CONFIG = LaunchConfig()
TOKENS_CONFIG = LaunchConfig(block_m=32, block_k=128, num_warps=4)  # block_m: features, block_k: tokens


@triton.jit
def _split4(x, BM: tl.constexpr, G: tl.constexpr):
    """(BM, 4G) -> the four (BM, G) columns of every group of 4."""
    lo, hi = tl.split(tl.reshape(x, (BM, G, 2, 2)))  # lo: elements 0, 2; hi: 1, 3
    x0, x2 = tl.split(lo)
    x1, x3 = tl.split(hi)
    return x0, x1, x2, x3


@triton.jit
def _join4(x0, x1, x2, x3, BM: tl.constexpr, BK: tl.constexpr):
    return tl.reshape(tl.join(tl.join(x0, x2), tl.join(x1, x3)), (BM, BK))


@triton.jit
def _select24(s0, s1, s2, s3):
    """Keep flags of the 2 largest scores of each group (ties: the lower index wins), as in `mask24`."""
    c01 = (s1 > s0).to(tl.int32)
    c02 = (s2 > s0).to(tl.int32)
    c03 = (s3 > s0).to(tl.int32)
    c12 = (s2 > s1).to(tl.int32)
    c13 = (s3 > s1).to(tl.int32)
    c23 = (s3 > s2).to(tl.int32)
    k0 = (c01 + c02 + c03) < 2
    k1 = (1 - c01 + c12 + c13) < 2
    k2 = (2 - c02 - c12 + c23) < 2
    k3 = (3 - c03 - c13 - c23) < 2
    return k0, k1, k2, k3


@triton.jit
def _kept(k0, k1, k2, k3, x0, x1, x2, x3):
    """The first and second kept index of each group and their values."""
    i0 = tl.where(k0, 0, tl.where(k1, 1, 2))
    i1 = tl.where(k3, 3, tl.where(k2, 2, 1))
    v0 = tl.where(k0, x0, tl.where(k1, x1, x2))
    v1 = tl.where(k3, x3, tl.where(k2, x2, x1))
    return i0, i1, v0, v1


@triton.jit
def _round_bf16(x):
    """x (fp32) rounded to the nearest bf16, ties to even, kept in fp32: what torch's bf16 ops produce. Done
    on the bits so that Triton's interpreter (which truncates in casts) agrees with the GPU."""
    bits = x.to(tl.uint32, bitcast=True)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
    return bits.to(tl.float32, bitcast=True)


@triton.jit
def _round_e4m3(x):
    """x (fp32, |x| <= 448) rounded to the nearest float8 e4m3 value, ties to even, kept in fp32; the cast
    that follows is then exact on the GPU and in the interpreter alike."""
    bits = x.to(tl.uint32, bitcast=True)
    normal = ((bits + 0x7FFFF + ((bits >> 20) & 1)) & 0xFFF00000).to(tl.float32, bitcast=True)  # 3 mantissa bits
    subnormal = (x + 24576.0) - 24576.0  # multiples of 2^-9, by fp32 addition (round to nearest even)
    subnormal = tl.where(subnormal == 0.0, x * 0.0, subnormal)  # keep the sign of zero (-0.0 as torch)
    return tl.where(tl.abs(x) < 0.015625, subnormal, normal)


@triton.jit
def _encode_fp8(x, inv_scale):
    """FP8 bits of x * (1 / scale) (as `quantize_rowwise_fp8`) and whether each is non-zero (sign bit ignored)."""
    q = _round_e4m3(tl.clamp(x * inv_scale, -FP8_MAX, FP8_MAX)).to(tl.float8e4nv)
    bits = q.to(tl.uint8, bitcast=True)
    return bits, (bits & 0x7F) != 0


@triton.jit
def _encode_bf16(x):
    bits = (_round_bf16(x).to(tl.uint32, bitcast=True) >> 16).to(tl.int16)
    return bits, (bits & 0x7FFF) != 0


@triton.jit
def _compressor_order(i0, i1, b0, b1, nz0, nz1):
    """Indices and values of a group as CUTLASS's sm90 compressor writes them (see sm90_layout)."""
    both = nz0 & nz1
    only0 = nz0 & (~nz1)
    only1 = nz1 & (~nz0)
    move1 = only1 & (i1 < 3)  # [.. x ..] -> (x at first slot, index 3 with a zero)
    zero = b0 * 0
    j0 = tl.where(both | only0, i0, tl.where(move1, i1, 0))
    j1 = tl.where(both, i1, tl.where(only0 | only1, 3, 0))
    w0 = tl.where(both | only0, b0, tl.where(move1, b1, zero))
    w1 = tl.where(both | (only1 & (i1 == 3)), b1, zero)
    return j0, j1, w0, w1


@triton.jit
def _meta_offset(rows, cols, M, META16: tl.constexpr):
    """Byte offsets of the metadata bytes of (rows, cols); see sm90_layout.meta_byte_offset."""
    if META16:
        kb = cols // 64
        kk = cols % 64
        mb = rows // 64
        mm = rows % 64
        logical = ((kk % 16) + 16 * ((mm // 8) % 2) + 32 * (kk // 32) + 64 * (mm % 8) + 512 * ((kk // 16) % 2)
                   + 1024 * (mm // 16) + mb * 4096 + kb * M * 64)
    else:
        logical = (cols // 128) * M * 128 + rows * 128 + cols % 128
    return logical // 8


@triton.jit
def _pack_and_store(vals_ptr, meta_ptr, rows, cols0, M, K, ok, i0, i1, v0, v1, inv_scale,
                    BM: tl.constexpr, G: tl.constexpr, FP8: tl.constexpr, META16: tl.constexpr):
    """Encode the kept values (FP8 with the rows' scales, or bf16), order them as the compressor does, and store
    packed values (rows x 2G at column cols0/2) and the metadata of the 4G columns from cols0."""
    if FP8:
        b0, nz0 = _encode_fp8(v0, inv_scale[:, None])
        b1, nz1 = _encode_fp8(v1, inv_scale[:, None])
        ptr = vals_ptr.to(tl.pointer_type(tl.uint8))
    else:
        b0, nz0 = _encode_bf16(v0)
        b1, nz1 = _encode_bf16(v1)
        ptr = vals_ptr.to(tl.pointer_type(tl.int16))
    j0, j1, w0, w1 = _compressor_order(i0, i1, b0, b1, nz0, nz1)
    vals = tl.reshape(tl.join(w0, w1), (BM, 2 * G))
    vcols = cols0 // 2 + tl.arange(0, 2 * G)
    tl.store(ptr + rows[:, None].to(tl.int64) * (K // 2) + vcols[None, :], vals, mask=ok[:, None])
    nib = j0 | (j1 << 2)
    lo, hi = tl.split(tl.reshape(nib, (BM, G // 2, 2)))
    byte = (lo | (hi << 4)).to(tl.uint8)
    mcols = cols0 + 8 * tl.arange(0, G // 2)
    off = _meta_offset(rows[:, None].to(tl.int64), mcols[None, :], M, META16)
    tl.store(meta_ptr + off, byte, mask=ok[:, None])


@triton.jit
def _store_dense(ptr, offsets, x, inv_scale, mask, FP8: tl.constexpr):
    """Store x dense: FP8 with the rows' scales, or bf16."""
    if FP8:
        bits, _ = _encode_fp8(x, inv_scale[:, None])
        tl.store(ptr.to(tl.pointer_type(tl.uint8)) + offsets, bits, mask=mask)
    else:
        bits, _ = _encode_bf16(x)
        tl.store(ptr.to(tl.pointer_type(tl.int16)) + offsets, bits, mask=mask)


@triton.jit
def _row_tile(y_ptr, g_ptr, rows, k0, stride_y, stride_g, MODE: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr):
    """Values and selection scores (fp32, exactly as the bf16 reference rounds them) of one tile."""
    cols = k0 + tl.arange(0, BK)
    y = tl.load(y_ptr + rows[:, None].to(tl.int64) * stride_y + cols[None, :]).to(tl.float32)
    if MODE == 2:  # PLAIN
        return y, tl.abs(y)
    r = tl.maximum(y, 0.0)
    y2 = _round_bf16(r * r)
    if MODE == 0:  # FORWARD
        return y2, y2
    g = tl.load(g_ptr + rows[:, None].to(tl.int64) * stride_g + cols[None, :]).to(tl.float32)
    return _round_bf16(g * (2.0 * r)), y2  # BACKWARD


@triton.jit
def _rows_kernel(y_ptr, g_ptr, vals_ptr, meta_ptr, scale_ptr, dense_ptr, y2_ptr,
                 M, K: tl.constexpr, stride_y, stride_g,
                 MODE: tl.constexpr, FP8: tl.constexpr, SELECT: tl.constexpr, META16: tl.constexpr,
                 WRITE_DENSE: tl.constexpr, WRITE_Y2: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr):
    G: tl.constexpr = BK // 4
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    ok = rows < M
    inv = tl.full((BM,), 1.0, tl.float32)
    if FP8:  # pass 1: the row maximum of what will be kept
        amax = tl.zeros((BM,), tl.float32)
        for k0 in range(0, K, BK):
            if MODE == 0:  # FORWARD: max relu(y)² = relu(max y)², and the largest of a group is always kept
                cols = k0 + tl.arange(0, BK)
                y = tl.load(y_ptr + rows[:, None].to(tl.int64) * stride_y + cols[None, :]).to(tl.float32)
                amax = tl.maximum(amax, tl.max(y, axis=1))
            else:
                x, s = _row_tile(y_ptr, g_ptr, rows, k0, stride_y, stride_g, MODE, BM, BK)
                if SELECT:
                    x0, x1, x2, x3 = _split4(x, BM, G)
                    s0, s1, s2, s3 = _split4(s, BM, G)
                    k_0, k_1, k_2, k_3 = _select24(s0, s1, s2, s3)
                    i0, i1, v0, v1 = _kept(k_0, k_1, k_2, k_3, x0, x1, x2, x3)
                    amax = tl.maximum(amax, tl.max(tl.maximum(tl.abs(v0), tl.abs(v1)), axis=1))
                else:
                    amax = tl.maximum(amax, tl.max(tl.abs(x), axis=1))
        if MODE == 0:
            r = tl.maximum(amax, 0.0)
            amax = _round_bf16(r * r)
        scale = tl.math.div_rn(tl.maximum(amax, 1e-12), FP8_MAX)
        inv = tl.math.div_rn(tl.full((BM,), 1.0, tl.float32), scale)
        tl.store(scale_ptr + rows, scale, mask=ok)
    for k0 in range(0, K, BK):
        x, s = _row_tile(y_ptr, g_ptr, rows, k0, stride_y, stride_g, MODE, BM, BK)
        cols = k0 + tl.arange(0, BK)
        doff = rows[:, None].to(tl.int64) * K + cols[None, :]
        if SELECT:
            x0, x1, x2, x3 = _split4(x, BM, G)
            s0, s1, s2, s3 = _split4(s, BM, G)
            k_0, k_1, k_2, k_3 = _select24(s0, s1, s2, s3)
            i0, i1, v0, v1 = _kept(k_0, k_1, k_2, k_3, x0, x1, x2, x3)
            _pack_and_store(vals_ptr, meta_ptr, rows, k0, M, K, ok, i0, i1, v0, v1, inv, BM, G, FP8, META16)
            if WRITE_DENSE:
                zero = x0 * 0.0
                masked = _join4(tl.where(k_0, x0, zero), tl.where(k_1, x1, zero), tl.where(k_2, x2, zero),
                                tl.where(k_3, x3, zero), BM, BK)
                tl.store(dense_ptr + doff, masked.to(tl.bfloat16), mask=ok[:, None])
            if WRITE_Y2:
                zero = s0 * 0.0
                masked = _join4(tl.where(k_0, s0, zero), tl.where(k_1, s1, zero), tl.where(k_2, s2, zero),
                                tl.where(k_3, s3, zero), BM, BK)
                tl.store(y2_ptr + doff, masked.to(tl.bfloat16), mask=ok[:, None])
        else:
            _store_dense(dense_ptr, doff, x, inv, ok[:, None], FP8)


@triton.jit
def _tokens_kernel(a_ptr, perm_ptr, dest_ptr, inv_scale_ptr, vals_ptr, meta_ptr, dense_ptr,
                   T, F, M_SPARSE, stride_a,
                   FP8: tl.constexpr, META16: tl.constexpr, BF: tl.constexpr, BT: tl.constexpr):
    G: tl.constexpr = BT // 4
    feats = tl.program_id(0) * BF + tl.arange(0, BF)
    t0 = tl.program_id(1) * BT
    src = tl.load(perm_ptr + t0 + tl.arange(0, BT)).to(tl.int64)
    x = tl.trans(tl.load(a_ptr + src[:, None] * stride_a + feats[None, :]).to(tl.float32))  # (BF, BT)
    dest = tl.load(dest_ptr + feats)
    inv = tl.full((BF,), 1.0, tl.float32)
    if FP8:
        inv = tl.load(inv_scale_ptr + feats)
    is_sparse = dest >= 0
    x0, x1, x2, x3 = _split4(x, BF, G)
    k_0, k_1, k_2, k_3 = _select24(tl.abs(x0), tl.abs(x1), tl.abs(x2), tl.abs(x3))
    i0, i1, v0, v1 = _kept(k_0, k_1, k_2, k_3, x0, x1, x2, x3)
    rows = tl.where(is_sparse, dest, 0)
    _pack_and_store(vals_ptr, meta_ptr, rows, t0, M_SPARSE, T, is_sparse, i0, i1, v0, v1, inv, BF, G, FP8, META16)
    if tl.sum((~is_sparse).to(tl.int32)) > 0:  # most blocks hold sparse features only
        drows = tl.where(is_sparse, 0, -dest - 1).to(tl.int64)
        dcols = t0 + tl.arange(0, BT)
        _store_dense(dense_ptr, drows[:, None] * T + dcols[None, :], x, inv, (~is_sparse)[:, None], FP8)


def fit_block_k(cfg: LaunchConfig, k: int) -> LaunchConfig:
    """`cfg` with the largest block_k (at most cfg.block_k, at least 128) that divides K."""
    block_k = cfg.block_k
    while k % block_k and block_k > 128:
        block_k //= 2
    return dataclasses.replace(cfg, block_k=block_k)


def _check(x: torch.Tensor, name: str, m: int, k: int, fp8: bool, cfg: LaunchConfig) -> None:
    bits = 8 if fp8 else 16
    if m % ATOM_M or k % atom_k(bits):
        raise ValueError(f"{name}: the sparse operand must have rows a multiple of {ATOM_M} and a reduction "
                         f"dimension a multiple of {atom_k(bits)} ({'FP8' if fp8 else 'bf16'}), got {m} x {k}")
    if x.dtype != torch.bfloat16:
        raise ValueError(f"{name}: expected bf16 input, got {x.dtype}")


def sparsify24_rows(y: torch.Tensor, grad: torch.Tensor | None = None, *, fp8: bool = True,
                    mode: int | None = None, write_dense: bool = False, write_y2: bool = False,
                    cfg: LaunchConfig = ROWS_CONFIG):
    """2:4 along the columns of `y` (M x K, bf16) in one fused kernel; see the module docstring.

    mode: FORWARD (values relu(y)², the default without `grad`), BACKWARD (values grad ⊙ 2 relu(y), selection
    by relu(y)², the default with `grad`) or PLAIN (values y, selection by |y|). Returns (Packed24, dense
    masked values or None, dense masked relu(y)² or None)."""
    m, k = y.shape
    mode = (BACKWARD if grad is not None else FORWARD) if mode is None else mode
    _check(y, "sparsify24_rows", m, k, fp8, cfg)
    if mode == BACKWARD and (grad is None or grad.shape != y.shape or grad.dtype != torch.bfloat16):
        raise ValueError("sparsify24_rows: the backward mode needs a bf16 `grad` shaped like `y`")
    cfg = fit_block_k(cfg, k)
    y = y.contiguous()
    grad = grad.contiguous() if grad is not None else y
    vals = torch.empty(m, k // 2, dtype=torch.float8_e4m3fn if fp8 else torch.bfloat16, device=y.device)
    meta = torch.empty(m * k // 8, dtype=torch.uint8, device=y.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=y.device) if fp8 else None
    dense = torch.empty_like(y) if write_dense else None
    y2 = torch.empty_like(y) if write_y2 else None
    _rows_kernel[(m // cfg.block_m,)](
        y, grad, vals, meta, scale if fp8 else vals, dense if write_dense else vals, y2 if write_y2 else vals,
        m, k, y.stride(0), grad.stride(0), MODE=mode, FP8=fp8, SELECT=True, META16=not fp8,
        WRITE_DENSE=write_dense, WRITE_Y2=write_y2, BM=cfg.block_m, BK=cfg.block_k, num_warps=cfg.num_warps)
    return Packed24(vals, meta, scale), dense, y2


def quantize_rows(y: torch.Tensor, mode: int = PLAIN, cfg: LaunchConfig = ROWS_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise FP8 of y (PLAIN) or of relu(y)² (FORWARD: the dense FFN's fused step), no 2:4: (values, scales
    (M x 1)), bit for bit as `backends.quantize_rowwise_fp8`. y: bf16, K a multiple of 128, M of 4."""
    m, k = y.shape
    cfg = fit_block_k(cfg, k)
    if y.dtype != torch.bfloat16 or k % cfg.block_k or m % cfg.block_m:
        raise ValueError(f"quantize_rows: bf16 input with K % {cfg.block_k} == 0 and M % {cfg.block_m} == 0, got "
                         f"{tuple(y.shape)} {y.dtype}")
    y = y.contiguous()
    out = torch.empty(m, k, dtype=torch.float8_e4m3fn, device=y.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=y.device)
    _rows_kernel[(m // cfg.block_m,)](
        y, y, out, out, scale, out, out, m, k, y.stride(0), y.stride(0), MODE=mode, FP8=True, SELECT=False,
        META16=False, WRITE_DENSE=False, WRITE_Y2=False, BM=cfg.block_m, BK=cfg.block_k, num_warps=cfg.num_warps)
    return out, scale


def quantize_fits(y: torch.Tensor, cfg: LaunchConfig = ROWS_CONFIG) -> bool:
    """Whether `quantize_rows` takes y (else callers use the eager `quantize_rowwise_fp8`: same bits, slower)."""
    return y.dtype == torch.bfloat16 and y.shape[1] % 128 == 0 and y.shape[0] % cfg.block_m == 0


def feature_destinations(n_features: int, sparse_idx: torch.Tensor, dense_idx: torch.Tensor) -> torch.Tensor:
    """For every feature: its row in the sparse output (>= 0) or -(1 + its row in the dense output)."""
    dest = torch.empty(n_features, dtype=torch.int32, device=sparse_idx.device)
    dest[sparse_idx] = torch.arange(len(sparse_idx), dtype=torch.int32, device=sparse_idx.device)
    dest[dense_idx] = -1 - torch.arange(len(dense_idx), dtype=torch.int32, device=sparse_idx.device)
    return dest




def sparsify24_tokens(a: torch.Tensor, perm: torch.Tensor | None, sparse_idx: torch.Tensor,
                      dense_idx: torch.Tensor, *, fp8: bool = True, cfg: LaunchConfig = TOKENS_CONFIG):
    """The BW2 / BW4 operands of `a` (T x F, bf16) in one pass: rows `sparse_idx` of a[perm]ᵀ, 2:4 along tokens,
    packed (Packed24), and rows `dense_idx` of a[perm]ᵀ dense (FP8 with the same row scales, or bf16)."""
    t, f = a.shape
    m_sparse = len(sparse_idx)
    _check(a, "sparsify24_tokens", m_sparse, t, fp8, cfg)
    if f % cfg.block_m or t % cfg.block_k:
        raise ValueError(f"sparsify24_tokens: F={f} must be a multiple of {cfg.block_m} and T={t} of {cfg.block_k}")
    a = a.contiguous()
    perm = (torch.arange(t, device=a.device) if perm is None else perm).to(torch.int32).contiguous()
    dest = feature_destinations(f, sparse_idx, dense_idx)
    dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    vals = torch.empty(m_sparse, t // 2, dtype=dtype, device=a.device)
    meta = torch.empty(m_sparse * t // 8, dtype=torch.uint8, device=a.device)
    dense = torch.empty(len(dense_idx), t, dtype=dtype, device=a.device)
    # Row-wise scales of aᵀ (one per column of a), as quantize_rowwise_fp8(aᵀ) computes them.
    scale, inv = fp8_scale(a.abs().amax(dim=0)) if fp8 else (None, dest)
    _tokens_kernel[(f // cfg.block_m, t // cfg.block_k)](
        a, perm, dest, inv, vals, meta, dense, t, f, m_sparse, a.stride(0),
        FP8=fp8, META16=not fp8, BF=cfg.block_m, BT=cfg.block_k, num_warps=cfg.num_warps)
    sparse_scale = scale[sparse_idx.long()].unsqueeze(1) if fp8 else None
    dense_scale = scale[dense_idx.long()].unsqueeze(1) if fp8 else None
    return Packed24(vals, meta, sparse_scale), dense, dense_scale
