"""GPU benchmarks mirroring the paper's Fig. 5 (FFN speedup vs tokens) and Fig. 6 (split GEMM), plus the
GEMM-level and sparsify-step tables, with a correctness gate and measured ceilings, all in one run.

Every sparse result is compared with the dense masked reference on the same inputs before it is timed; a
failing path is written as a row with status "incorrect: ..." and no time. Times are medians of
`triton.testing.do_bench` (CUDA events). Speedups are ratios of times measured side by side in this run.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

from .kernels.backends import (CuSparseLtBackend, FusedFp8Sm90Backend, ReferenceBackend, XformersFp8Sm90Backend,
                               quantize_rowwise_fp8)
from .kernels.cuda12 import import_xformers_ops
from .sparsity.ffn import SparseRecipe, dense_sqrelu_ffn, sparse_sqrelu_ffn
from .sparsity.pattern import feature_split, mask24

def _dense_ffn(x, w1, w2):
    return F.linear(F.relu(F.linear(x, w1)).square(), w2)


# Compiled baselines are specialised to each shape (dynamic=False): after a second shape, torch.compile would
# otherwise switch to dynamic-shape code, measured 1.6x slower for the FP8 forward+backward on an H200, or fall
# back to eager once the recompile limit is reached. One entry per benchmarked shape fits in the limit below.
torch._dynamo.config.cache_size_limit = max(torch._dynamo.config.cache_size_limit, 64)

# The dense baseline at its best: cuBLAS GEMMs with the activation fused by inductor.
COMPILED_DENSE_FFN = torch.compile(_dense_ffn, dynamic=False)


def _dense_fp8_forward(x, w1, w2):
    mm = XformersFp8Sm90Backend().mm  # row-wise FP8 operands, bf16 out, as the sparse FFN's dense GEMMs
    return mm(F.relu(mm(x, w1.t())).square(), w2.t())


def _dense_fp8_step(x, w1, w2, dy):
    """Forward and backward of the dense FP8 FFN written out (DenseSqReluFFNFunction's math), for inductor to
    fuse the activation, its derivative and every quantization into the neighbouring kernels."""
    mm = XformersFp8Sm90Backend().mm
    y1 = mm(x, w1.t())
    y2 = F.relu(y1).square()
    y3 = mm(y2, w2.t())
    dy1 = mm(dy, w2) * (2 * F.relu(y1))
    return y3, mm(dy1, w1), mm(dy1.t().contiguous(), x), mm(dy.t().contiguous(), y2)


# The dense FP8 baseline at its best: FP8 GEMMs, everything between them fused by inductor.
COMPILED_DENSE_FP8_FORWARD = torch.compile(_dense_fp8_forward, dynamic=False)
COMPILED_DENSE_FP8_STEP = torch.compile(_dense_fp8_step, dynamic=False)


@dataclass(frozen=True)
class GpuBenchConfig:
    # FFN shapes: name -> (d_model, F of the parameter-matched Squared-ReLU FFN).
    shapes: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "1.5B-like": (2048, 8448), "7B-like": (4096, 16512)})
    tokens: tuple[int, ...] = (1024, 2048, 4096, 8192, 16384, 32768, 65536)
    sweep_zero_frac: float = 0.95  # share of zeros of the synthetic activations in the token sweep
    # At `extra_tokens` only: more sparsity levels, and the GEMM and sparsify-step tables.
    extra_zero_fracs: tuple[float, ...] = (0.5, 0.85)
    extra_tokens: int = 16384
    rep_ms: int = 200
    warmup_ms: int = 25
    # FFN paths of one pass are timed in this many round-robin rounds of rep_ms / rounds each, and the median of
    # the rounds kept: dense and sparse then see the same spread of GPU power states (an H200 near its 700 W
    # limit lowers its clock; the dense FP8 step varied 12.9-14.9 ms between calls, reference/h200/fused/).
    rounds: int = 1
    dense_fraction: float = 0.05
    split_multiple: int = 128
    # Relative error allowed for bf16 paths (FP8: 2x). Rounding flips some 2:4 choices, so correct paths
    # land at 0.01-0.07 against the fp32 reference; a wrong kernel lands near 1.
    tolerance: float = 0.1
    # Optional: per-feature densities of a trained Squared-ReLU model (an .npz with `density`, layers x
    # features, as written by training); its `trained_layer` profile, resampled to F, is benchmarked at
    # `extra_tokens` beside the synthetic levels.
    trained_profile: str | None = None
    trained_layer: int = 2


def trained_zero_fracs(cfg: GpuBenchConfig, f: int, seed: int = 0) -> torch.Tensor:
    """Per-feature zero fractions (f,) following the trained profile's distribution, features shuffled."""
    import numpy as np

    with np.load(cfg.trained_profile) as z:
        density = np.sort(z["density"][cfg.trained_layer])
    density = np.interp(np.linspace(0, 1, f), np.linspace(0, 1, len(density)), density)
    density = np.clip(density, 1e-4, 1 - 1e-4)[np.random.default_rng(seed).permutation(f)]
    return torch.tensor(1 - density, dtype=torch.float32)


def label(zero_frac) -> dict:
    """Row columns for a sparsity level: a float (synthetic, uniform) or per-feature zero fractions."""
    if isinstance(zero_frac, torch.Tensor):
        return {"activations": "trained profile", "zero_frac": round(float(zero_frac.mean()), 4)}
    return {"activations": "synthetic", "zero_frac": zero_frac}


def bench_ms(fn: Callable[[], object], cfg: GpuBenchConfig, rep_ms: float | None = None) -> float:
    """Median milliseconds of `fn` (CUDA events via triton.testing.do_bench)."""
    from triton.testing import do_bench

    return float(do_bench(fn, warmup=cfg.warmup_ms, rep=rep_ms or cfg.rep_ms, return_mode="median"))


def time_rounds(pending: list[tuple[dict, Callable[[float], float]]], cfg: GpuBenchConfig) -> None:
    """Time the rows `gated` left pending: cfg.rounds round-robin rounds over all of them, each timer given
    rep_ms / rounds, then each row's median over the rounds."""
    times: list[list[float]] = [[] for _ in pending]
    for _ in range(cfg.rounds):
        for i, (_, time_it) in enumerate(pending):
            times[i].append(time_it(max(cfg.rep_ms / cfg.rounds, 1.0)))
    for (row, _), t in zip(pending, times):
        row["ms"] = statistics.median(t)
    pending.clear()


def rel_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    if not torch.isfinite(out).all():
        return math.inf
    return float((out.double() - ref.double()).norm() / ref.double().norm().clamp(min=1e-30))


def ceilings(cfg: GpuBenchConfig) -> dict[str, float]:
    """Device copy bandwidth (bytes read + written) and dense bf16 GEMM throughput, measured here."""
    src = torch.randn(256 * 2**20, device="cuda", dtype=torch.bfloat16)  # 512 MiB
    dst = torch.empty_like(src)
    copy_ms = bench_ms(lambda: dst.copy_(src), cfg)
    a = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    b = torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16)
    mm_ms = bench_ms(lambda: a @ b, cfg)
    return {"copy_GBps": 2 * src.numel() * 2 / copy_ms / 1e6, "dense_bf16_TFLOPs": 2 * 8192**3 / mm_ms / 1e9}


def ffn_inputs(t: int, d: int, f: int, zero_frac, seed: int = 0):
    """x (t x d), W1 (f x d), W2 (d x f), dY (t x d) in bf16 on the GPU, never zeros. W1's first column
    and x's first feature (constant 1) shift Y1 so that a `zero_frac` share of relu(Y1) is zero (a float,
    or one value per feature)."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    x = torch.randn(t, d, device="cuda", generator=g)
    x[:, 0] = 1.0
    w1 = torch.randn(f, d, device="cuda", generator=g) / math.sqrt(d - 1)
    keep = 1.0 - torch.as_tensor(zero_frac, dtype=torch.float32)
    w1[:, 0] = -torch.distributions.Normal(0.0, 1.0).icdf(keep).to("cuda")
    w2 = torch.randn(d, f, device="cuda", generator=g) / math.sqrt(f * float(keep.mean()))
    dy = torch.randn(t, d, device="cuda", generator=g)
    return [v.bfloat16() for v in (x, w1, w2, dy)]


def gated(rows: list[dict], base: dict, check: Callable[[], float], tol: float, time_it: Callable[..., float],
          pending: list | None = None):
    """Append a row: the correctness check first; only a correct path is timed. With `pending`, a correct row
    is timed later by `time_rounds` (time_it then takes the milliseconds of repeats to run)."""
    try:
        err = check()
    except Exception as exc:  # a failing kernel is a result to report
        rows.append({**base, "status": f"failed: {type(exc).__name__}: {str(exc)[:200]}", "rel_error": math.nan,
                     "ms": math.nan})
        return
    if not err <= tol:
        rows.append({**base, "status": f"incorrect: relative error {err:.3g} > {tol}", "rel_error": err,
                     "ms": math.nan})
        return
    if pending is None:
        rows.append({**base, "status": "ok", "rel_error": err, "ms": time_it()})
    else:
        rows.append({**base, "status": "ok", "rel_error": err, "ms": math.nan})
        pending.append((rows[-1], time_it))


def gemm_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, shape: str) -> list[dict]:
    """The down-projection GEMM Y3 = Ỹ2 W2ᵀ (M = T, K = F, N = d), dense and 2:4, bf16 and FP8."""
    x, w1, w2, _ = ffn_inputs(t, d, f, zero_frac)
    y2 = F.relu(x @ w1.t()).square()
    y2s = y2 * mask24(y2)
    ref = y2s.float() @ w2.t().float()
    base = {"shape": shape, "M": t, "K": f, "N": d, **label(zero_frac)}
    rows: list[dict] = []
    cusp, fp8 = CuSparseLtBackend(), XformersFp8Sm90Backend()
    w2t = w2.t()
    gated(rows, {**base, "gemm": "dense bf16"}, lambda: rel_error(y2s @ w2t, ref), cfg.tolerance,
          lambda: bench_ms(lambda: y2s @ w2t, cfg))
    if not cusp.probe():
        packed = torch._cslt_compress(y2s)
        gated(rows, {**base, "gemm": "2:4 bf16 cuSPARSELt"},
              lambda: rel_error(torch._cslt_sparse_mm(packed, w2t), ref), cfg.tolerance,
              lambda: bench_ms(lambda: torch._cslt_sparse_mm(packed, w2t), cfg))
    else:
        rows.append({**base, "gemm": "2:4 bf16 cuSPARSELt", "status": f"unavailable: {cusp.probe()}"})
    if not fp8.probe():
        a8, a_scale = quantize_rowwise_fp8(y2s)
        w8, w_scale = quantize_rowwise_fp8(w2)  # (d x F): one scale per output column of W2ᵀ
        w_scale_t = w_scale.t().contiguous()
        dense8 = lambda: torch._scaled_mm(a8, w8.t(), scale_a=a_scale, scale_b=w_scale_t,  # noqa: E731
                                          out_dtype=torch.bfloat16, use_fast_accum=True)
        gated(rows, {**base, "gemm": "dense FP8 (row-wise scales)"}, lambda: rel_error(dense8(), ref),
              2 * cfg.tolerance, lambda: bench_ms(dense8, cfg))
        ops, _ = import_xformers_ops()
        packed8, meta8 = ops._sparse24_sm90_cutlass_compress(a8)
        sparse8 = lambda: ops._sparse24_fp8_sm90_cutlass_gemm(packed8, meta8, w8.t(), a_scale=a_scale,  # noqa: E731
                                                              b_scale=w_scale_t)
        gated(rows, {**base, "gemm": "2:4 FP8 xformers sm90"}, lambda: rel_error(sparse8(), ref),
              2 * cfg.tolerance, lambda: bench_ms(sparse8, cfg))
    else:
        for g in ("dense FP8 (row-wise scales)", "2:4 FP8 xformers sm90"):
            rows.append({**base, "gemm": g, "status": f"unavailable: {fp8.probe()}"})
    for r in rows:
        if r["status"] == "ok":
            r["TFLOPs_dense_equivalent"] = 2 * t * f * d / r["ms"] / 1e9
    return rows


def sparsify_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, copy_gbps: float) -> list[dict]:
    """The sparsify step alone (Y1 -> what the sparse GEMM consumes), and the backward's fused steps. Achieved
    GB/s counts the fewest bytes each step must move: its inputs read once (Y1 in bf16 for the forward) and its
    outputs written once (dense bf16 for the mask alone; half the values plus 4 bits of metadata per group of 4
    once packed). Each output is checked through the GEMM it feeds, or bit for bit against CUTLASS's packing."""
    x, w1, w2, _ = ffn_inputs(t, d, f, zero_frac)
    y1 = x @ w1.t()
    masked_ref = F.relu(y1.float()).square()
    masked_ref = masked_ref * mask24(masked_ref)
    gemm_ref = masked_ref @ w2.t().float()
    relu2_mask = torch.compile(lambda y: (lambda y2: y2 * mask24(y2))(F.relu(y).square()), dynamic=False)
    w2t = w2.t()
    # name: (step, check of its output, bytes read and written per element of Y1, tolerance)
    steps = {"relu² + 2:4 mask, dense output (torch.compile)": (
        lambda: relu2_mask(y1), lambda: rel_error(relu2_mask(y1), masked_ref), 2 + 2.0, cfg.tolerance)}
    if not CuSparseLtBackend().probe():
        steps["relu² + 2:4 mask + cuSPARSELt compress (bf16)"] = (
            lambda: torch._cslt_compress(relu2_mask(y1)),
            lambda: rel_error(torch._cslt_sparse_mm(torch._cslt_compress(relu2_mask(y1)), w2t), gemm_ref),
            2 + 1.0 + 1 / 8, cfg.tolerance)
    if not XformersFp8Sm90Backend().probe():
        ops, _ = import_xformers_ops()
        w8, w_scale = quantize_rowwise_fp8(w2)

        def fp8_step():
            a8, a_scale = quantize_rowwise_fp8(relu2_mask(y1))
            return ops._sparse24_sm90_cutlass_compress(a8), a_scale

        def fp8_check():
            (packed, meta), a_scale = fp8_step()
            out = ops._sparse24_fp8_sm90_cutlass_gemm(packed, meta, w8.t(), a_scale=a_scale,
                                                      b_scale=w_scale.t().contiguous())
            return rel_error(out, gemm_ref)

        steps["relu² + 2:4 mask + FP8 quantize + xformers sm90 compress"] = (
            fp8_step, fp8_check, 2 + 0.5 + 1 / 8, 2 * cfg.tolerance)
    if not FusedFp8Sm90Backend().probe():
        from .kernels import fused

        ops, _ = import_xformers_ops()
        w8, w_scale = quantize_rowwise_fp8(w2)
        y2 = F.relu(y1).square()
        masked_bf16 = y2 * mask24(y2)

        def same_as_cutlass(ours, a):  # 0 when our packing equals CUTLASS's compressor bit for bit, else inf
            values, meta = ops._sparse24_sm90_cutlass_compress(a)
            raw = torch.uint8 if a.dtype == torch.float8_e4m3fn else torch.int16
            same = torch.equal(ours.values.view(raw), values.view(raw)) and torch.equal(ours.meta, meta)
            return 0.0 if same else math.inf

        def fused_check():
            packed = fused.sparsify24_rows(y1)[0]
            if same_as_cutlass(packed, quantize_rowwise_fp8(masked_bf16)[0]) != 0.0:
                return math.inf
            out = FusedFp8Sm90Backend.packed_gemm(packed.values, packed.meta, w8.t(), packed.scale,
                                                  w_scale.t().contiguous())
            return rel_error(out, gemm_ref)

        steps[FUSED_FORWARD_STEP] = (
            lambda: fused.sparsify24_rows(y1), fused_check, 2 + 0.5 + 1 / 8, 2 * cfg.tolerance)
        steps["fused (act24, Triton): relu² + 2:4 + sm90 packing, bf16"] = (
            lambda: fused.sparsify24_rows(y1, fp8=False),
            lambda: same_as_cutlass(fused.sparsify24_rows(y1, fp8=False)[0], masked_bf16), 2 + 1.0 + 1 / 8, 0.0)

        def dense_check():
            y8, y_scale = fused.quantize_rows(y1, fused.FORWARD)
            out = torch._scaled_mm(y8, w8.t(), scale_a=y_scale, scale_b=w_scale.t().contiguous(),
                                   out_dtype=torch.bfloat16)
            return rel_error(out, F.relu(y1.float()).square() @ w2.t().float())

        steps["fused (act24, Triton): relu² + FP8, dense (the dense FFN's step)"] = (
            lambda: fused.quantize_rows(y1, fused.FORWARD), dense_check, 2 + 1.0, 2 * cfg.tolerance)
        grad = torch.randn_like(y1)
        dy1_ref = grad * (2 * F.relu(y1)) * mask24(y2)

        def backward_check():  # the kept forms decompress to the reference; the packing is CUTLASS's
            packed, dy1, y2s = fused.sparsify24_rows(y1, grad=grad, write_kept=True)
            if not (torch.equal(dy1.dense(), dy1_ref) and torch.equal(y2s.dense(), masked_bf16)):
                return math.inf
            return same_as_cutlass(packed, quantize_rowwise_fp8(dy1_ref)[0])

        steps["fused (act24, Triton): backward, dY1 = dY2 ⊙ 2 relu(Y1) ⊙ M FP8 packed + dY1, Ỹ2 kept"] = (
            lambda: fused.sparsify24_rows(y1, grad=grad, write_kept=True), backward_check,
            4 + (0.5 + 1 / 8) + 2 * 1.0 + 1 / 8, 0.0)
        kept = fused.sparsify24_rows(y1, write_kept=True)[1]  # masked_bf16 in the kept form, as the FFN has Ỹ2
        split = feature_split(masked_bf16, cfg.dense_fraction, cfg.split_multiple)
        perm = torch.randperm(t, device="cuda")

        def tokens_check():
            packed, _, _ = fused.sparsify24_tokens(kept, perm, *split)
            sp = masked_bf16[perm].t()[split[0]]
            return same_as_cutlass(packed, quantize_rowwise_fp8(sp * mask24(sp, dim=1))[0])

        frac = len(split[0]) / f
        steps["fused (act24, Triton): token-wise from the kept form, permute + transpose + 2:4 + FP8 + packing, "
              "95/5 split"] = (lambda: fused.sparsify24_tokens(kept, perm, *split), tokens_check,
                               1.0 + 1 / 8 + frac * (0.5 + 1 / 8) + (1 - frac) * 1.0, 0.0)
    # The step exactly as act24's sparse FFN forward runs it (eager mask24, then the backend's packing).
    for precision, backend in (("bf16", CuSparseLtBackend()), ("fp8", XformersFp8Sm90Backend())):
        if backend.probe():
            continue
        pack = (torch._cslt_compress if precision == "bf16"
                else lambda a: import_xformers_ops()[0]._sparse24_sm90_cutlass_compress(quantize_rowwise_fp8(a)[0]))

        def ffn_step(pack=pack):
            y2 = F.relu(y1).square()
            return pack(y2 * mask24(y2, dim=1))

        steps[f"as in act24's sparse FFN ({precision}): eager relu² + mask24 + pack"] = (
            ffn_step, lambda: rel_error(relu2_mask(y1), masked_ref),
            2 + (1.0 + 1 / 8 if precision == "bf16" else 0.5 + 1 / 8), cfg.tolerance)
    rows: list[dict] = []
    for name, (fn, check, bytes_moved, tol) in steps.items():
        gated(rows, {"T": t, "F": f, **label(zero_frac), "step": name}, check, tol,
              lambda fn=fn: bench_ms(fn, cfg))
        if rows[-1]["status"] == "ok":
            rows[-1]["GBps"] = t * f * bytes_moved / rows[-1]["ms"] / 1e6
            rows[-1]["share_of_copy_bandwidth"] = rows[-1]["GBps"] / copy_gbps
    return rows


def ffn_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, shape: str) -> list[dict]:
    """FFN forward and forward+backward: dense baseline against the 2:4 path, bf16 and FP8."""
    x, w1, w2, dy = ffn_inputs(t, d, f, zero_frac)
    recipe = SparseRecipe(dense_fraction=cfg.dense_fraction, split_multiple=cfg.split_multiple)
    ref_backend = ReferenceBackend()
    refs = {}  # fp32 references on the same inputs, shared by both precisions: (pass, dense|sparse) -> tensor
    for kind in ("dense", "sparse"):
        ffn = (lambda *a: dense_sqrelu_ffn(*a, ref_backend)) if kind == "dense" else (
            lambda *a: sparse_sqrelu_ffn(*a, recipe, ref_backend))
        ref_params = [v.float().requires_grad_() for v in (x, w1, w2)]
        y = ffn(*ref_params)
        y.backward(dy.float())
        refs["forward", kind], refs["forward+backward", kind] = y.detach(), ref_params[1].grad
        del y, ref_params
    rows: list[dict] = []
    fp8_sparse = {"2:4": XformersFp8Sm90Backend(), "2:4 fused": FusedFp8Sm90Backend()}
    for precision, sparse_backends in (("bf16", {"2:4": CuSparseLtBackend()}), ("fp8", fp8_sparse)):
        base = {"shape": shape, "T": t, "d": d, "F": f, **label(zero_frac), "precision": precision}
        for path, backend in list(sparse_backends.items()):
            if why := backend.probe():
                rows.append({**base, "pass": "forward", "path": path, "status": f"unavailable: {why}"})
                del sparse_backends[path]
        if not sparse_backends:
            continue
        tol = cfg.tolerance * (2 if precision == "fp8" else 1)
        dense_backend = XformersFp8Sm90Backend() if precision == "fp8" else ref_backend
        paths = ["dense", "dense (torch.compile)", *sparse_backends]

        def ffn(path, *args):
            if path in sparse_backends:
                return sparse_sqrelu_ffn(*args, recipe, sparse_backends[path])
            if path == "dense":
                return dense_sqrelu_ffn(*args, dense_backend)
            return (COMPILED_DENSE_FP8_FORWARD if precision == "fp8" else COMPILED_DENSE_FFN)(*args)

        pending = [] if cfg.rounds > 1 else None  # else each path is timed right after its check
        with torch.no_grad():
            for path in paths:
                fn = lambda path=path: ffn(path, x, w1, w2)  # noqa: E731
                ref = refs["forward", "sparse" if path.startswith("2:4") else "dense"]
                gated(rows, {**base, "pass": "forward", "path": path}, lambda fn=fn, ref=ref: rel_error(fn(), ref),
                      tol, lambda rep=None, fn=fn: bench_ms(fn, cfg, rep), pending)
            if pending:
                time_rounds(pending, cfg)
        params = [v.clone().requires_grad_() for v in (x, w1, w2)]

        def step(path):
            if path == "dense (torch.compile)" and precision == "fp8":
                return COMPILED_DENSE_FP8_STEP(x, w1, w2, dy)[2]
            for p in params:
                p.grad = None
            ffn(path, *params).backward(dy)
            return params[1].grad

        for path in paths:
            ref = refs["forward+backward", "sparse" if path.startswith("2:4") else "dense"]
            gated(rows, {**base, "pass": "forward+backward", "path": path},
                  lambda path=path, ref=ref: rel_error(step(path), ref), tol,
                  lambda rep=None, path=path: bench_ms(lambda: step(path), cfg, rep), pending)
        if pending:
            time_rounds(pending, cfg)
    return rows


FUSED_FORWARD_STEP = "fused (act24, Triton): relu² + 2:4 + FP8 + sm90 packing"


def sparsify_share(sparsify: list[dict], ffn: list[dict]) -> list[dict]:
    """Share of the 2:4 FFN forward time spent in its sparsify step (timed alone, as the FFN runs it)."""
    forward = {(r["shape"], r["T"], r["activations"], r["zero_frac"], r["precision"], r["path"]): r["ms"]
               for r in ffn if r.get("status") == "ok" and r["pass"] == "forward" and r["path"].startswith("2:4")}
    out = []
    for r in sparsify:
        if r.get("status") != "ok":
            continue
        if r["step"].startswith("as in act24"):
            precision, path = ("bf16" if "(bf16)" in r["step"] else "fp8"), "2:4"
        elif r["step"] == FUSED_FORWARD_STEP:
            precision, path = "fp8", "2:4 fused"
        else:
            continue
        key = (r["shape"], r["T"], r["activations"], r["zero_frac"], precision, path)
        if key in forward:
            out.append({"shape": key[0], "T": key[1], "activations": key[2], "zero_frac": key[3],
                        "precision": precision, "sparse_path": path,
                        "sparsify_ms": r["ms"], "sparse_ffn_forward_ms": forward[key],
                        "sparsify_share": r["ms"] / forward[key]})
    return out


def speedups(ffn: list[dict]) -> list[dict]:
    """Best dense ms / 2:4 ms for each (shape, T, zero_frac, precision, pass) and 2:4 path where both were
    timed."""
    best_dense, sparse = {}, {}
    for r in ffn:
        if r.get("status") != "ok":
            continue
        key = (r["shape"], r["T"], r["activations"], r["zero_frac"], r["precision"], r["pass"])
        if r["path"].startswith("2:4"):
            sparse[key, r["path"]] = r["ms"]
        elif r["ms"] < best_dense.get(key, (math.inf, ""))[0]:
            best_dense[key] = (r["ms"], r["path"])
    return [{"shape": k[0], "T": k[1], "activations": k[2], "zero_frac": k[3], "precision": k[4], "pass": k[5],
             "sparse_path": path, "dense_path": best_dense[k][1], "dense_ms": best_dense[k][0], "sparse_ms": ms,
             "speedup": best_dense[k][0] / ms} for (k, path), ms in sparse.items() if k in best_dense]


def split_gemm_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, shape: str) -> list[dict]:
    """Fig. 6: dW2ᵀ = Ỹ2ᵀ dY3 with K = tokens. Dense, fully 2:4 (along tokens), and split (the densest
    features dense, the rest 2:4), in dense-equivalent TFLOP/s. bf16, cuSPARSELt."""
    backend = CuSparseLtBackend()
    base = {"shape": shape, "T": t, "d": d, "F": f, **label(zero_frac)}
    if why := backend.probe():
        return [{**base, "gemm": "split", "status": f"unavailable: {why}"}]
    x, w1, _, dy = ffn_inputs(t, d, f, zero_frac)
    y2 = F.relu(x @ w1.t()).square()
    y2s = (y2 * mask24(y2)).t().contiguous()  # (F x T), forward-masked
    full = y2s * mask24(y2s, dim=1)
    sparse_idx, dense_idx = feature_split(y2s.t(), cfg.dense_fraction, cfg.split_multiple)
    sp = y2s[sparse_idx]
    sp = sp * mask24(sp, dim=1)
    dn = y2s[dense_idx]
    packed_full, packed_sp = torch._cslt_compress(full), torch._cslt_compress(sp)
    rows: list[dict] = []

    def assemble(sparse_part, dense_part):  # the (F x d) result, features back in place
        out = torch.empty(f, d, device="cuda", dtype=torch.float32)
        out[sparse_idx], out[dense_idx] = sparse_part.float(), dense_part.float()
        return out

    split_name = f"split ({1 - cfg.dense_fraction:.0%} 2:4 + {cfg.dense_fraction:.0%} dense)"
    variants = {  # name: (timed GEMM(s), their result as one (F x d) tensor, fp32 reference)
        "dense": (lambda: y2s @ dy, lambda out: out, y2s.float() @ dy.float()),
        "2:4 (all features)": (lambda: torch._cslt_sparse_mm(packed_full, dy), lambda out: out,
                               full.float() @ dy.float()),
        split_name: (lambda: (torch._cslt_sparse_mm(packed_sp, dy), dn @ dy), lambda out: assemble(*out),
                     assemble(sp.float() @ dy.float(), dn.float() @ dy.float())),
    }
    for name, (fn, whole, ref) in variants.items():
        gated(rows, {**base, "gemm": name}, lambda fn=fn, whole=whole, ref=ref: rel_error(whole(fn()), ref),
              cfg.tolerance, lambda fn=fn: bench_ms(fn, cfg))
        if rows[-1]["status"] == "ok":
            rows[-1]["TFLOPs_dense_equivalent"] = 2 * f * t * d / rows[-1]["ms"] / 1e9
    return rows


def run_all(cfg: GpuBenchConfig, progress: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Every table of the benchmark. Raises if there is no CUDA device (callers write a skip record)."""
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    ceil = ceilings(cfg)
    progress(f"ceilings: {ceil}")
    out: dict[str, list[dict]] = {"ceilings": [ceil], "gemm": [], "sparsify": [], "ffn": [], "split_gemm": []}
    for shape, (d, f) in cfg.shapes.items():
        points = [(t, cfg.sweep_zero_frac) for t in cfg.tokens] + [(cfg.extra_tokens, z) for z in cfg.extra_zero_fracs]
        if cfg.trained_profile:
            points.append((cfg.extra_tokens, trained_zero_fracs(cfg, f)))
        for t, z in points:
            progress(f"{shape} T={t} {label(z)}")
            out["ffn"] += ffn_rows(cfg, t, d, f, z, shape)
            out["split_gemm"] += split_gemm_rows(cfg, t, d, f, z, shape)
            if t == cfg.extra_tokens:
                out["gemm"] += gemm_rows(cfg, t, d, f, z, shape)
                out["sparsify"] += [{**r, "shape": shape} for r in sparsify_rows(cfg, t, d, f, z, ceil["copy_GBps"])]
            torch.cuda.empty_cache()
    out["speedups"] = speedups(out["ffn"])
    out["sparsify_share"] = sparsify_share(out["sparsify"], out["ffn"])
    return out


TABLES = ("ceilings", "gemm", "sparsify", "sparsify_share", "ffn", "speedups", "split_gemm")


def write_results(out_dir, cfg: GpuBenchConfig, progress: Callable[[str], None] = print) -> dict:
    """Run everything and write one CSV per table plus `bench.json` (settings, versions, date). Without a
    CUDA device every table is one row saying so, and the sidecar records why."""
    import dataclasses
    import datetime
    from pathlib import Path

    import pandas as pd

    from .io import environment_info, write_json

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sidecar = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "config": dataclasses.asdict(cfg), "environment": environment_info()}
    if torch.cuda.is_available():
        results = run_all(cfg, progress)
        sidecar["status"] = "ok"
        sidecar["environment"]["cusparselt"] = torch.backends.cusparselt.version()
        sidecar["environment"]["triton"] = __import__("triton").__version__
    else:
        sidecar["status"] = "skipped: no CUDA device"
        results = {name: [{"status": sidecar["status"]}] for name in TABLES}
    for name in TABLES:
        pd.DataFrame(results[name]).to_csv(out / f"{name}.csv", index=False)
    write_json(out / "bench.json", sidecar)
    return results
