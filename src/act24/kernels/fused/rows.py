"""The row kernel: per row of a (T x F) bf16 input, relu² (or the backward's dY2 ⊙ 2 relu(Y1)), the 2:4 selection
along features, row-wise FP8 and the sm90 packing in one pass; without selection, a row-wise FP8 quantization."""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from .bits import FP8_MAX, _round_bf16, _row_words, _words_max, _write_words
from .formats import (BACKWARD, BACKWARD_ROWS_CONFIG, CUTLASS, FORWARD, ON_CHIP_MAX_K, PLAIN, QUANTIZE_CONFIG,
                      ROWS_CONFIG, Kept24, LaunchConfig, check_operand, empty_packed, fit_block_k, layout_code)


@triton.jit
def _rows_kernel(y_ptr, g_ptr, vals_ptr, meta_ptr, scale_ptr, kept_ptr, kept_s_ptr, codes_ptr,
                 M, K: tl.constexpr, stride_y, stride_g,
                 MODE: tl.constexpr, FP8: tl.constexpr, SELECT: tl.constexpr, LAYOUT: tl.constexpr,
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
                     codes_ptr, MODE, FP8, SELECT, LAYOUT, WRITE_KEPT)
        if ROW_TAIL > 0:
            _write_words(b0, b1, b2, b3, rows, M, ROW_BK, K, ROW_TAIL, inv, orow, vals_ptr, meta_ptr, kept_ptr,
                         kept_s_ptr, codes_ptr, MODE, FP8, SELECT, LAYOUT, WRITE_KEPT)
    else:  # TAIL_BLOCK: BK divides ROW_BK; blocks over the power-of-2 part, then the tail
        for k0 in range(0, ROW_BK if TAIL_BLOCK else K, BK):
            _write_words(*_row_words(y64, g64, yrow, grow, rows, M, k0, K, BK), rows, M, k0, K, BK, inv, orow,
                         vals_ptr, meta_ptr, kept_ptr, kept_s_ptr, codes_ptr, MODE, FP8, SELECT, LAYOUT, WRITE_KEPT)
        if TAIL_BLOCK and ROW_TAIL > 0:
            _write_words(*_row_words(y64, g64, yrow, grow, rows, M, ROW_BK, K, ROW_TAIL), rows, M, ROW_BK, K,
                         ROW_TAIL, inv, orow, vals_ptr, meta_ptr, kept_ptr, kept_s_ptr, codes_ptr, MODE, FP8, SELECT,
                         LAYOUT, WRITE_KEPT)


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


def sparsify24_rows(y: torch.Tensor, grad: torch.Tensor | None = None, *, fp8: bool = True,
                    mode: int | None = None, write_kept: bool = False, cfg: LaunchConfig | None = None,
                    layout: str = CUTLASS):
    """2:4 along the columns of `y` (M x K, bf16) in one fused kernel; see the module docstring.

    mode: FORWARD (values relu(y)², the default without `grad`), BACKWARD (values grad ⊙ 2 relu(y), selection
    by relu(y)², the default with `grad`) or PLAIN (values y, selection by |y|). layout: the packed format,
    CUTLASS or CUSPARSELT (FP8 only). Returns (Packed24, kept values, kept scores): with `write_kept`, the masked
    values, and in the backward the masked relu(y)², as `Kept24` sharing their codes; else None."""
    m, k = y.shape
    mode = (BACKWARD if grad is not None else FORWARD) if mode is None else mode
    cfg = cfg or (BACKWARD_ROWS_CONFIG if mode == BACKWARD else ROWS_CONFIG)
    check_operand(y, "sparsify24_rows", m, k, fp8, layout)
    if mode == BACKWARD and (grad is None or grad.shape != y.shape or grad.dtype != torch.bfloat16):
        raise ValueError("sparsify24_rows: the backward mode needs a bf16 `grad` shaped like `y`")
    blocks, warps = row_blocks(cfg, k, fp8)
    y = y.contiguous()
    grad = grad.contiguous() if grad is not None else y
    packed = empty_packed(m, k, fp8, layout, y.device)
    vals, meta = packed.values, packed.meta
    scale = packed.scale = torch.empty(m, 1, dtype=torch.float32, device=y.device) if fp8 else None
    kept = kept_s = None
    if write_kept:
        codes = torch.empty(m, k // 8, dtype=torch.uint8, device=y.device)
        kept = Kept24(torch.empty(m, k // 2, dtype=torch.bfloat16, device=y.device), codes)
        kept_s = Kept24(torch.empty_like(kept.values), codes) if mode == BACKWARD else None
    _rows_kernel[(m // cfg.block_m,)](
        y, grad, vals, meta, scale if fp8 else vals, kept.values if write_kept else vals,
        kept_s.values if kept_s is not None else vals, kept.codes if write_kept else meta, m, k, y.stride(0),
        grad.stride(0),
        MODE=mode, FP8=fp8, SELECT=True, LAYOUT=layout_code(layout, fp8), WRITE_KEPT=write_kept, BM=cfg.block_m,
        **blocks, num_warps=warps)
    return packed, kept, kept_s


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
        LAYOUT=0, WRITE_KEPT=False, BM=cfg.block_m, **blocks, num_warps=warps)
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
        SELECT=False, LAYOUT=0, WRITE_KEPT=True, BM=cfg.block_m, **blocks, num_warps=warps)
    return out, scale, dy1, y2


def quantize_fits(y: torch.Tensor, cfg: LaunchConfig = QUANTIZE_CONFIG) -> bool:
    """Whether `quantize_rows` takes y (else callers use the eager `quantize_rowwise_fp8`: same bits, slower)."""
    return y.dtype == torch.bfloat16 and y.dim() == 2 and y.shape[1] % 8 == 0 and y.shape[0] % cfg.block_m == 0
