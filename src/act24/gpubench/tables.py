"""Tables derived from the measured rows (pure functions, run anywhere): speedups against the fastest dense path of
the same precision with paired intervals and their bounds, the time per stage, the sparsify step's share."""

from __future__ import annotations

import pandas as pd

from ..intervals import nested_ratio_ci
from .harness import HOST_BOUND, STREAM, is_gemm

POINT = ["shape", "T", "activations", "zero_frac", "precision", "pass", "launch"]  # one measured point
FUSED_FORWARD_STEP = "fused (act24, Triton): relu² + 2:4 + FP8 + sm90 packing"
CSLT_FORWARD_STEP = "fused (act24, Triton): relu² + 2:4 + FP8 + cuSPARSELt packing"
# The 2:4 FFN paths on the stock packing (act24.gpubench.paths), by backend: bf16 on cuSPARSELt, FP8 on xformers'.
STOCK_PATHS = {"cusparselt": "2:4 cuSPARSELt (stock packing)", "xformers_fp8_sm90": "2:4 (stock packing)"}
# The FP8 2:4 FFN paths on the fused kernels (act24.gpubench.paths), by the GEMM they feed.
FUSED_PATHS = {"fused_fp8_sm90": "2:4 (fused kernels, CUTLASS)",
               "fused_fp8_cusparselt": "2:4 (fused kernels, cuSPARSELt)",
               "fused_fp8_tuned": "2:4 (fused kernels, act24 GEMM)",
               "fused_fp8_auto": "2:4 (fused kernels, auto)"}


def _frame(rows) -> pd.DataFrame:
    """Rows as a table; rows from before paths were also timed in CUDA graphs were all launched on the stream."""
    df = pd.DataFrame(rows)
    if not df.empty and "launch" not in df:
        df["launch"] = STREAM
    return df


def _ok(rows) -> pd.DataFrame:
    df = _frame(rows)
    if df.empty or "status" not in df:
        return df.iloc[0:0]
    return df[df["status"] == "ok"]


def gemm_ms(breakdown) -> dict[tuple, tuple[float, float]]:
    """(GEMM ms, all kernels' ms) per call of each path at each point: the median over the profiled rounds (and
    processes) of each round's sums, from the kernel breakdown."""
    df = _frame(breakdown)
    if df.empty:
        return {}
    df["gemm_ms"] = df["ms"].where(df["kernel"].map(is_gemm), 0.0)  # from the names: tables follow the fixes
    keys = [*POINT, "path"]
    per_round = df.groupby(keys + [c for c in ("process", "round") if c in df], sort=False)[["gemm_ms", "ms"]].sum()
    medians = per_round.groupby(level=list(range(len(keys))), sort=False).median()
    return {key: (float(r["gemm_ms"]), float(r["ms"])) for key, r in medians.iterrows()}


def _passed(rows: pd.DataFrame, point: list[str], name: str) -> pd.DataFrame:
    """The rows of what (column `name`: a path, a GEMM) passed its check at its point in every process that ran it:
    failing once is failing."""
    ok = _ok(rows)
    failed = rows[rows["status"] != "ok"][[*point, name]].drop_duplicates()
    if failed.empty or ok.empty:
        return ok
    merged = ok.merge(failed, on=[*point, name], how="left", indicator=True)
    return ok[(merged["_merge"] == "left_only").to_numpy()]


def by_process(per_round: pd.DataFrame, name: str, value: str) -> dict:
    """process -> the times of its rounds, in round order, of the rows whose column `name` is `value`."""
    sel = per_round[per_round[name] == value].sort_values(["process", "round"])
    return {p: g["ms"].tolist() for p, g in sel.groupby("process")}


def _rounds_at(rounds, point: list[str], key: tuple) -> pd.DataFrame:
    per_round = _frame(rounds)
    if per_round.empty:
        return per_round
    if "process" not in per_round:
        per_round["process"] = 0
    for k, v in zip(point, key):
        per_round = per_round[per_round[k] == v]
    return per_round


def _bounds(row: dict, dense: tuple[float, float] | None, sparse: tuple[float, float] | None) -> dict:
    """The Amdahl bound (the dense time with its GEMMs replaced by the 2:4 path's), the GEMM-only bound, from
    kernel times measured in the same rounds (no scaling), and what marks the point: `check` "suspect" when the
    interval's lower end lies above the Amdahl bound, with why; `host_bound`, the side(s) whose timed median is
    more than HOST_BOUND x its kernel sum."""
    if not dense or not sparse:
        return {"check": "no kernel breakdown: bounds not measured"}
    d_ms, s_ms = row["dense_ms"], row["sparse_ms"]
    out = {"dense_gemm_ms": dense[0], "sparse_gemm_ms": sparse[0], "dense_other_ms": dense[1] - dense[0],
           "sparse_other_ms": sparse[1] - sparse[0], "amdahl_bound": d_ms / (d_ms - dense[0] + sparse[0]),
           "gemm_only_bound": dense[0] / sparse[0]}
    sides = [name for name, ms, kernels in (("dense", d_ms, dense[1]), ("2:4", s_ms, sparse[1]))
             if ms > HOST_BOUND * kernels]
    out["host_bound"] = " and ".join(sides)
    out["check"] = "ok" if not row["speedup_lo"] > out["amdahl_bound"] else (
        f"suspect: the interval's lower end {row['speedup_lo']:.3f}x lies above the Amdahl bound "
        f"{out['amdahl_bound']:.3f}x of the GEMM times measured in the same rounds; outside GEMMs the dense path "
        f"spends {d_ms - dense[0]:.3f} ms (kernels {dense[1] - dense[0]:.3f}), the 2:4 path {s_ms - sparse[0]:.3f} "
        f"ms (kernels {sparse[1] - sparse[0]:.3f})")
    return out


def speedups(ffn, rounds, breakdown=()) -> list[dict]:
    """For each point and 2:4 path: the fastest dense path of the same precision (by median over every process's
    rounds), the speedup as the geometric mean of the per-round ratios dense / 2:4 with its 95% interval over the
    independent processes (rounds nested within each: `intervals.nested_ratio_ci`), and the bounds of `_bounds`
    from the kernels profiled in the same rounds. A speedup whose interval lies above the Amdahl bound means the
    baseline does shared non-GEMM work slower than the 2:4 path: the row says "suspect", with the times."""
    ok = _passed(_frame(ffn), POINT, "path") if len(ffn) else _ok(ffn)
    gemms = gemm_ms(breakdown)
    out = []
    for key, g in ok.groupby(POINT, sort=False):
        sel = _rounds_at(rounds, POINT, key)
        medians = sel.groupby("path")["ms"].median() if not sel.empty else pd.Series(dtype=float)
        paths = g.drop_duplicates("path").set_index("path")["sparse"].astype(bool)
        dense = [p for p in paths.index if not paths[p] and p in medians]
        if not dense:
            continue
        best = min(dense, key=medians.get)
        for path in [p for p in paths.index if paths[p] and p in medians]:
            ci = nested_ratio_ci(by_process(sel, "path", best), by_process(sel, "path", path))
            row = dict(zip(POINT, key)) | {
                "sparse_path": path, "dense_path": best, "dense_ms": medians[best], "sparse_ms": medians[path],
                "speedup": ci.estimate, "speedup_lo": ci.low, "speedup_hi": ci.high, "interval": ci.method,
                "processes": sel["process"].nunique(), "rounds": int((sel["path"] == path).sum())}
            out.append(row | _bounds(row, gemms.get((*key, best)), gemms.get((*key, path))))
    return out


SPLIT_POINT = ["shape", "T", "activations", "zero_frac"]


def split_speedups(split, rounds) -> list[dict]:
    """Fig. 6's C9: per point, each 2:4 GEMM of the K = tokens product (all features 2:4, or the split) against
    the dense GEMM of the same rounds: the ratio of their times (dense / it, the dense-equivalent throughput ratio)
    as the geometric mean of the per-round ratios, with its interval over the processes (rounds nested), and the
    medians of both times."""
    df = pd.DataFrame(split)
    ok = _passed(df, SPLIT_POINT, "gemm") if "gemm" in df else df.iloc[0:0]
    out = []
    for key, g in ok.groupby(SPLIT_POINT, sort=False):
        sel = _rounds_at(rounds, SPLIT_POINT, key)
        if sel.empty or "dense" not in set(g["gemm"]):
            continue
        medians = sel.groupby("gemm")["ms"].median()
        for gemm in [n for n in dict.fromkeys(g["gemm"]) if n != "dense" and n in medians]:
            ci = nested_ratio_ci(by_process(sel, "gemm", "dense"), by_process(sel, "gemm", gemm))
            out.append(dict(zip(SPLIT_POINT, key)) | {
                "gemm": gemm, "dense_ms": medians["dense"], "ms": medians[gemm], "speedup": ci.estimate,
                "speedup_lo": ci.low, "speedup_hi": ci.high, "interval": ci.method,
                "processes": sel["process"].nunique(), "rounds": int((sel["gemm"] == gemm).sum())})
    return out


def stages(ffn, breakdown) -> list[dict]:
    """Per point and path: the median over its processes' timed medians, the milliseconds in GEMMs and in other
    kernels (medians of the rounds' profiles), the rest of the timed median (launch gaps, host time; the
    profiler's kernel times and the timed medians come from different calls, so it can be < 0), the timed median
    over the kernel sum, and whether that ratio marks the path host-bound (> HOST_BOUND)."""
    ok = _ok(ffn)
    gemms = gemm_ms(breakdown)
    out = []
    for (*point, path, sparse), g in ok.groupby([*POINT, "path", "sparse"], sort=False):
        if (*point, path) in gemms:
            ms, (gemm, total) = float(g["ms"].median()), gemms[(*point, path)]
            out.append({**dict(zip(POINT, point)), "path": path, "sparse": bool(sparse), "ms": ms, "gemm_ms": gemm,
                        "other_kernels_ms": total - gemm, "gaps_ms": ms - total, "timed_over_kernels": ms / total,
                        "host_bound": bool(ms > HOST_BOUND * total)})
    return out


def sparsify_share(sparsify, ffn) -> list[dict]:
    """Share of the 2:4 FFN forward time spent in its sparsify step (timed alone, as the FFN runs it): each step row
    names the FFN path whose forward runs it (its `precision` and `path` fields; steps no path runs have none)."""
    forward = {(r["shape"], r["T"], r["activations"], r["zero_frac"], r["precision"], r["path"]): r["ms"]
               for r in ffn if r.get("status") == "ok" and r["pass"] == "forward" and r.get("sparse")}
    out = []
    for r in sparsify:
        if r.get("status") != "ok" or not isinstance(r.get("path"), str) or not r["path"]:
            continue
        precision, path = r["precision"], r["path"]
        key = (r["shape"], r["T"], r["activations"], r["zero_frac"], precision, path)
        if key in forward:
            out.append({"shape": key[0], "T": key[1], "activations": key[2], "zero_frac": key[3],
                        "precision": precision, "sparse_path": path, "sparsify_ms": r["ms"],
                        "sparse_ffn_forward_ms": forward[key], "sparsify_share": r["ms"] / forward[key]})
    return out
