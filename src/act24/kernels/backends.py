"""Choosing a 2:4 GEMM backend: the registry of every backend by name, the correctness check each must pass
before it is trusted (`check_backend`), and `select_backend`, the one place where training, evaluation and the
benchmarks turn a backend name into a backend. The backends themselves: `backend` (the base and the reference),
`stock` (as PyTorch and xformers ship them), `fused_fp8` (the fused kernels feeding one of `sparse_fp8_gemms`)."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import torch

from ..io import SetupError
from ..sparsity.pattern import mask24
from .backend import Backend, BackendStatus, ReferenceBackend
from .fused_fp8 import fused_fp8_auto, fused_fp8_cusparselt, fused_fp8_sm90, fused_fp8_tuned
from .stock import CuSparseLtBackend, XformersCusparseLtBackend, XformersCutlassBackend, XformersFp8Sm90Backend

__all__ = ["AUTO_ORDER", "BACKENDS", "Backend", "BackendStatus", "BackendUnavailable", "ReferenceBackend",
           "backend_statuses", "check_backend", "get_backend", "random_24_operand", "select_backend"]

# One maker per name of act24.config.BACKEND_NAMES (the names the config accepts; a test checks they agree).
BACKENDS: dict[str, Callable[[], Backend]] = {
    "reference": ReferenceBackend, "cusparselt": CuSparseLtBackend, "xformers_cutlass": XformersCutlassBackend,
    "xformers_cusparselt": XformersCusparseLtBackend, "xformers_fp8_sm90": XformersFp8Sm90Backend,
    "fused_fp8_sm90": fused_fp8_sm90, "fused_fp8_cusparselt": fused_fp8_cusparselt,
    "fused_fp8_tuned": fused_fp8_tuned, "fused_fp8_auto": fused_fp8_auto,
}
# Preference order of `select_backend("auto")` on a GPU: the fused FP8 path where it runs (Hopper; per GEMM shape the
# faster correct GEMM), else bf16.
AUTO_ORDER = ("fused_fp8_auto", "cusparselt", "xformers_cutlass")


def get_backend(name: str) -> Backend:
    if name not in BACKENDS:
        raise ValueError(f"unknown 2:4 backend {name!r}; expected one of {', '.join(BACKENDS)}")
    return BACKENDS[name]()


def random_24_operand(m: int, k: int, device, dtype, gen: torch.Generator) -> torch.Tensor:
    """relu(.)^2 of Gaussian values, then a 2:4 mask along K: shaped like the FFN's sparse activations."""
    x = torch.randn(m, k, generator=gen, device="cpu").clamp(min=0).square()
    return (x * mask24(x)).to(device=device, dtype=dtype)


def check_backend(backend: Backend, shapes=((256, 512, 128), (512, 256, 384), (1024, 1024, 256)),
                  device: str | torch.device | None = None, seed: int = 0,
                  operands: list[tuple[torch.Tensor, torch.Tensor]] | None = None) -> BackendStatus:
    """Probe `backend`, then compare it with float64 dense math on fresh random 2:4 operands of `shapes`
    (and on `operands`, e.g. trained-model activations, if given). Never raises for a failing backend."""
    status = BackendStatus(backend.name, backend.description, available=False, tolerance=backend.tolerance)
    why = backend.probe()
    if why:
        return dataclasses.replace(status, reason=why)
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    dtype = backend.dtype or torch.float32
    gen = torch.Generator().manual_seed(seed)
    cases = [(random_24_operand(m, k, device, dtype, gen),
              torch.randn(k, n, generator=gen).to(device=device, dtype=dtype)) for m, k, n in shapes]
    cases += [(a.to(device=device, dtype=dtype), b.to(device=device, dtype=dtype)) for a, b in operands or []]
    worst, where = 0.0, ""
    # mm24 on 2:4 operands, then the backend's dense mm on the first case made dense.
    dense_a = cases[0][0] + (cases[0][0] == 0) * torch.randn(cases[0][0].shape, generator=gen).to(device, dtype) \
        if cases else None
    calls = [(backend.mm24, a, b, "mm24") for a, b in cases]
    calls += [(backend.mm, dense_a, cases[0][1], "mm")] if cases else []
    for fn, a, b, what in calls:
        try:
            out = fn(a, b)
        except Exception as exc:  # a kernel error is a status to report
            return dataclasses.replace(status, available=True, rel_error=math.inf, reason=(
                f"{what} raised on {tuple(a.shape)} @ {tuple(b.shape)}: {type(exc).__name__}: {exc}"))
        ref = a.double() @ b.double()
        err = float((out.double() - ref).norm() / ref.norm().clamp(min=1e-30))
        if not torch.isfinite(out).all():
            err = math.inf
        if err > worst or not math.isfinite(err):
            worst, where = err, f"{what} {tuple(a.shape)} @ {tuple(b.shape)}"
    reason = f"relative error {worst:.3g} > {backend.tolerance:g} at {where}" if worst > backend.tolerance else ""
    return dataclasses.replace(status, available=True, rel_error=worst, reason=reason)


def backend_statuses(**kwargs) -> list[BackendStatus]:
    return [check_backend(make(), **kwargs) for make in BACKENDS.values()]


class BackendUnavailable(SetupError):
    """A named backend cannot run here (the message says why)."""


def select_backend(name: str, device: torch.device | str, check: bool = True) -> tuple[Backend, str]:
    """The backend to use and a sentence saying why (written to the run's log and summary): the one place where
    training, evaluation and the benchmarks turn a backend name into a backend.

    'auto' picks the reference on CPU and the first correct GPU backend of AUTO_ORDER on CUDA. A named backend must
    run here and, with `check`, pass its correctness check (`check_backend`), else BackendUnavailable says why.
    Without `check` only the capability probe runs: for callers that check every result themselves (the GPU
    benchmark's gate)."""
    device = torch.device(device)
    if name == "auto":
        if device.type != "cuda":
            return ReferenceBackend(), "auto: reference (not on a CUDA device)"
        rejected = []
        for candidate in AUTO_ORDER:
            status = check_backend(get_backend(candidate), device=device)
            if status.usable:
                return get_backend(candidate), (f"auto: {candidate} (correctness check ok, rel. error "
                                                f"{status.rel_error:.2g})")
            rejected.append(f"{candidate}: {status.verdict}")
        return ReferenceBackend(), "auto: reference, no GPU 2:4 backend usable (" + "; ".join(rejected) + ")"
    backend = get_backend(name)
    if name == "reference":
        return backend, "reference (requested)"
    if not check:
        if why := backend.probe():
            raise BackendUnavailable(f"unavailable: {why}")
        return backend, f"{name} (requested; probe ok, results checked by the caller)"
    status = check_backend(backend, device=device)
    if not status.usable:
        raise BackendUnavailable(f"2:4 backend {name!r} cannot be used here: {status.verdict}")
    return backend, f"{name} (requested; correctness check ok, rel. error {status.rel_error:.2g})"
