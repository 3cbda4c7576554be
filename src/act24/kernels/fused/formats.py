"""What the fused kernels read and write: the packed and kept 2:4 forms, launch settings and small shared helpers."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

import torch
import triton

from .. import cslt_layout, sm90_layout
from ..sm90_layout import ATOM_M, atom_k

INTERPRETED = os.environ.get("TRITON_INTERPRET", "0") == "1"  # Triton reads it when a kernel is defined
FORWARD, BACKWARD, PLAIN = 0, 1, 2  # how values and selection scores come from the inputs
# The packed formats the kernels write: CUTLASS's sm90 one (`sm90_layout`, xformers' GEMM) and cuSPARSELt's
# (`cslt_layout`, torch._cslt_sparse_mm; FP8 only: its bf16 metadata pairs rows 8 apart in one byte, which a
# kernel owning whole rows cannot write).
CUTLASS, CUSPARSELT = sm90_layout.NAME, cslt_layout.NAME


def layout_code(layout: str, fp8: bool) -> int:
    """The kernels' LAYOUT constexpr: 0 CUTLASS 8-bit, 1 CUTLASS 16-bit, 2 cuSPARSELt 8-bit."""
    if layout == CUTLASS:
        return 0 if fp8 else 1
    if layout == CUSPARSELT and fp8:
        return 2
    raise ValueError(f"packed 2:4 layout: expected {CUTLASS!r} (FP8 or bf16) or {CUSPARSELT!r} (FP8), got "
                     f"{layout!r} for {'FP8' if fp8 else 'bf16'} values")


@dataclass
class Packed24:
    """A 2:4 operand packed for a sparse GEMM: values (M x K/2), metadata bytes, row scales (M x 1, FP8), and its
    `layout`. cuSPARSELt takes one buffer (`buffer`, values then metadata); values and meta are views of it."""

    values: torch.Tensor
    meta: torch.Tensor
    scale: torch.Tensor | None
    layout: str = CUTLASS
    buffer: torch.Tensor | None = None


def empty_packed(m: int, k: int, fp8: bool, layout: str, device) -> Packed24:
    """Uninitialized storage for an (M x K) operand packed in `layout` (no scales)."""
    dtype = torch.float8_e4m3fn if fp8 else torch.bfloat16
    if layout == CUTLASS:
        return Packed24(torch.empty(m, k // 2, dtype=dtype, device=device),
                        torch.empty(m * k // 8, dtype=torch.uint8, device=device), None)
    layout_code(layout, fp8)
    # (M x S), as torch._cslt_compress returns it: torch._cslt_sparse_mm reads M and the value type from it.
    buffer = torch.empty(m, k // 2 + k // 8, dtype=dtype, device=device)
    flat = buffer.view(-1)
    return Packed24(flat[:m * k // 2].view(m, k // 2), flat[m * k // 2:].view(torch.uint8), None, layout, buffer)


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

# Picked on an H200 at T = 16384, F = 16512 with workflow/experiments/tune_fused.py.
ROWS_CONFIG = LaunchConfig(block_m=1, block_k=4096, num_warps=4, whole_row_max=True)  # 2:4, forward (and plain)
# The backward: 8 warps, 2048-wide blocks and a tail block (620 -> 596 us at that shape).
BACKWARD_ROWS_CONFIG = LaunchConfig(block_m=1, block_k=2048, num_warps=8, whole_row_max=True, tail_block=True)
QUANTIZE_CONFIG = LaunchConfig(block_m=1, block_k=4096, num_warps=4, on_chip_warps=4)  # FP8 without 2:4
TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=64, num_warps=2)  # block_m: features, block_k: tokens
TRANSPOSE_CONFIG = LaunchConfig(block_m=64, block_k=128, num_warps=4)  # the token-wise kernel, all dense
COLUMNS_CONFIG = LaunchConfig(block_m=32, block_k=64, num_warps=4)  # block_m: rows per step, block_k: columns
# The kept-form kernels (reading `Kept24`).
KEPT_TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=64, num_warps=2)  # the token-wise kernel from `Kept24`
KEPT_COLUMNS_CONFIG = LaunchConfig(block_m=16, block_k=128, num_warps=4)  # block_k: features (a multiple of 8)
COLUMN_CHUNK = 1024  # rows per program of the column statistics (then one atomic per column and program)
GATHER_CONFIG = LaunchConfig(block_m=64, block_k=128, num_warps=4)  # block_m: features, block_k: columns
if INTERPRETED:  # the interpreter's cost is per program: fewer, larger ones
    ROWS_CONFIG = BACKWARD_ROWS_CONFIG = LaunchConfig(block_m=64, block_k=512, whole_row_max=True)
    QUANTIZE_CONFIG = LaunchConfig(block_m=64, block_k=512, on_chip_warps=4)
    TOKENS_CONFIG = TRANSPOSE_CONFIG = KEPT_TOKENS_CONFIG = LaunchConfig(block_m=64, block_k=128)
    COLUMNS_CONFIG = KEPT_COLUMNS_CONFIG = LaunchConfig(block_m=128, block_k=128)


def fit_block_k(cfg: LaunchConfig, k: int) -> LaunchConfig:
    """`cfg` with the largest block_k (cfg.block_k, halved at most twice) whose partial last block wastes at
    most 1/16 of the row (the kernels mask it): F = 16512 = 4 x 4096 + 128 would run a 4096-wide block for
    128 columns."""
    sizes = [b for b in (cfg.block_k, cfg.block_k // 2, cfg.block_k // 4) if b >= 128] or [cfg.block_k]
    sizes = [min(b, triton.next_power_of_2(k)) for b in sizes]
    waste = [(-k % b) / k for b in sizes]
    ok = [b for b, w in zip(sizes, waste) if w <= 1 / 16]
    return dataclasses.replace(cfg, block_k=ok[0] if ok else sizes[waste.index(min(waste))])


def check_operand(x: torch.Tensor, name: str, m: int, k: int, fp8: bool, layout: str = CUTLASS) -> None:
    bits = 8 if fp8 else 16
    layout_code(layout, fp8)
    mult = atom_k(bits) if layout == CUTLASS else 4 * cslt_layout.atom_groups(bits)
    if m % ATOM_M or k % mult:
        raise ValueError(f"{name}: the sparse operand must have rows a multiple of {ATOM_M} and a reduction "
                         f"dimension a multiple of {mult} ({'FP8' if fp8 else 'bf16'}, {layout} layout), got "
                         f"{m} x {k}")
    if x.dtype != torch.bfloat16:
        raise ValueError(f"{name}: expected bf16 input, got {x.dtype}")


_CACHE: dict = {}


def cached(key, make):
    """Small constant tensors the backward asks for every step (aranges and the like), made once."""
    if key not in _CACHE:
        _CACHE[key] = make()
    return _CACHE[key]


def arange32(n: int, device) -> torch.Tensor:
    """0 .. n-1 (int32)."""
    return cached(("arange", n, str(device)), lambda: torch.arange(n, device=device, dtype=torch.int32))
