"""Tables derived from the measured rows (pure functions, run anywhere): speedups against the fastest dense path of
the same precision with paired intervals and their bounds, the time per stage, the sparsify step's share."""

from __future__ import annotations


import pandas as pd

from ..intervals import paired_ratio_ci
from .harness import is_gemm

POINT = ["shape", "T", "activations", "zero_frac", "precision", "pass"]  # one measured point
FUSED_FORWARD_STEP = "fused (act24, Triton): relu² + 2:4 + FP8 + sm90 packing"
CSLT_FORWARD_STEP = "fused (act24, Triton): relu² + 2:4 + FP8 + cuSPARSELt packing"
# The FP8 2:4 FFN paths on the fused kernels (act24.gpubench.paths), by the GEMM they feed.
FUSED_PATHS = {"fused_fp8_sm90": "2:4 (fused kernels, CUTLASS)",
               "fused_fp8_cusparselt": "2:4 (fused kernels, cuSPARSELt)",
               "fused_fp8_tuned": "2:4 (fused kernels, act24 GEMM)",
               "fused_fp8_auto": "2:4 (fused kernels, auto)"}
# The FFN path whose forward runs each fused sparsify step.
STEP_PATHS = {FUSED_FORWARD_STEP: FUSED_PATHS["fused_fp8_sm90"], CSLT_FORWARD_STEP: FUSED_PATHS["fused_fp8_cusparselt"]}


def _ok(rows) -> pd.DataFrame:
    df = pd.DataFrame(rows)
    if df.empty or "status" not in df:
        return df.iloc[0:0]
    return df[df["status"] == "ok"]


def gemm_ms(breakdown) -> dict[tuple, tuple[float, float]]:
    """(GEMM ms, all kernels' ms) per call of each path at each point, from the kernel breakdown."""
    df = pd.DataFrame(breakdown)
    if df.empty:
        return {}
    gemm = df["kernel"].map(is_gemm)  # from the names, so that tables follow the classification's fixes
    return {key: (float(g.loc[gemm[g.index], "ms"].sum()), float(g["ms"].sum()))
            for key, g in df.groupby([*POINT, "path"], sort=False)}


def speedups(ffn, rounds, breakdown=()) -> list[dict]:
    """For each point and 2:4 path: the fastest dense path of the same precision (by median over the rounds), the
    speedup as the geometric mean of the per-round ratios dense / 2:4 with its 95% Student t interval, and two
    bounds from the kernel breakdown: `amdahl_bound`, the dense time with its GEMMs replaced by the 2:4 path's
    (what the 2:4 GEMMs allow if the rest costs what it costs the dense path), and `gemm_only_bound`, the ratio of
    the GEMM times (all other work free).

    The profiler times a few calls in a burst; the timed rounds run each path for longer, and an H200 near its
    power limit then runs the same kernels slower, dense GEMMs most (the eager paths, mostly memory-bound, show no
    such difference). So each path's kernel times are scaled by its timed median over its profiled kernel sum
    (`*_sustained_factor`) before the bounds are taken. A speedup whose interval lies above the Amdahl bound means
    the 2:4 path does the shared non-GEMM work faster than the dense baseline: `check` says so, with the times."""
    ok = _ok(ffn)
    per_round = pd.DataFrame(rounds)
    gemms = gemm_ms(breakdown)
    out = []
    for key, g in ok.groupby(POINT, sort=False):
        dense, sparse = g[~g["sparse"].astype(bool)], g[g["sparse"].astype(bool)]
        if dense.empty:
            continue
        best = dense.loc[dense["ms"].idxmin()]
        sel = per_round
        for k, v in zip(POINT, key):
            sel = sel[sel[k] == v]

        def series(path):
            return sel[sel["path"] == path].sort_values("round")["ms"].tolist()

        for _, s in sparse.iterrows():
            est, lo, hi = paired_ratio_ci(series(best["path"]), series(s["path"]))
            row = dict(zip(POINT, key)) | {
                "sparse_path": s["path"], "dense_path": best["path"], "dense_ms": best["ms"], "sparse_ms": s["ms"],
                "speedup": est, "speedup_lo": lo, "speedup_hi": hi, "rounds": len(series(s["path"]))}
            dg, sg = gemms.get((*key, best["path"])), gemms.get((*key, s["path"]))
            if dg and sg:
                cd, cs = best["ms"] / dg[1], s["ms"] / sg[1]
                row |= {"dense_gemm_ms": dg[0], "sparse_gemm_ms": sg[0], "dense_other_ms": dg[1] - dg[0],
                        "sparse_other_ms": sg[1] - sg[0], "dense_sustained_factor": cd, "sparse_sustained_factor": cs,
                        "amdahl_bound": best["ms"] / (best["ms"] - cd * dg[0] + cs * sg[0]),
                        "gemm_only_bound": cd * dg[0] / (cs * sg[0])}
                row["check"] = "ok" if not lo > row["amdahl_bound"] else (
                    f"interval above the Amdahl bound: outside GEMMs the dense path spends {cd * (dg[1] - dg[0]):.3f} "
                    f"ms, the 2:4 path {cs * (sg[1] - sg[0]):.3f} ms")
            out.append(row)
    return out


def stages(ffn, breakdown) -> list[dict]:
    """Per point and path: milliseconds in GEMMs, in other kernels, and the rest of the timed median (launch gaps,
    host time; the profiler's kernel times and the timed medians come from different calls, so it can be < 0), and
    the timed median over the kernel sum (`sustained_factor`, see `speedups`)."""
    ok = _ok(ffn)
    gemms = gemm_ms(breakdown)
    out = []
    for _, r in ok.iterrows():
        key = (*(r[k] for k in POINT), r["path"])
        if key in gemms:
            g, total = gemms[key]
            out.append({**{k: r[k] for k in POINT}, "path": r["path"], "sparse": bool(r["sparse"]), "ms": r["ms"],
                        "gemm_ms": g, "other_kernels_ms": total - g, "gaps_ms": r["ms"] - total,
                        "sustained_factor": r["ms"] / total})
    return out


def sparsify_share(sparsify, ffn) -> list[dict]:
    """Share of the 2:4 FFN forward time spent in its sparsify step (timed alone, as the FFN runs it)."""
    forward = {(r["shape"], r["T"], r["activations"], r["zero_frac"], r["precision"], r["path"]): r["ms"]
               for r in ffn if r.get("status") == "ok" and r["pass"] == "forward" and r.get("sparse")}
    out = []
    for r in sparsify:
        if r.get("status") != "ok":
            continue
        if r["step"].startswith("as in act24"):
            precision = "bf16" if "(bf16)" in r["step"] else "fp8"
            path = "2:4 cuSPARSELt (stock packing)" if precision == "bf16" else "2:4 (stock packing)"
        elif r["step"] in STEP_PATHS:
            precision, path = "fp8", STEP_PATHS[r["step"]]
        else:
            continue
        key = (r["shape"], r["T"], r["activations"], r["zero_frac"], precision, path)
        if key in forward:
            out.append({"shape": key[0], "T": key[1], "activations": key[2], "zero_frac": key[3],
                        "precision": precision, "sparse_path": path, "sparsify_ms": r["ms"],
                        "sparse_ffn_forward_ms": forward[key], "sparsify_share": r["ms"] / forward[key]})
    return out
