"""The 2:4 GEMM backends: `mm24(a, b) = a @ b` with `a` already 2:4 sparse along K."""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass

import torch

from ..io import SetupError
from ..sparsity.pattern import mask24
from . import cslt_layout, cusparselt, sm90_gemm, sm90_layout, timing
from .cuda12 import import_xformers_ops
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


def _cuda_capability() -> tuple[int, int] | None:
    return torch.cuda.get_device_capability() if torch.cuda.is_available() else None


def _cusparselt_missing() -> str:
    cap = _cuda_capability()
    if cap is None:
        return "no CUDA device"
    if cap < (8, 0):
        return f"needs compute capability >= 8.0, device has {cap[0]}.{cap[1]}"
    if not torch.backends.cusparselt.is_available():
        return "this torch build has no cuSPARSELt"
    return ""


class CuSparseLtBackend(Backend):
    name = "cusparselt"
    description = ("PyTorch's cuSPARSELt: torch._cslt_compress + torch._cslt_sparse_mm with the algorithm searched "
                   "per shape, each checked first (bf16, sm80+)")
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (16, 16, 8)

    def probe(self):
        return _cusparselt_missing()

    def mm24(self, a, b):
        return cusparselt.sparse_mm(torch._cslt_compress(a), b, a.shape[0])

    def gemm_choices(self):
        return cusparselt.choices()


class XformersCutlassBackend(Backend):
    name = "xformers_cutlass"
    description = "xformers CUTLASS 2:4 GEMM: sparse24_sparsify_both_ways + _sparse24_gemm (bf16, sm80 only)"
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (32, 64, 8)

    def probe(self):
        ops, why = import_xformers_ops()
        if ops is None:
            return why
        cap = _cuda_capability()
        if cap[0] != 8:
            return f"xformers' _sparse24_gemm supports compute capability 8.x only, device has {cap[0]}.{cap[1]}"
        return ""

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        packed, meta, *_ = ops.sparse24_sparsify_both_ways(a, algorithm="", backend="cutlass")
        return ops._sparse24_gemm(packed, b, meta)[: a.shape[0]]


class XformersCusparseLtBackend(Backend):
    name = "xformers_cusparselt"
    description = ("xformers' packing for cuSPARSELt (sparse24_sparsify_both_ways backend='cusparselt') + "
                   "torch._cslt_sparse_mm; known to be wrong on sm90, so it is checked, never trusted")
    dtype = torch.bfloat16
    tolerance = 2e-2
    multiples = (16, 16, 8)

    def probe(self):
        ops, why = import_xformers_ops()
        if ops is None:
            return why
        if _cuda_capability() < (8, 0):
            return "needs compute capability >= 8.0"
        return ""

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        packed, *_ = ops.sparse24_sparsify_both_ways(a, algorithm="", backend="cusparselt")
        return torch._cslt_sparse_mm(packed, b)


class XformersFp8Sm90Backend(Backend):
    name = "xformers_fp8_sm90"
    description = ("xformers FP8 on sm90: _sparse24_sm90_cutlass_compress + _sparse24_fp8_sm90_cutlass_gemm, "
                   "row-wise scales for a, column-wise for b; bf16 output")
    dtype = torch.bfloat16  # inputs arrive in bf16 and are quantized here
    tolerance = 6e-2  # FP8 (e4m3) quantization of both operands
    multiples = (64, 128, 64)

    def probe(self):
        ops, why = import_xformers_ops()
        if ops is None:
            return why
        if why := _sm90_missing():
            return why
        if not hasattr(ops, "_sparse24_fp8_sm90_cutlass_gemm"):
            return "this xformers build has no _sparse24_fp8_sm90_cutlass_gemm"
        return ""

    @staticmethod
    def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return quantize_rowwise_fp8(x)

    @classmethod
    def quantize_t(cls, b: torch.Tensor, perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Row-wise FP8 of b[perm]ᵀ (N x K): the GEMMs' second operand, one scale per output column."""
        return cls.quantize((b if perm is None else b[perm]).t().contiguous())

    def mm(self, a, b):
        return self.gemm8(*self.quantize(a), *self.quantize_t(b))

    gemm8 = staticmethod(scaled_mm_rowwise)

    def mm24(self, a, b):
        ops, _ = import_xformers_ops()
        a8, a_scale = self.quantize(a)
        bt8, b_scale = self.quantize_t(b)
        packed, meta = ops._sparse24_sm90_cutlass_compress(a8)
        # The kernel takes b as the transpose of a contiguous (N x K) tensor ("row-major" in its terms; a
        # contiguous (K x N) b is rejected), and scales shaped (M, 1) and (1, N).
        return ops._sparse24_fp8_sm90_cutlass_gemm(packed, meta, bt8.t(), a_scale=a_scale,
                                                   b_scale=b_scale.t().contiguous())


class FusedFp8Sm90Backend(XformersFp8Sm90Backend):
    """Our fused Triton sparsify kernels (act24.kernels.fused) feeding xformers' sm90 FP8 sparse GEMM. The sparse
    FFN runs its fused forward and backward on it (act24.ffn.fused); `mm24` packs an already 2:4
    operand with the same kernel (no CUTLASS compressor). Subclasses feed other GEMMs (`gemm_for` names one per GEMM
    shape): the kernels write the layout that GEMM reads (`layout_for`), and `packed_gemm` runs it."""

    name = "fused_fp8_sm90"
    description = ("act24's fused Triton sparsify (relu² + 2:4 + row-wise FP8 + sm90 packing in one pass) + "
                   "xformers' _sparse24_fp8_sm90_cutlass_gemm; bf16 output")
    fused = True

    def probe(self):
        return _triton_missing() or super().probe()

    gemm = "xformers"  # the 2:4 FP8 GEMM it feeds (a key of GEMM_LAYOUTS)

    def gemm_for(self, m: int, k: int, n: int) -> str:
        """The 2:4 FP8 GEMM that runs (M x K, 2:4) @ (K x N)."""
        return self.gemm

    def layout_for(self, m: int, k: int, n: int) -> str:
        """The packed layout of the sparse operand of the (M x K) @ (K x N) GEMM: the one its GEMM reads."""
        return GEMM_LAYOUTS[self.gemm_for(m, k, n)]

    # The same bits as the stock backend's quantization, in single Triton passes where the shape allows.
    @staticmethod
    def quantize(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        from .fused import quantize_fits, quantize_rows

        return quantize_rows(x) if quantize_fits(x) else quantize_rowwise_fp8(x)

    @classmethod
    def quantize_t(cls, b: torch.Tensor, perm: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        from .fused import quantize_transposed, transposed_fits

        if perm is None and b.t().is_contiguous():
            return cls.quantize(b.t())
        if transposed_fits(b):
            return quantize_transposed(b, perm)
        return super().quantize_t(b, perm)

    def sparse_gemm(self, a, b: torch.Tensor) -> torch.Tensor:
        """a @ b for a packed 2:4 FP8 operand `a` (kernels.fused.Packed24) and a dense bf16 `b` (K x N)."""
        bt8, b_scale = self.quantize_t(b)
        return self.packed_gemm(a, bt8.t(), b_scale.t().contiguous())

    def packed_gemm(self, a, b8: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
        """The 2:4 FP8 GEMM of a packed operand `a` (Packed24, in the layout of `gemm_for`), b8 (K x N, FP8, the
        transpose of a contiguous (N x K)) and b_scale (1 x N); bf16 out."""
        return run_packed_gemm(self.gemm_for(a.values.shape[0], 2 * a.values.shape[1], b8.shape[1]), a, b8, b_scale)

    def mm24(self, a, b):
        from .fused import PLAIN, sparsify24_rows

        layout = self.layout_for(a.shape[0], a.shape[1], b.shape[1])
        return self.sparse_gemm(sparsify24_rows(a.to(torch.bfloat16), mode=PLAIN, layout=layout)[0], b)


# The 2:4 FP8 GEMMs the fused kernels feed, and the packed layout each reads.
GEMM_LAYOUTS = {"xformers": sm90_layout.NAME, "act24": sm90_layout.NAME, "cusparselt": cslt_layout.NAME}


def run_packed_gemm(gemm: str, a, b8: torch.Tensor, b_scale: torch.Tensor) -> torch.Tensor:
    """`gemm`'s 2:4 FP8 GEMM (a key of GEMM_LAYOUTS) on a packed operand `a` in its layout; see `packed_gemm`."""
    if a.layout != GEMM_LAYOUTS[gemm]:
        raise ValueError(f"the {gemm} 2:4 GEMM reads the {GEMM_LAYOUTS[gemm]} layout, the operand is in {a.layout}")
    if gemm == "cusparselt":
        return cusparselt.fp8_gemm(a.buffer, b8, a.scale, b_scale)
    if gemm == "act24":
        return sm90_gemm.sparse_fp8_gemm(a.values, a.meta, b8, a.scale.reshape(-1), b_scale.reshape(-1))
    ops, _ = import_xformers_ops()
    return ops._sparse24_fp8_sm90_cutlass_gemm(a.values, a.meta, b8, a_scale=a.scale, b_scale=b_scale)


def _triton_missing() -> str:
    try:
        import triton  # noqa: F401
    except ImportError:
        return "triton is not installed"
    return ""


def _sm90_missing() -> str:
    cap = _cuda_capability()
    if cap != (9, 0):
        if cap is None:
            return "no CUDA device"
        return f"needs compute capability 9.0 (Hopper), device has {cap[0]}.{cap[1]}"
    return ""


class FusedFp8CusparseltBackend(FusedFp8Sm90Backend):
    """The fused kernels writing cuSPARSELt's layout (`cslt_layout`), its FP8 GEMM with the algorithm searched per
    shape (`kernels.cusparselt`), the row-wise scales applied to its output in one pass."""

    name = "fused_fp8_cusparselt"
    description = ("act24's fused Triton sparsify writing cuSPARSELt's sm90 layout + torch._cslt_sparse_mm (FP8, "
                   "algorithm searched and checked per shape) + one pass applying the row-wise scales; bf16 output")
    multiples = (64, 64, 16)

    def probe(self):
        return _triton_missing() or _sm90_missing() or _cusparselt_missing()

    gemm = "cusparselt"

    def gemm_choices(self):
        return cusparselt.choices()


class FusedFp8TunedBackend(FusedFp8Sm90Backend):
    """The fused kernels feeding act24's own sm90a 2:4 FP8 GEMM (`kernels.sm90_gemm`): CUTLASS 3.x, the row-wise
    scales in its epilogue, its tile, cluster, schedule, raster order and swizzle chosen per shape."""

    name = "fused_fp8_tuned"
    description = ("act24's fused Triton sparsify + act24's sm90a CUTLASS 2:4 FP8 GEMM (row-wise scales in the "
                   "epilogue; kernel searched and checked per shape; built just in time with nvcc); bf16 output")
    gemm = "act24"

    def probe(self):
        return _triton_missing() or _sm90_missing() or sm90_gemm.missing()

    def gemm_choices(self):
        return sm90_gemm.choices()


class FusedFp8AutoBackend(FusedFp8Sm90Backend):
    """The fused kernels feeding, per GEMM shape, the fastest of the 2:4 FP8 GEMMs that gives correct results there:
    xformers' CUTLASS, act24's sm90a CUTLASS or cuSPARSELt's. Each shape is decided once per process
    (`choose_gemm`)."""

    name = "fused_fp8_auto"
    description = ("act24's fused Triton sparsify feeding, per GEMM shape, the fastest correct 2:4 FP8 GEMM: "
                   "xformers' CUTLASS, act24's sm90a CUTLASS (tuned) or cuSPARSELt (searched algorithm); the "
                   "choices go to the run's log and summary")
    choices: dict[tuple[int, int, int], dict] = {}  # shared by every instance: one decision per shape and process

    def probe(self):
        missing = {gemm: why for gemm, why in self.gemms().items() if why}
        if len(missing) == len(GEMM_LAYOUTS):
            return "no 2:4 FP8 GEMM runs here: " + "; ".join(f"{k}: {v}" for k, v in missing.items())
        return _triton_missing() or _sm90_missing()

    @staticmethod
    def gemms() -> dict[str, str]:
        """GEMM -> '' when it runs here, else why not."""
        return {"xformers": XformersFp8Sm90Backend().probe(), "act24": _sm90_missing() or sm90_gemm.missing(),
                "cusparselt": _sm90_missing() or _cusparselt_missing()}

    def gemm_for(self, m, k, n):
        if (m, k, n) not in self.choices:
            self.choices[m, k, n] = choose_gemm(self, m, k, n)
            print(f"2:4 FP8 GEMM {m} x {k} x {n}: {self.choices[m, k, n]['note']}", flush=True)
        return self.choices[m, k, n]["gemm"]

    def gemm_choices(self):
        return {**{f"{m} x {k} x {n}": c["note"] for (m, k, n), c in self.choices.items()},
                **{f"cuSPARSELt {shape}": alg for shape, alg in cusparselt.choices().items()},
                **{f"act24 sm90a {shape}": launch for shape, launch in sm90_gemm.choices().items()}}


def choose_gemm(backend: FusedFp8Sm90Backend, m: int, k: int, n: int, calls: int = 10, seed: int = 0) -> dict:
    """Run every 2:4 FP8 GEMM that runs here on a random 2:4 (M x K) @ (K x N) packed by the fused kernel in its
    layout, check each against the dense FP8 GEMM of the same quantized operands, time the correct ones (median of
    `calls`) and pick the fastest: {"gemm", "note"}. RuntimeError when none is correct."""
    from .fused import PLAIN, sparsify24_rows

    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", generator=g, dtype=torch.bfloat16)
    a = a * mask24(a)
    bt8, b_scale = backend.quantize_t(torch.randn(k, n, device="cuda", generator=g, dtype=torch.bfloat16))
    ref = scaled_mm_rowwise(*quantize_rowwise_fp8(a), bt8, b_scale)
    b8, b_row = bt8.t(), b_scale.t().contiguous()
    seen, times = [], {}
    for gemm, why in FusedFp8AutoBackend.gemms().items():
        if why:
            seen.append(f"{gemm} unavailable ({why})")
            continue
        try:
            packed = sparsify24_rows(a, mode=PLAIN, layout=GEMM_LAYOUTS[gemm])[0]
            run = functools.partial(run_packed_gemm, gemm, packed, b8, b_row)
            err = timing.rel_error(run(), ref)
        except Exception as exc:  # a failing kernel is a result
            seen.append(f"{gemm} failed ({type(exc).__name__}: {str(exc)[:100]})")
            continue
        if not err <= cusparselt.TOLERANCE:
            seen.append(f"{gemm} wrong (relative error {err:.2g})")
            continue
        times[gemm] = timing.event_ms(run, calls=calls)
        how = {"cusparselt": lambda: cusparselt.search(m, k, n, torch.float8_e4m3fn).describe(),
               "act24": lambda: sm90_gemm.search(m, k, n).describe()}.get(gemm)
        seen.append(f"{gemm} {times[gemm]:.3f} ms" + (f", {how()}" if how else ""))
    if not times:
        raise RuntimeError(f"2:4 FP8 GEMM {m} x {k} x {n}: no GEMM gives correct results here: " + "; ".join(seen))
    best = min(times, key=times.get)
    return {"gemm": best, "note": f"{best} (" + "; ".join(seen) + ")"}


# One class per name of act24.config.BACKEND_NAMES (the names the config accepts; a test checks they agree).
BACKENDS: dict[str, type[Backend]] = {
    cls.name: cls
    for cls in (ReferenceBackend, CuSparseLtBackend, XformersCutlassBackend, XformersCusparseLtBackend,
                XformersFp8Sm90Backend, FusedFp8Sm90Backend, FusedFp8CusparseltBackend, FusedFp8TunedBackend,
                FusedFp8AutoBackend)
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
    return [check_backend(cls(), **kwargs) for cls in BACKENDS.values()]


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
                return get_backend(candidate), f"auto: {candidate} (correctness check ok, rel. error {status.rel_error:.2g})"
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
