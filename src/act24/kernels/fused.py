"""Fused sparsify kernels (Triton): one pass from the FFN's activations to what the sparse GEMM consumes.

`sparsify24_rows` (forward, and dY1 in the backward), per row of a (T x F) input:
    values = relu(Y1)²            (forward)   or   dY2 ⊙ 2 relu(Y1)   (backward, "sparsify y1 in BW")
    2:4 selection along features  (by |values|; in the backward by relu(Y1)², the forward's mask)
    row-wise FP8 scale + quantize (or bf16, unquantized)
    packed values + metadata      (CUTLASS sm90 layout, `kernels.sm90_layout`)
and, when asked, the masked values and masked relu(Y1)² in the kept form (`Kept24`: the two kept values per
group and a 4-bit code, half the bytes of dense bf16; the backward's other operands).
Without selection it is a row-wise FP8 quantization: of relu(Y1)² (the dense FFN's forward step), or of
dY2 ⊙ 2 relu(Y1) with dY1 and relu(Y1)² also written in bf16 (`dense_backward_rows`, the dense FFN's backward step).

`sparsify24_tokens` (backward BW2 / BW4): the transpose of a (T x F) forward-masked operand (dense or kept),
tokens permuted, 2:4 along tokens on the sparse features and quantized dense rows for the dense features of the
95/5 split, in one pass. Its FP8 scales (one per feature) come from `column_stats` (`kept_column_stats`), which
also counts the non-zeros that decide the split, in one read; `split_destinations` turns the counts into the
split without sorting. `gather_rows` puts the split GEMMs' output rows back in feature order.

Each row's FP8 scale needs the row's maximum before any value is written. A program owns one row: it reads
the whole row for the maximum, then writes block by block, reading the row again mostly from L2; the
quantization without 2:4 holds the row on chip and reads it once (see `LaunchConfig`). Values and metadata
follow the reference quantization (`backends.quantize_rowwise_fp8`) and CUTLASS's compressor bit for bit: ties
keep the lower index, groups whose kept values quantize to zero get the compressor's indices.

Run on the CPU under `TRITON_INTERPRET=1` (slow; the tests use small shapes).
"""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from . import backends
from .sm90_layout import ATOM_M, atom_k

FP8_MAX = tl.constexpr(backends.FP8_MAX)  # a constexpr: kernels can read it
INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"  # Triton reads it when a kernel is defined
FORWARD, BACKWARD, PLAIN = 0, 1, 2  # how values and selection scores come from the inputs


@dataclass
class Packed24:
    """A 2:4 operand in the sm90 GEMM's format: values (M x K/2), metadata bytes, row scales (M x 1, FP8)."""

    values: torch.Tensor
    meta: torch.Tensor
    scale: torch.Tensor | None


@dataclass
class Kept24:
    """A 2:4-masked (M x K) bf16 tensor in the kept form: its two kept values per group of four, in column order
    (M x K/2, bf16), and one code byte per pair of groups (M x K/8, uint8; the even group in bits 0-3), which
    says where the kept values sit (`_unkeep`). Half the bytes of the dense tensor; the backward's dY1 and Ỹ2
    share their codes."""

    values: torch.Tensor
    codes: torch.Tensor

    @property
    def shape(self) -> tuple[int, int]:
        return self.values.shape[0], 2 * self.values.shape[1]

    def dense(self) -> torch.Tensor:
        """The dense (M x K) tensor (torch ops; for tests and checks)."""
        m, k = self.shape
        codes = self.codes.to(torch.int32)
        code = torch.stack((codes & 15, codes >> 4), -1).reshape(m, k // 4)
        lo, hi = code & 3, code >> 2
        kept = self.values.reshape(m, k // 4, 2)
        k0, k1 = kept[..., 0], kept[..., 1]
        zero = torch.zeros_like(k0)
        return torch.stack((torch.where(lo <= 1, k0, zero), torch.where(lo == 0, k1, torch.where(lo == 2, k0, zero)),
                            torch.where(hi == 1, k1, torch.where(hi == 3, k0, zero)), torch.where(hi >= 2, k1, zero)),
                           -1).reshape(m, k)


@dataclass(frozen=True)
class LaunchConfig:
    block_m: int = 4
    block_k: int = 512
    num_warps: int = 4
    # FP8 row kernel only (the row maximum is needed before anything is written), rows of at most ON_CHIP_MAX_K
    # columns: read once and held on chip by this many warps (0: no), or read whole for the maximum, then
    # looped over for the writes (whole_row_max); else looped over twice.
    on_chip_warps: int = 0
    whole_row_max: bool = False
    # whole_row_max only: the writes walk the row's power-of-2 part in block_k blocks, then the tail in one block
    # (else they loop over the row in `fit_block_k` blocks). Faster for the backward, slower for the forward.
    tail_block: bool = False


ON_CHIP_MAX_K = 20480  # 40 KB of bf16 per row and input (two inputs in the backward)

# Picked on an H200 at T = 16384, F = 16512 (workflow/scripts/tune_fused.py; reference/h200/fused/tuning/).
ROWS_CONFIG = LaunchConfig(block_m=1, block_k=4096, num_warps=4, whole_row_max=True)  # 2:4, forward (and plain)
# The backward: reference/h200/fused/earlier/rows_pair_vs_5d67ef9.txt (620 -> 596 us).
BACKWARD_ROWS_CONFIG = LaunchConfig(block_m=1, block_k=2048, num_warps=8, whole_row_max=True, tail_block=True)
QUANTIZE_CONFIG = LaunchConfig(block_m=1, block_k=4096, num_warps=4, on_chip_warps=4)  # FP8 without 2:4
TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=64, num_warps=2)  # block_m: features, block_k: tokens
TRANSPOSE_CONFIG = LaunchConfig(block_m=64, block_k=128, num_warps=4)  # the token-wise kernel, all dense
COLUMNS_CONFIG = LaunchConfig(block_m=32, block_k=64, num_warps=4)  # block_m: rows per step, block_k: columns
# The kept-form kernels: reference/h200/fused/earlier/kept_form_4ef01be.txt.
KEPT_TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=64, num_warps=2)  # the token-wise kernel from `Kept24`
KEPT_COLUMNS_CONFIG = LaunchConfig(block_m=16, block_k=128, num_warps=4)  # block_k: features (a multiple of 8)
COLUMN_CHUNK = 1024  # rows per program of the column statistics (then one atomic per column and program)
GATHER_CONFIG = LaunchConfig(block_m=64, block_k=128, num_warps=4)  # block_m: features, block_k: columns
if INTERPRETED:  # the interpreter's cost is per program: fewer, larger ones
    ROWS_CONFIG = BACKWARD_ROWS_CONFIG = LaunchConfig(block_m=64, block_k=512, whole_row_max=True)
    QUANTIZE_CONFIG = LaunchConfig(block_m=64, block_k=512, on_chip_warps=4)
    TOKENS_CONFIG = TRANSPOSE_CONFIG = KEPT_TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=128)
    COLUMNS_CONFIG = KEPT_COLUMNS_CONFIG = LaunchConfig(block_m=128, block_k=128)


# Triton's interpreter truncates in float casts and runs no PTX; compiled kernels round to nearest even in one
# instruction. Under the interpreter the kernels round on the bits instead: both give the GPU's (and torch's) bits.
EMULATE_ROUNDING = tl.constexpr(INTERPRETED)


@triton.jit
def _round_bf16(x):
    """x (fp32) rounded to the nearest bf16, ties to even, kept in fp32: what torch's bf16 ops produce."""
    if EMULATE_ROUNDING:
        bits = x.to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True)
    return x.to(tl.bfloat16).to(tl.float32)


@triton.jit
def _e4m3_bits(x):
    """The float8 e4m3 bits (uint32, low 8 bits) of x (fp32, |x| <= 448), rounded to nearest even, -0.0 kept,
    computed on the bits: the interpreter's version of the GPU's conversion instruction. (Triton's own
    fp32 -> fp8 casts misplaced values when many were packed together on sm90: seen on an H200, Triton 3.6.)"""
    bits = x.to(tl.uint32, bitcast=True)
    sign = (bits >> 24) & 0x80
    mag = bits & 0x7FFFFFFF
    r = mag + 0x7FFFF + ((mag >> 20) & 1)  # round the mantissa to 3 bits (a carry moves into the exponent)
    normal = ((((r >> 23) & 0xFF) - 120) << 3) | ((r >> 20) & 7)  # exponent bias 127 -> 7
    a = tl.abs(x) * 512.0  # subnormals: multiples of 2^-9; 8 * 2^-9 = 2^-6 encodes as 0x08, the first normal
    sub = ((a + 12582912.0) - 12582912.0).to(tl.uint32)  # round half to even by fp32 addition
    return sign | tl.where(tl.abs(x) < 0.015625, sub, normal)


@triton.jit
def _fp8x2(a, b, inv_scale):
    """The FP8 (e4m3) bits of a * inv_scale (bits 0-7) and b * inv_scale (bits 8-15) in one uint32, clamped to
    ±448 and rounded to nearest even, as torch's cast after the clamp of `quantize_rowwise_fp8`. On the GPU one
    instruction converts both (it saturates like the clamp)."""
    if EMULATE_ROUNDING:
        a = tl.clamp(a * inv_scale, -FP8_MAX, FP8_MAX)
        b = tl.clamp(b * inv_scale, -FP8_MAX, FP8_MAX)
        return _e4m3_bits(a) | (_e4m3_bits(b) << 8)
    return tl.inline_asm_elementwise(
        "{ .reg .b16 t; cvt.rn.satfinite.e4m3x2.f32 t, $2, $1; cvt.u32.u16 $0, t; }", "=r,r,r",
        [a * inv_scale, b * inv_scale], dtype=tl.uint32, is_pure=True, pack=1)


# Groups of 4 bf16 travel as two uint32 words (elements 0, 1 and 2, 3; the lower index in the low half), and the
# arithmetic on them runs on both halves at once: one bf16x2 instruction per pair on the GPU, the same bits from
# fp32 math under the interpreter.


@triton.jit
def _lo(w):
    """The bf16 in bits 0-15 of w (uint32), as fp32."""
    return (w << 16).to(tl.float32, bitcast=True)


@triton.jit
def _hi(w):
    """The bf16 in bits 16-31 of w (uint32), as fp32."""
    return (w & 0xFFFF0000).to(tl.float32, bitcast=True)


@triton.jit
def _pack2(lo, hi):
    """Two fp32 holding bf16 values -> their bits in one uint32, lo in bits 0-15."""
    return (lo.to(tl.uint32, bitcast=True) >> 16) | (hi.to(tl.uint32, bitcast=True) & 0xFFFF0000)


@triton.jit
def _relu_sq2(w):
    """relu(.)² of both bf16 of w, rounded to bf16 as torch's bf16 ops round it."""
    if EMULATE_ROUNDING:
        lo = tl.maximum(_lo(w), 0.0)
        hi = tl.maximum(_hi(w), 0.0)
        return _pack2(_round_bf16(lo * lo), _round_bf16(hi * hi))
    return tl.inline_asm_elementwise(
        "{ .reg .b32 z, r; mov.b32 z, 0; max.bf16x2 r, $1, z; mul.rn.bf16x2 $0, r, r; }", "=r,r", [w],
        dtype=tl.uint32, is_pure=True, pack=1)


@triton.jit
def _grad_relu2(g, w):
    """g ⊙ 2 relu(y) for both bf16 of g and w (y), rounded to bf16 (2 relu(y) is exact)."""
    if EMULATE_ROUNDING:
        return _pack2(_round_bf16(_lo(g) * (2.0 * tl.maximum(_lo(w), 0.0))),
                      _round_bf16(_hi(g) * (2.0 * tl.maximum(_hi(w), 0.0))))
    return tl.inline_asm_elementwise(
        "{ .reg .b32 z, r; mov.b32 z, 0; max.bf16x2 r, $2, z; add.rn.bf16x2 r, r, r; mul.rn.bf16x2 $0, $1, r; }",
        "=r,r,r", [g, w], dtype=tl.uint32, is_pure=True, pack=1)


@triton.jit
def _max2(a, b):
    """The larger bf16 of each half of a and b."""
    if EMULATE_ROUNDING:
        return _pack2(tl.maximum(_lo(a), _lo(b)), tl.maximum(_hi(a), _hi(b)))
    return tl.inline_asm_elementwise("max.bf16x2 $0, $1, $2;", "=r,r,r", [a, b], dtype=tl.uint32, is_pure=True,
                                     pack=1)


@triton.jit
def _prmt(a, b, sel):
    """Byte permute (PTX prmt.b32): byte k of the result is byte (nibble k of sel) of the 8 bytes (a, b), a first."""
    if EMULATE_ROUNDING:
        v = a.to(tl.uint64) | (b.to(tl.uint64) << 32)
        out = a * 0
        for k in tl.static_range(4):
            idx = ((sel >> (4 * k)) & 7).to(tl.uint64)
            out |= ((v >> (8 * idx)) & 0xFF).to(tl.uint32) << (8 * k)
        return out
    return tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, $3;", "=r,r,r,r", [a, b, sel], dtype=tl.uint32,
                                     is_pure=True, pack=1)


@triton.jit
def _pick2(v_lo, v_hi, i0, i1):
    """Elements i0 (bits 0-15) and i1 (bits 16-31) of the group (v_lo, v_hi): one byte permute."""
    return _prmt(v_lo, v_hi, (i0 * 0x22 + i1 * 0x2200 + 0x1010).to(tl.uint32))


# The kept form (`Kept24`) stores a group's two kept values as one word (`_pick2`) and a 4-bit code: 2 bits for
# what elements 0, 1 hold, 2 for elements 2, 3. The codes index prmt selectors that rebuild each dense word from
# the kept word and zeros (bytes 4-7): elements 0, 1 = (kept 0, kept 1), (kept 0, 0), (0, kept 0), (0, 0);
# elements 2, 3 = (0, 0), (kept 1, 0), (0, kept 1), (kept 0, kept 1).
_KEPT_LO_SELECTORS = tl.constexpr(0x4444104444103210)  # four 16-bit prmt selectors, code 0 lowest
_KEPT_HI_SELECTORS = tl.constexpr(0x3210324444324444)


@triton.jit
def _kept_code(i0, i1):
    """The 4-bit code of a group whose kept indices are i0 < i1."""
    lo = tl.where(i0 == 0, tl.where(i1 == 1, 0, 1), tl.where(i0 == 1, 2, 3))
    hi = tl.where(i1 == 1, 0, tl.where(i1 == 2, 1, tl.where(i0 == 2, 3, 2)))
    return (lo | (hi << 2)).to(tl.uint32)


@triton.jit
def _unkeep(kept, code, HIGH: tl.constexpr):
    """The dense word of elements 0, 1 (or 2, 3 if HIGH) of a group from its kept word and 4-bit code."""
    zero = kept * 0
    if HIGH:
        sel = _prmt(zero + (_KEPT_HI_SELECTORS & 0xFFFFFFFF), zero + (_KEPT_HI_SELECTORS >> 32),
                    ((code >> 2) & 3) * 0x22 + 0x10)
    else:
        sel = _prmt(zero + (_KEPT_LO_SELECTORS & 0xFFFFFFFF), zero + (_KEPT_LO_SELECTORS >> 32),
                    (code & 3) * 0x22 + 0x10)
    return _prmt(kept, zero, sel)


@triton.jit
def _interleave16(a, b, HIGH: tl.constexpr):
    """(low half of a, low half of b), or the high halves if HIGH: two words of two features of one token ->
    one feature's word of the two tokens."""
    if EMULATE_ROUNDING:
        if HIGH:
            return (a >> 16) | (b & 0xFFFF0000)
        return (a & 0xFFFF) | (b << 16)
    if HIGH:
        return tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, 0x7632;", "=r,r,r", [a, b], dtype=tl.uint32,
                                         is_pure=True, pack=1)
    return tl.inline_asm_elementwise("prmt.b32 $0, $1, $2, 0x5410;", "=r,r,r", [a, b], dtype=tl.uint32,
                                     is_pure=True, pack=1)


@triton.jit
def _select24(s_lo, s_hi):
    """2:4 selection of a group by its scores (non-negative bf16, so their bits order as their values): keys
    score << 16 | (3 - index) order the elements with ties to the lower index, as `mask24`. Returns the two kept
    indices, ascending."""
    k0 = (s_lo << 16) | 3
    k1 = (s_lo & 0xFFFF0000) | 2
    k2 = (s_hi << 16) | 1
    k3 = s_hi & 0xFFFF0000
    a = tl.maximum(k0, k1)
    b = tl.minimum(k0, k1)
    c = tl.maximum(k2, k3)
    d = tl.minimum(k2, k3)
    first = tl.maximum(a, c)
    second = tl.maximum(tl.minimum(a, c), tl.maximum(b, d))
    i0 = 3 - tl.maximum(first & 3, second & 3)
    i1 = 3 - tl.minimum(first & 3, second & 3)
    return i0, i1


@triton.jit
def _compress_pair(pair, i0, i1, inv_scale, FP8: tl.constexpr):
    """A group's kept values (`_pick2`) encoded as CUTLASS's sm90 compressor writes them: (metadata nibble, the
    two values' bits in one word: FP8 of x * inv_scale, 8 bits each, or bf16, 16 bits each)."""
    if FP8:
        bits = _fp8x2(_lo(pair), _hi(pair), inv_scale)
        b0 = bits & 0xFF
        b1 = bits >> 8
        nz0 = (bits & 0x7F) != 0  # sign ignored, as the compressor
        nz1 = (bits & 0x7F00) != 0
    else:
        b0 = pair & 0xFFFF
        b1 = pair >> 16
        nz0 = (pair & 0x7FFF) != 0
        nz1 = (pair & 0x7FFF0000) != 0
    # The compressor lists non-zeros in order; one non-zero at p < 3 gives (p, 3), one at 3 gives (0, 3) with
    # the value second, none gives (0, 0); the other slot holds a zero.
    both = nz0 & nz1
    only0 = nz0 & (~nz1)
    only1 = nz1 & (~nz0)
    move1 = only1 & (i1 < 3)
    zero = b0 * 0
    j0 = tl.where(both | only0, i0, tl.where(move1, i1, 0))
    j1 = tl.where(both, i1, tl.where(only0 | only1, 3, 0))
    w0 = tl.where(both | only0, b0, tl.where(move1, b1, zero))
    w1 = tl.where(both | (only1 & (i1 == 3)), b1, zero)
    return (j0 | (j1 << 2)).to(tl.uint32), w0 | (w1 << (8 if FP8 else 16))


@triton.jit
def _group_words(uy, ug, MODE: tl.constexpr):
    """A group's values and selection scores as (values lo, values hi, scores lo, scores hi) words, from its
    uint64 words of y and g: values relu(y)² (FORWARD), g ⊙ 2 relu(y) (BACKWARD) or y (PLAIN); scores relu(y)²,
    or |y| (PLAIN)."""
    lo = uy.to(tl.uint32)
    hi = (uy >> 32).to(tl.uint32)
    if MODE == 2:
        return lo, hi, lo & 0x7FFF7FFF, hi & 0x7FFF7FFF
    s_lo = _relu_sq2(lo)
    s_hi = _relu_sq2(hi)
    if MODE == 0:
        return s_lo, s_hi, s_lo, s_hi
    return _grad_relu2(ug.to(tl.uint32), lo), _grad_relu2((ug >> 32).to(tl.uint32), hi), s_lo, s_hi


@triton.jit
def _kept_abs(v_lo, v_hi, s_lo, s_hi):
    """|kept values| of a group (`_pick2` of the selection by the scores): bf16 bits, two in one uint32."""
    i0, i1 = _select24(s_lo, s_hi)
    return _pick2(v_lo, v_hi, i0, i1) & 0x7FFF7FFF


@triton.jit
def _fp8x4(w_lo, w_hi, inv_scale):
    """The FP8 bits of a group's four values (bf16 words) times inv_scale in one uint32, element 0 lowest."""
    return _fp8x2(_lo(w_lo), _hi(w_lo), inv_scale) | (_fp8x2(_lo(w_hi), _hi(w_hi), inv_scale) << 16)


@triton.jit
def _word64(lo, hi):
    return lo.to(tl.uint64) | (hi.to(tl.uint64) << 32)


@triton.jit
def _meta_offset(rows, cols, M, META16: tl.constexpr):
    """Byte offsets of the metadata bytes of (rows, cols); see sm90_layout.meta_byte_offset. In int64: the
    logical offset passes 2^31 from M x K = 2^31 elements on (70B-like FFN, 64k tokens)."""
    cols = cols.to(tl.int64)
    rows = rows.to(tl.int64)
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
def _row_words(y64, g64, yrow, grow, rows, M, k0, K: tl.constexpr, BK: tl.constexpr):
    """Columns k0 .. k0 + BK of rows `rows` as (BM, BK/8) tiles of uint64 words: each element is a pair of
    consecutive groups (8 columns), even group first; y's words, then g's. Masked past M and K."""
    pairs = tl.arange(0, BK // 8)[None, :]
    w = k0 // 4 + 2 * pairs
    ok = (rows[:, None] < M) & (k0 + 8 * pairs < K)
    return (tl.load(y64 + yrow + w, mask=ok, other=0), tl.load(g64 + grow + w, mask=ok, other=0),
            tl.load(y64 + yrow + w + 1, mask=ok, other=0), tl.load(g64 + grow + w + 1, mask=ok, other=0))


@triton.jit
def _words_max(uye, uge, uyo, ugo, MODE: tl.constexpr, SELECT: tl.constexpr):
    """Per row: the maximum of y (FORWARD: the row maximum of relu(y)² is relu(max y)², as the largest of a
    group is always kept), of |y| (PLAIN: the largest |y| of a group is always kept) or of the |values| that
    will be kept (BACKWARD)."""
    if MODE == 1:
        ve_lo, ve_hi, se_lo, se_hi = _group_words(uye, uge, MODE)
        vo_lo, vo_hi, so_lo, so_hi = _group_words(uyo, ugo, MODE)
        if SELECT:
            m = _max2(_kept_abs(ve_lo, ve_hi, se_lo, se_hi), _kept_abs(vo_lo, vo_hi, so_lo, so_hi))
        else:
            m = _max2(_max2(ve_lo & 0x7FFF7FFF, ve_hi & 0x7FFF7FFF), _max2(vo_lo & 0x7FFF7FFF, vo_hi & 0x7FFF7FFF))
    else:
        e_lo, e_hi = uye.to(tl.uint32), (uye >> 32).to(tl.uint32)
        o_lo, o_hi = uyo.to(tl.uint32), (uyo >> 32).to(tl.uint32)
        if MODE != 0:
            e_lo, e_hi, o_lo, o_hi = e_lo & 0x7FFF7FFF, e_hi & 0x7FFF7FFF, o_lo & 0x7FFF7FFF, o_hi & 0x7FFF7FFF
        m = _max2(_max2(e_lo, e_hi), _max2(o_lo, o_hi))
    return tl.max(tl.maximum(_lo(m), _hi(m)), axis=1)


@triton.jit
def _write_words(uye, uge, uyo, ugo, rows, M, k0, K: tl.constexpr, BK: tl.constexpr, inv, orow,
                 vals_ptr, meta_ptr, kept_ptr, kept_s_ptr, codes_ptr, MODE: tl.constexpr, FP8: tl.constexpr,
                 SELECT: tl.constexpr, META16: tl.constexpr, WRITE_KEPT: tl.constexpr):
    """Everything the kernel writes for the words of `_row_words(.., k0, K, BK)`."""
    pairs = tl.arange(0, BK // 8)[None, :]
    ok = (rows[:, None] < M) & (k0 + 8 * pairs < K)
    out = orow + k0 // 8 + pairs  # a pair of groups' word (or byte) in rows of K / 8 of them
    ve_lo, ve_hi, se_lo, se_hi = _group_words(uye, uge, MODE)
    vo_lo, vo_hi, so_lo, so_hi = _group_words(uyo, ugo, MODE)
    if SELECT:
        ie0, ie1 = _select24(se_lo, se_hi)
        io0, io1 = _select24(so_lo, so_hi)
        pe = _pick2(ve_lo, ve_hi, ie0, ie1)
        po = _pick2(vo_lo, vo_hi, io0, io1)
        ne, we = _compress_pair(pe, ie0, ie1, inv, FP8)
        no, wo = _compress_pair(po, io0, io1, inv, FP8)
        # Packed values of the two groups: one uint32 (FP8) or uint64 (bf16), 1/8 of the row's columns each.
        if FP8:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint32)) + out, we | (wo << 16), mask=ok)
        else:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint64)) + out, _word64(we, wo), mask=ok)
        moff = _meta_offset(rows[:, None].to(tl.int64), k0 + 8 * pairs, M, META16)
        tl.store(meta_ptr + moff, (ne | (no << 4)).to(tl.uint8), mask=ok)
        if WRITE_KEPT:  # the kept values (and scores) in the kept form, with one code byte per pair of groups
            tl.store(kept_ptr.to(tl.pointer_type(tl.uint64)) + out, _word64(pe, po), mask=ok)
            if MODE == 1:
                tl.store(kept_s_ptr.to(tl.pointer_type(tl.uint64)) + out,
                         _word64(_pick2(se_lo, se_hi, ie0, ie1), _pick2(so_lo, so_hi, io0, io1)), mask=ok)
            tl.store(codes_ptr + out, (_kept_code(ie0, ie1) | (_kept_code(io0, io1) << 4)).to(tl.uint8), mask=ok)
    else:  # row-wise FP8 of all 8 values
        tl.store(vals_ptr.to(tl.pointer_type(tl.uint64)) + out,
                 _word64(_fp8x4(ve_lo, ve_hi, inv), _fp8x4(vo_lo, vo_hi, inv)), mask=ok)
        if WRITE_KEPT:  # also the values (and in the backward the scores relu(y)²) dense in bf16: 2 words per pair
            dense = kept_ptr.to(tl.pointer_type(tl.uint64)) + 2 * out
            tl.store(dense, _word64(ve_lo, ve_hi), mask=ok)
            tl.store(dense + 1, _word64(vo_lo, vo_hi), mask=ok)
            if MODE == 1:
                dense_s = kept_s_ptr.to(tl.pointer_type(tl.uint64)) + 2 * out
                tl.store(dense_s, _word64(se_lo, se_hi), mask=ok)
                tl.store(dense_s + 1, _word64(so_lo, so_hi), mask=ok)


@triton.jit
def _rows_kernel(y_ptr, g_ptr, vals_ptr, meta_ptr, scale_ptr, kept_ptr, kept_s_ptr, codes_ptr,
                 M, K: tl.constexpr, stride_y, stride_g,
                 MODE: tl.constexpr, FP8: tl.constexpr, SELECT: tl.constexpr, META16: tl.constexpr,
                 WRITE_KEPT: tl.constexpr, BM: tl.constexpr, BK: tl.constexpr,
                 ROW_BK: tl.constexpr, ROW_TAIL: tl.constexpr, ON_CHIP: tl.constexpr, TAIL_BLOCK: tl.constexpr):
    # Tiles hold pairs of consecutive groups (8 columns) as two uint64 words, so that no data moves between
    # threads. FP8 needs the row maximum before any write. ROW_BK > 0: the maximum comes from the whole row read
    # at once, as a ROW_BK-wide block and a ROW_TAIL-wide one (0: none); with ON_CHIP those words are also what
    # is written (one read), else the writes loop over the row again in BK-wide blocks (from L2, mostly).
    rows = tl.program_id(0) * BM + tl.arange(0, BM)
    y64 = y_ptr.to(tl.pointer_type(tl.uint64))
    g64 = g_ptr.to(tl.pointer_type(tl.uint64))
    yrow = rows[:, None].to(tl.int64) * (stride_y // 4)
    grow = rows[:, None].to(tl.int64) * (stride_g // 4)
    orow = rows[:, None].to(tl.int64) * (K // 8)  # output rows of K / 8 words (per pair of groups)
    inv = tl.full((BM, 1), 1.0, tl.float32)
    if ROW_BK > 0:
        a0, a1, a2, a3 = _row_words(y64, g64, yrow, grow, rows, M, 0, K, ROW_BK)
        if FP8:
            amax = _words_max(a0, a1, a2, a3, MODE, SELECT)
        if ROW_TAIL > 0:
            b0, b1, b2, b3 = _row_words(y64, g64, yrow, grow, rows, M, ROW_BK, K, ROW_TAIL)
            if FP8:
                amax = tl.maximum(amax, _words_max(b0, b1, b2, b3, MODE, SELECT))
    elif FP8:
        amax = tl.zeros((BM,), tl.float32)
        for k0 in range(0, K, BK):
            amax = tl.maximum(amax, _words_max(*_row_words(y64, g64, yrow, grow, rows, M, k0, K, BK), MODE, SELECT))
    if FP8:
        if MODE == 0:
            r = tl.maximum(amax, 0.0)
            amax = _round_bf16(r * r)
        scale = tl.math.div_rn(tl.maximum(amax, 1e-12), FP8_MAX)
        inv = tl.math.div_rn(tl.full((BM,), 1.0, tl.float32), scale)[:, None]
        tl.store(scale_ptr + rows, scale, mask=rows < M)
    if ON_CHIP:
        _write_words(a0, a1, a2, a3, rows, M, 0, K, ROW_BK, inv, orow, vals_ptr, meta_ptr, kept_ptr, kept_s_ptr,
                     codes_ptr, MODE, FP8, SELECT, META16, WRITE_KEPT)
        if ROW_TAIL > 0:
            _write_words(b0, b1, b2, b3, rows, M, ROW_BK, K, ROW_TAIL, inv, orow, vals_ptr, meta_ptr, kept_ptr,
                         kept_s_ptr, codes_ptr, MODE, FP8, SELECT, META16, WRITE_KEPT)
    else:  # TAIL_BLOCK: BK divides ROW_BK; blocks over the power-of-2 part, then the tail
        for k0 in range(0, ROW_BK if TAIL_BLOCK else K, BK):
            _write_words(*_row_words(y64, g64, yrow, grow, rows, M, k0, K, BK), rows, M, k0, K, BK, inv, orow,
                         vals_ptr, meta_ptr, kept_ptr, kept_s_ptr, codes_ptr, MODE, FP8, SELECT, META16, WRITE_KEPT)
        if TAIL_BLOCK and ROW_TAIL > 0:
            _write_words(*_row_words(y64, g64, yrow, grow, rows, M, ROW_BK, K, ROW_TAIL), rows, M, ROW_BK, K,
                         ROW_TAIL, inv, orow, vals_ptr, meta_ptr, kept_ptr, kept_s_ptr, codes_ptr, MODE, FP8, SELECT,
                         META16, WRITE_KEPT)


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
def _group_codes(codes_ptr, offsets):
    """The codes of the group pairs at byte `offsets` (R, N): (R, 2N), one per group (4 bits in a uint32). The
    loads are contiguous like those of the kept words, and each thread splits its own bytes (no data movement)."""
    c = tl.load(codes_ptr + offsets).to(tl.uint32)
    return tl.reshape(tl.join(c & 15, c >> 4), (offsets.shape[0], 2 * offsets.shape[1]))


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
                T, M_SPARSE, FP8: tl.constexpr, META16: tl.constexpr, SPARSE: tl.constexpr):
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
        ne, we = _compress_pair(_pick2(e_lo, e_hi, ie0, ie1), ie0, ie1, inv, FP8)
        no, wo = _compress_pair(_pick2(o_lo, o_hi, io0, io1), io0, io1, inv, FP8)
        rows = tl.where(dest >= 0, dest, 0).to(tl.int64)[:, None]
        out = rows * (T // 8) + t0 // 8 + pairs[None, :]
        if FP8:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint32)) + out, tl.trans(we | (wo << 16)), mask=is_sparse)
        else:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint64)) + out, tl.trans(_word64(we, wo)), mask=is_sparse)
        moff = _meta_offset(rows, t0 + 8 * pairs[None, :], M_SPARSE, META16)
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
                   T, F, M_SPARSE, stride_a, FP8: tl.constexpr, META16: tl.constexpr, SPARSE: tl.constexpr,
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
                    dense_ptr, T, M_SPARSE, FP8, META16, SPARSE)
    else:
        feats = tl.program_id(0) * BF + tl.arange(0, BF)
        _tokens_out(_token_words(a_ptr, perm_ptr, t0, pairs, 0, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 2, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 4, feats, stride_a),
                    _token_words(a_ptr, perm_ptr, t0, pairs, 6, feats, stride_a), feats, t0, pairs, dest_ptr,
                    inv_scale_ptr, vals_ptr, meta_ptr, dense_ptr, T, M_SPARSE, FP8, META16, SPARSE)


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


def fit_block_k(cfg: LaunchConfig, k: int) -> LaunchConfig:
    """`cfg` with the largest block_k (cfg.block_k, halved at most twice) whose partial last block wastes at
    most 1/16 of the row (the kernels mask it): F = 16512 = 4 x 4096 + 128 would run a 4096-wide block for
    128 columns."""
    sizes = [b for b in (cfg.block_k, cfg.block_k // 2, cfg.block_k // 4) if b >= 128] or [cfg.block_k]
    sizes = [min(b, triton.next_power_of_2(k)) for b in sizes]
    waste = [(-k % b) / k for b in sizes]
    ok = [b for b, w in zip(sizes, waste) if w <= 1 / 16]
    return dataclasses.replace(cfg, block_k=ok[0] if ok else sizes[waste.index(min(waste))])


def row_blocks(cfg: LaunchConfig, k: int, fp8: bool) -> tuple[dict, int]:
    """The block constexprs of `_rows_kernel` for rows of k columns, and its warps. FP8 rows of at most
    ON_CHIP_MAX_K columns are read whole (a power-of-2 block and a power-of-2 tail) for the row maximum when
    cfg.on_chip_warps > 0 (and then held for the writes) or cfg.whole_row_max; the writes, and everything else,
    loop over `fit_block_k` blocks, or with cfg.tail_block over the power-of-2 block in cfg.block_k blocks, then
    the tail (TAIL_BLOCK)."""
    whole = fp8 and k <= ON_CHIP_MAX_K and bool(cfg.on_chip_warps or cfg.whole_row_max)
    row_bk = 1 << (k.bit_length() - 1) if whole else 0  # F = 16512: 16384 + a 128-wide tail
    row_tail = triton.next_power_of_2(k - row_bk) if whole and k > row_bk else 0
    on_chip = whole and cfg.on_chip_warps > 0
    tail_block = whole and not on_chip and cfg.tail_block
    bk = min(cfg.block_k, row_bk) if tail_block else fit_block_k(cfg, k).block_k
    blocks = dict(BK=bk, ROW_BK=row_bk, ROW_TAIL=row_tail, ON_CHIP=on_chip, TAIL_BLOCK=tail_block)
    return blocks, cfg.on_chip_warps if on_chip else cfg.num_warps


def _check(x: torch.Tensor, name: str, m: int, k: int, fp8: bool) -> None:
    bits = 8 if fp8 else 16
    if m % ATOM_M or k % atom_k(bits):
        raise ValueError(f"{name}: the sparse operand must have rows a multiple of {ATOM_M} and a reduction "
                         f"dimension a multiple of {atom_k(bits)} ({'FP8' if fp8 else 'bf16'}), got {m} x {k}")
    if x.dtype != torch.bfloat16:
        raise ValueError(f"{name}: expected bf16 input, got {x.dtype}")


def sparsify24_rows(y: torch.Tensor, grad: torch.Tensor | None = None, *, fp8: bool = True,
                    mode: int | None = None, write_kept: bool = False, cfg: LaunchConfig | None = None):
    """2:4 along the columns of `y` (M x K, bf16) in one fused kernel; see the module docstring.

    mode: FORWARD (values relu(y)², the default without `grad`), BACKWARD (values grad ⊙ 2 relu(y), selection
    by relu(y)², the default with `grad`) or PLAIN (values y, selection by |y|). Returns (Packed24, kept values,
    kept scores): with `write_kept`, the masked values, and in the backward the masked relu(y)², as `Kept24`
    sharing their codes; else None."""
    m, k = y.shape
    mode = (BACKWARD if grad is not None else FORWARD) if mode is None else mode
    cfg = cfg or (BACKWARD_ROWS_CONFIG if mode == BACKWARD else ROWS_CONFIG)
    _check(y, "sparsify24_rows", m, k, fp8)
    if mode == BACKWARD and (grad is None or grad.shape != y.shape or grad.dtype != torch.bfloat16):
        raise ValueError("sparsify24_rows: the backward mode needs a bf16 `grad` shaped like `y`")
    blocks, warps = row_blocks(cfg, k, fp8)
    y = y.contiguous()
    grad = grad.contiguous() if grad is not None else y
    vals = torch.empty(m, k // 2, dtype=torch.float8_e4m3fn if fp8 else torch.bfloat16, device=y.device)
    meta = torch.empty(m * k // 8, dtype=torch.uint8, device=y.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=y.device) if fp8 else None
    kept = kept_s = None
    if write_kept:
        codes = torch.empty(m, k // 8, dtype=torch.uint8, device=y.device)
        kept = Kept24(torch.empty(m, k // 2, dtype=torch.bfloat16, device=y.device), codes)
        kept_s = Kept24(torch.empty_like(kept.values), codes) if mode == BACKWARD else None
    _rows_kernel[(m // cfg.block_m,)](
        y, grad, vals, meta, scale if fp8 else vals, kept.values if write_kept else vals,
        kept_s.values if kept_s is not None else vals, kept.codes if write_kept else meta, m, k, y.stride(0),
        grad.stride(0),
        MODE=mode, FP8=fp8, SELECT=True, META16=not fp8, WRITE_KEPT=write_kept, BM=cfg.block_m, **blocks,
        num_warps=warps)
    return Packed24(vals, meta, scale), kept, kept_s


def quantize_rows(y: torch.Tensor, mode: int = PLAIN,
                  cfg: LaunchConfig = QUANTIZE_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise FP8 of y (PLAIN) or of relu(y)² (FORWARD: the dense FFN's fused step), no 2:4: (values, scales
    (M x 1)), bit for bit as `backends.quantize_rowwise_fp8`. y: bf16, K a multiple of 8."""
    m, k = y.shape
    if not quantize_fits(y, cfg):
        raise ValueError(f"quantize_rows: bf16 input with K % 8 == 0 and M % {cfg.block_m} == 0, got "
                         f"{tuple(y.shape)} {y.dtype}")
    y = y.contiguous()
    blocks, warps = row_blocks(cfg, k, True)
    out = torch.empty(m, k, dtype=torch.float8_e4m3fn, device=y.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=y.device)
    _rows_kernel[(m // cfg.block_m,)](
        y, y, out, out, scale, out, out, out, m, k, y.stride(0), y.stride(0), MODE=mode, FP8=True, SELECT=False,
        META16=False, WRITE_KEPT=False, BM=cfg.block_m, **blocks, num_warps=warps)
    return out, scale


def dense_backward_rows(y: torch.Tensor, grad: torch.Tensor, cfg: LaunchConfig = BACKWARD_ROWS_CONFIG
                        ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]:
    """The dense FFN's backward step in one pass over Y1 (`y`) and dY2 (`grad`), both (M x K) bf16, no 2:4:
    dY1 = dY2 ⊙ 2 relu(Y1) as row-wise FP8 (values, scales (M x 1); BW3's operand, bit for bit as
    `backends.quantize_rowwise_fp8`), and dY1 and Y2 = relu(Y1)² in bf16 (the transposes BW4 and BW2 quantize)."""
    m, k = y.shape
    if not (quantize_fits(y, cfg) and grad.shape == y.shape and grad.dtype == torch.bfloat16):
        raise ValueError(f"dense_backward_rows: bf16 y and grad of one shape with K % 8 == 0 and M % {cfg.block_m} "
                         f"== 0, got {tuple(y.shape)} {y.dtype} and {tuple(grad.shape)} {grad.dtype}")
    y, grad = y.contiguous(), grad.contiguous()
    blocks, warps = row_blocks(cfg, k, True)
    out = torch.empty(m, k, dtype=torch.float8_e4m3fn, device=y.device)
    scale = torch.empty(m, 1, dtype=torch.float32, device=y.device)
    dy1, y2 = torch.empty(2, m, k, dtype=torch.bfloat16, device=y.device)
    _rows_kernel[(m // cfg.block_m,)](
        y, grad, out, out, scale, dy1, y2, out, m, k, y.stride(0), grad.stride(0), MODE=BACKWARD, FP8=True,
        SELECT=False, META16=False, WRITE_KEPT=True, BM=cfg.block_m, **blocks, num_warps=warps)
    return out, scale, dy1, y2


def quantize_fits(y: torch.Tensor, cfg: LaunchConfig = QUANTIZE_CONFIG) -> bool:
    """Whether `quantize_rows` takes y (else callers use the eager `quantize_rowwise_fp8`: same bits, slower)."""
    return y.dtype == torch.bfloat16 and y.dim() == 2 and y.shape[1] % 8 == 0 and y.shape[0] % cfg.block_m == 0


def feature_destinations(n_features: int, sparse_idx: torch.Tensor, dense_idx: torch.Tensor) -> torch.Tensor:
    """For every feature: its row in the sparse output (>= 0) or -(1 + its row in the dense output)."""
    dest = torch.empty(n_features, dtype=torch.int32, device=sparse_idx.device)
    dest[sparse_idx] = _arange(len(sparse_idx), sparse_idx.device)
    dest[dense_idx] = -1 - _arange(len(dense_idx), sparse_idx.device)
    return dest


def split_destinations(counts: torch.Tensor, n_sparse: int, max_count: int) -> torch.Tensor:
    """`feature_destinations` of `pattern.feature_split` from the split's per-feature non-zero counts (each at most
    max_count), without sorting: the features whose (count, lower index first) rank among the top
    len(counts) - n_sparse are dense. One selection for the threshold, then one small kernel."""
    f = counts.numel()
    if n_sparse >= f:
        return _arange(f, counts.device)
    # Keys count * F + (F - 1 - index) are distinct: a larger count first, ties to the lower index. int32 keys
    # when they fit: the selection takes half the passes (77 against 150 us at F = 16512 on an H200).
    dtype = torch.int32 if (max_count + 1) * f < 2**31 else torch.int64
    reverse = _cached(("reverse", f, str(counts.device), dtype),
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


_CACHE: dict = {}


def _cached(key, make):
    """Small constant tensors the backward asks for every step (aranges and the like), made once."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def _arange(n: int, device) -> torch.Tensor:
    """0 .. n-1 (int32)."""
    return _cached(("arange", n, str(device)), lambda: torch.arange(n, device=device, dtype=torch.int32))


def tokens_split(a: torch.Tensor | Kept24, perm: torch.Tensor | None, dest: torch.Tensor, m_sparse: int, *,
                 fp8: bool = True, amax: torch.Tensor | None = None, cfg: LaunchConfig | None = None):
    """`sparsify24_tokens` for a split given as `feature_destinations` (or `split_destinations`) with m_sparse
    sparse features, of a dense (T x F) bf16 `a` or of one in the kept form: (Packed24, dense rows, their FP8 row
    scales (F - m_sparse x 1) or None)."""
    kept = isinstance(a, Kept24)
    cfg = cfg or (KEPT_TOKENS_CONFIG if kept else TOKENS_CONFIG)
    t, f = a.shape
    n_dense = f - m_sparse
    _check(a.values if kept else a, "tokens_split", m_sparse, t, fp8)
    if f % cfg.block_m or t % cfg.block_k:
        raise ValueError(f"tokens_split: F={f} must be a multiple of {cfg.block_m} and T={t} of {cfg.block_k}")
    src, codes = (a.values.contiguous(), a.codes.contiguous()) if kept else (a.contiguous(), dest)
    perm = (_arange(t, src.device) if perm is None else perm).to(torch.int32).contiguous()
    dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    vals = torch.empty(m_sparse, t // 2, dtype=dtype, device=src.device)
    meta = torch.empty(m_sparse * t // 8, dtype=torch.uint8, device=src.device)
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
        src, codes, perm, dest, inv, vals, meta, dense, t, f, m_sparse, src.stride(0), FP8=fp8, META16=not fp8,
        SPARSE=m_sparse > 0, KEPT=kept, BF=cfg.block_m, BT=cfg.block_k, num_warps=cfg.num_warps)
    return Packed24(vals, meta, sparse_scale), dense, dense_scale


def sparsify24_tokens(a: torch.Tensor | Kept24, perm: torch.Tensor | None, sparse_idx: torch.Tensor,
                      dense_idx: torch.Tensor, *, fp8: bool = True, amax: torch.Tensor | None = None,
                      cfg: LaunchConfig | None = None):
    """The BW2 / BW4 operands of `a` (T x F, bf16, dense or `Kept24`) in one pass: rows `sparse_idx` of a[perm]ᵀ,
    2:4 along tokens, packed (Packed24), and rows `dense_idx` of a[perm]ᵀ dense (FP8 with the same row scales, or
    bf16), with the dense rows' scales. amax: max |a| per column, if known."""
    dest = feature_destinations(a.shape[1], sparse_idx, dense_idx)
    return tokens_split(a, perm, dest, len(sparse_idx), fp8=fp8, amax=amax, cfg=cfg)


def quantize_transposed(b: torch.Tensor, perm: torch.Tensor | None = None,
                        cfg: LaunchConfig = TRANSPOSE_CONFIG) -> tuple[torch.Tensor, torch.Tensor]:
    """Row-wise FP8 of b[perm]ᵀ (b: K x N bf16) in one pass, as `quantize_rowwise_fp8(b[perm].t().contiguous())`:
    the token-wise kernel with every column dense."""
    n = b.shape[1]
    dest = _cached(("all dense", n, str(b.device)), lambda: -1 - _arange(n, b.device))  # in order
    _, dense, scale = tokens_split(b, perm, dest, 0, cfg=cfg)
    return dense, scale


def transposed_fits(b: torch.Tensor, cfg: LaunchConfig = TRANSPOSE_CONFIG) -> bool:
    return (b.dtype == torch.bfloat16 and b.dim() == 2 and b.shape[0] % max(cfg.block_k, 128) == 0
            and b.shape[1] % cfg.block_m == 0)


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
