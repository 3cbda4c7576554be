"""Fig. 5: the FFN forward and forward + backward, every dense path against every 2:4 path, in interleaved rounds,
each path checked against an fp32 reference first, and the kernels each path runs."""

from __future__ import annotations

import math

import torch

from ..kernels.backends import select_backend
from ..kernels.emulation import Fp8EmulationBackend
from ..ffn import dense_sqrelu_ffn, sparse_sqrelu_ffn
from ..sparsity.recipe import SparseRecipe
from .config import GpuBenchConfig
from .harness import (GRAPH, HOST_BOUND, ROW_ONLY, STREAM, checked, event_ms, ffn_inputs, gated, graphed, host_bound,
                      kernel_breakdown, label, rel_error, relative_tolerances, time_rounds, worst_error)
from .paths import ffn_paths

PRECISIONS = ("bf16", "fp8")


def leaf(v: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """A fresh leaf copy of `v` in `dtype` that takes gradients: never `v` itself (`.to` returns `v` when the dtype
    matches, and its gradients would then add up across calls and mark the benchmark's inputs)."""
    return v.detach().to(dtype, copy=True).requires_grad_()


def references(x, w1, w2, dy, recipe: SparseRecipe) -> tuple[dict[bool, tuple[torch.Tensor, ...]], str]:
    """(Y3, dX, dW1, dW2) of the dense (False) and the 2:4 (True) FFN on the same inputs, and the reference's
    precision: fp32 with TF32 GEMMs (~1e-3, far under the tolerances), or, where fp32 does not fit in memory (the
    largest shapes), bf16 tensors with fp32 accumulation (~1e-2), said so in every row."""
    reference = select_backend("reference", x.device)[0]
    tf32 = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = True
    try:
        for dtype, name in ((torch.float32, "fp32 (TF32 GEMMs)"), (torch.bfloat16, "bf16 (fp32 did not fit)")):
            out = {}
            try:
                for sparse in (False, True):
                    params = [leaf(v, dtype) for v in (x, w1, w2)]
                    y = (sparse_sqrelu_ffn(*params, recipe, reference) if sparse
                         else dense_sqrelu_ffn(*params, reference))
                    y.backward(dy.to(dtype))
                    out[sparse] = (y.detach(), *(p.grad for p in params))
                    del y, params
                return out, name
            except torch.cuda.OutOfMemoryError:
                out.clear()
            finally:
                torch.cuda.empty_cache()
        raise RuntimeError("the FFN reference does not fit in GPU memory, even in bf16")
    finally:
        torch.backends.cuda.matmul.allow_tf32 = tf32


def fp8_math_errors(x, w1, w2, dy, recipe: SparseRecipe, error) -> dict[tuple[str, bool], float]:
    """(pass, sparse) -> the error of the FFN computed with FP8 operands and exact GEMMs (Fp8EmulationBackend)
    against the reference, by `error(pass, output, sparse)`: what FP8 math loses by itself. Empty where it does not
    fit in GPU memory (the tolerances then rest on the dense paths alone, and say so)."""
    emulation, errors = Fp8EmulationBackend(), {}
    try:
        for sparse in (False, True):
            params = [leaf(v, torch.bfloat16) for v in (x, w1, w2)]
            y = sparse_sqrelu_ffn(*params, recipe, emulation) if sparse else dense_sqrelu_ffn(*params, emulation)
            y.backward(dy.to(torch.bfloat16))
            errors["forward", sparse] = error("forward", y.detach(), sparse)
            errors["forward+backward", sparse] = error("forward+backward", tuple(p.grad for p in params), sparse)
            del y, params
    except torch.cuda.OutOfMemoryError:
        errors.clear()
    finally:
        torch.cuda.empty_cache()
    return errors


def ffn_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac, shape: str,
             seed: int = 0) -> dict[str, list[dict]]:
    """Tables `ffn` (one row per precision, pass, path and launch: status, error, median ms over the rounds),
    `ffn_rounds` (each path's ms per round) and `breakdown` (each path's kernels, profiled in every round) for one
    FFN shape and token count; `seed` draws the inputs and the rounds' orders (one per benchmark process). Where a
    path of a pass is host-bound, every path of that pass is timed again captured in a CUDA graph (`graph_twins`)."""
    x, w1, w2, dy = ffn_inputs(t, d, f, zero_frac, seed)
    recipe = SparseRecipe(dense_fraction=cfg.dense_fraction, split_multiple=cfg.split_multiple)
    refs, reference = references(x, w1, w2, dy, recipe)

    def error(ps: str, out, sparse: bool) -> float:
        return rel_error(out, refs[sparse][0]) if ps == "forward" else worst_error(out, refs[sparse][1:])

    out: dict[str, list[dict]] = {"ffn": [], "ffn_rounds": [], "breakdown": []}
    for precision in PRECISIONS:
        base = {"shape": shape, "T": t, "d": d, "F": f, **label(zero_frac), "precision": precision,
                "launch": STREAM, "reference": reference}
        paths, missing = ffn_paths(precision, recipe)
        out["ffn"] += [{**base, "pass": "forward", **m} for m in missing]
        calls = {}
        for p in paths:
            def forward(p=p):
                with torch.no_grad():
                    return p.forward(x, w1, w2)

            calls["forward", p.name, p.sparse] = forward
            calls["forward+backward", p.name, p.sparse] = lambda p=p: p.step(x, w1, w2, dy)
        errors = {key: checked(lambda fn=fn, key=key: error(key[0], fn(), key[2])) for key, fn in calls.items()}
        limit = cfg.tolerance * (2 if precision == "fp8" else 1)
        measured = {k: c.error for k, c in errors.items() if c.exception is None}
        tolerance = (relative_tolerances(measured, limit, inherent=fp8_math_errors(x, w1, w2, dy, recipe, error))
                     if precision == "fp8" else {})
        rows, pending = [], []
        for (ps, name, sparse), check in errors.items():
            tol, why = tolerance.get((ps, sparse), (limit, f"the configured limit {limit:g}"))
            row = {**base, "pass": ps, "path": name, "sparse": sparse, "tolerance": tol, "tolerance_basis": why}
            gated(rows, row, check.result, tol, lambda ms, fn=calls[ps, name, sparse]: event_ms(fn, ms), pending)
        profile = (lambda row: kernel_breakdown(calls[row["pass"], row["path"], row["sparse"]], cfg.profile_iters)
                   ) if cfg.profile_iters else None
        timed, kernels = time_rounds(pending, cfg, seed, profile)
        slow = {ps for ps, _ in host_bound(rows, kernels, HOST_BOUND)}
        twins, twin_rounds = graph_twins(cfg, seed, [r for r in rows if r["pass"] in slow], calls, error)
        out["ffn"] += rows + twins
        out["ffn_rounds"] += timed + twin_rounds
        out["breakdown"] += kernels
        torch.cuda.empty_cache()
    return out


def graph_twins(cfg: GpuBenchConfig, seed: int, rows: list[dict], calls: dict, error) -> tuple[list[dict], list]:
    """Every correct path of `rows` (the passes where some path is host-bound, dense and 2:4 alike) captured in a
    CUDA graph, checked on the graph's own outputs against the same reference and tolerance, then timed in
    interleaved rounds of their own: rows with launch "CUDA graph", and their rounds."""
    twins, pending = [], []
    for row in [r for r in rows if r["status"] == "ok"]:
        base = {k: v for k, v in row.items() if k not in ROW_ONLY} | {"launch": GRAPH}
        try:
            replay = graphed(calls[row["pass"], row["path"], row["sparse"]])
        except Exception as exc:  # noqa: BLE001 - a path that cannot be captured is a row saying why
            twins.append({**base, "status": f"failed: graph capture: {type(exc).__name__}: {str(exc)[:160]}",
                          "rel_error": math.nan, "ms": math.nan})
            continue
        gated(twins, base, lambda r=replay, row=row: error(row["pass"], r(), row["sparse"]), row["tolerance"],
              lambda ms, r=replay: event_ms(r, ms), pending)
    timed, _ = time_rounds(pending, cfg, seed)
    return twins, timed
