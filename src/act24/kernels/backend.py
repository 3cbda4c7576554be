"""What every 2:4 GEMM backend is: `mm24(a, b) = a @ b` with `a` already 2:4 sparse along K, a capability probe,
and the reference that defines the math. The probes of what a machine has live here too."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch

from .fp8 import quantize_rowwise_fp8, scaled_mm_rowwise


@dataclass(frozen=True)
class BackendStatus:
    """What `act24 backends` reports for one backend on this machine."""

    name: str
    description: str
    available: bool
    reason: str = ""  # why unavailable / incorrect
    rel_error: float | None = None  # worst relative error against the dense reference, if checked
    tolerance: float | None = None

    @property
    def verdict(self) -> str:
        if not self.available:
            return f"unavailable: {self.reason}"
        if self.rel_error is None:
            return "available (not checked)"
        if not math.isfinite(self.rel_error) or self.rel_error > self.tolerance:
            return f"INCORRECT: {self.reason}"
        return "ok"

    @property
    def usable(self) -> bool:
        return self.verdict == "ok"


class Backend:
    name = "base"
    description = ""
    dtype: torch.dtype | None = None  # compute dtype of the inputs; None: keep the caller's
    tolerance = 1e-5  # relative error allowed against the float64 reference on the same inputs
    # Sparse operand (M x K) and dense operand (K x N) alignment: M, K, N must be multiples of these.
    multiples = (1, 4, 1)
    # True when mm24 is plain dense math: callers may then fuse masks instead of splitting GEMMs.
    dense_math = False
    # True when the sparse FFN can run its fused kernels on this backend (act24.ffn.fused).
    fused = False

    def probe(self) -> str:
        """'' when this machine can run the backend, else why not."""
        return ""

    def shape_error(self, m: int, k: int, n: int) -> str:
        mm, mk, mn = self.multiples
        if m % mm or k % mk or n % mn:
            return (f"{self.name}: a ({m} x {k}) @ b ({k} x {n}) needs M % {mm} == 0, K % {mk} == 0 and "
                    f"N % {mn} == 0")
        return ""

    def mm24(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def mm(self, a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        """The dense GEMMs of the FFN, in the backend's precision (FP8 backends: FP8 with row-wise scales)."""
        return a @ b

    def gemm_choices(self) -> dict[str, str]:
        """The per-shape choices this backend made so far (GEMM kernel, algorithm), for the run's summary."""
        return {}


class ReferenceBackend(Backend):
    name = "reference"
    description = "dense matmul of the masked operand (any device, any dtype); defines the math"
    dense_math = True

    def mm24(self, a, b):
        return a @ b


def cuda_capability() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def cusparselt_missing() -> str:
    cap = cuda_capability()
    if cap is None:
        return "no CUDA device"
    if cap < (8, 0):
        return f"needs compute capability >= 8.0, device has {cap[0]}.{cap[1]}"
    if not torch.backends.cusparselt.is_available():
        return "this torch build has no cuSPARSELt"
    return ""


def sm90_missing() -> str:
    cap = cuda_capability()
    if cap != (9, 0):
        if cap is None:
            return "no CUDA device"
        return f"needs compute capability 9.0 (Hopper), device has {cap[0]}.{cap[1]}"
    return ""


def triton_missing() -> str:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return ""


class Fp8Backend(Backend):
    """The FP8 backends' dense math: row-wise FP8 operands (one scale per row of a, per column of b), cuBLAS's FP8
    GEMM, bf16 out. Inputs arrive in bf16 and are quantized here."""

    dtype = torch.bfloat16
    tolerance = 6e-2  # FP8 (e4m3) quantization of both operands
    multiples = (64, 128, 64)

    @staticmethod
    def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize_rowwise_fp8(x)

    @classmethod
    def quantize_t(cls, b: torch.Tensor, perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise FP8 of b[perm]ᵀ (N x K): the GEMMs' second operand, one scale per output column."""
        return cls.quantize((b if perm is None else b[perm]).t().contiguous())

    gemm8 = staticmethod(scaled_mm_rowwise)

    def mm(self, a, b):
        return self.gemm8(*self.quantize(a), *self.quantize_t(b))
