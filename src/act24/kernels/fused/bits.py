"""Triton device helpers shared by the fused kernels: bf16 / FP8 rounding on bits, word packing, the 2:4 selection
of a group, the kept-form codes and the sm90 metadata offsets."""

from __future__ import annotations

import triton
import triton.language as tl

from ..fp8 import FP8_MAX as _FP8_MAX
from .formats import INTERPRETED

FP8_MAX = tl.constexpr(_FP8_MAX)  # a constexpr: kernels can read it


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
def _compress_pair(pair, i0, i1, inv_scale, FP8: tl.constexpr, LAYOUT: tl.constexpr):
    """A group's kept values (`_pick2`) encoded as the sm90 compressors write them: (metadata nibble, the two
    values' bits in one word: FP8 of x * inv_scale, 8 bits each, or bf16, 16 bits each). CUTLASS's codes, or
    with LAYOUT 2 (`formats.layout_code`) cuSPARSELt's (`sm90_layout.kept(pad_high=True)`)."""
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
    if LAYOUT == 2:  # cuSPARSELt pads with the highest free indices: no non-zero, or one at 3, is (2, 3)
        pad = ~(both | only0 | move1)
        j0 = tl.where(pad, 2, j0)
        j1 = tl.where(pad, 3, j1)
        # and stores the bytes at the coded indices as they are (-0.0 too); indices not kept hold +0
        w0 = tl.where(j0 == i0, b0, tl.where(j0 == i1, b1, zero))
        w1 = tl.where(j1 == i0, b0, tl.where(j1 == i1, b1, zero))
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
def _meta_offset(rows, cols, M, K, LAYOUT: tl.constexpr):
    """Byte offsets of the metadata bytes of (rows, cols) (the pair of groups from column cols, a multiple of 8)
    of an M x K operand in the layout LAYOUT (`formats.layout_code`): CUTLASS's for 8- or 16-bit values
    (`sm90_layout.meta_byte_offset`) or cuSPARSELt's for 8-bit (`cslt_layout.code_offset`; a pair's two codes
    are neighbours there). In int64: the logical offset passes 2^31 from M x K = 2^31 elements on (70B-like FFN,
    64k tokens)."""
    cols = cols.to(tl.int64)
    rows = rows.to(tl.int64)
    if LAYOUT == 1:
        kb = cols // 64
        kk = cols % 64
        mb = rows // 64
        mm = rows % 64
        logical = ((kk % 16) + 16 * ((mm // 8) % 2) + 32 * (kk // 32) + 64 * (mm % 8) + 512 * ((kk // 16) % 2)
                   + 1024 * (mm // 16) + mb * 4096 + kb * M * 64)
    elif LAYOUT == 2:  # in 4-bit codes: c0 | r3 << 1 | c3 << 2 | c1 << 3 | c2 << 4 | r0-2 << 5 | r4-5 << 8
        r = rows % 64
        c = (cols // 4) % 16
        inner = (((r >> 3) & 1) << 1) | (((c >> 3) & 1) << 2) | (((c >> 1) & 1) << 3) | (((c >> 2) & 1) << 4) \
            | ((r & 7) << 5) | ((r >> 4) << 8)
        logical = 4 * (inner + (cols // 64 + (K // 64) * (rows // 64)) * 1024)  # 4 logical columns per code
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
                 SELECT: tl.constexpr, LAYOUT: tl.constexpr, WRITE_KEPT: tl.constexpr):
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
        ne, we = _compress_pair(pe, ie0, ie1, inv, FP8, LAYOUT)
        no, wo = _compress_pair(po, io0, io1, inv, FP8, LAYOUT)
        # Packed values of the two groups: one uint32 (FP8) or uint64 (bf16), 1/8 of the row's columns each.
        if FP8:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint32)) + out, we | (wo << 16), mask=ok)
        else:
            tl.store(vals_ptr.to(tl.pointer_type(tl.uint64)) + out, _word64(we, wo), mask=ok)
        moff = _meta_offset(rows[:, None].to(tl.int64), k0 + 8 * pairs, M, K, LAYOUT)
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
def _group_codes(codes_ptr, offsets):
    """The codes of the group pairs at byte `offsets` (R, N): (R, 2N), one per group (4 bits in a uint32). The
    loads are contiguous like those of the kept words, and each thread splits its own bytes (no data movement)."""
    c = tl.load(codes_ptr + offsets).to(tl.uint32)
    return tl.reshape(tl.join(c & 15, c >> 4), (offsets.shape[0], 2 * offsets.shape[1]))
