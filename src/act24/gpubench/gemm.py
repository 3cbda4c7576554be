"""GEMM-level tables: the down-projection GEMM dense / 2:4 in bf16 and FP8, and Fig. 6's split GEMM (K = tokens)."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..intervals import paired_ratio_ci
from ..kernels import cusparselt, sm90_gemm
from ..kernels.cuda12 import import_xformers_ops
from ..kernels.fp8 import quantize_rowwise_fp8
from ..sparsity.pattern import feature_split, mask24
from .config import GpuBenchConfig
from .harness import backend_here, bench_ms, event_ms, ffn_inputs, gated, label, rel_error, time_rounds


def gemm_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, shape: str,
              seed: int = 0) -> list[dict]:
    """The down-projection GEMM Y3 = Ỹ2 W2ᵀ (M = T, K = F, N = d), dense and 2:4, bf16 and FP8 (inputs and the
    rounds' orders drawn from `seed`)."""
    x, w1, w2, _ = ffn_inputs(t, d, f, zero_frac, seed)
    y2 = F.relu(x @ w1.t()).square()
    y2s = y2 * mask24(y2)
    ref = y2s.float() @ w2.t().float()
    base = {"shape": shape, "M": t, "K": f, "N": d, **label(zero_frac)}
    rows: list[dict] = []
    (cusp, cusp_why), (fp8, fp8_why) = backend_here("cusparselt"), backend_here("xformers_fp8_sm90")
    w2t = w2.t()
    gated(rows, {**base, "gemm": "dense bf16"}, lambda: rel_error(y2s @ w2t, ref), cfg.tolerance,
          lambda: bench_ms(lambda: y2s @ w2t, cfg))
    bf16_names = ("2:4 bf16 cuSPARSELt, algorithm 0", "2:4 bf16 cuSPARSELt, searched")
    if cusp:
        packed = torch._cslt_compress(y2s)
        for name, fn in zip(bf16_names, (lambda: torch._cslt_sparse_mm(packed, w2t),
                                         lambda: cusparselt.sparse_mm(packed, w2t, t))):
            gated(rows, {**base, "gemm": name}, lambda fn=fn: rel_error(fn(), ref), cfg.tolerance,
                  lambda fn=fn: bench_ms(fn, cfg))
    else:
        rows += [{**base, "gemm": name, "status": cusp_why} for name in bf16_names]
    if fp8:
        rows += fp8_rows(cfg, base, y2s, w2, ref, seed)
    else:
        for g in ("dense FP8 (row-wise scales)", "2:4 FP8 xformers sm90"):
            rows.append({**base, "gemm": g, "status": fp8_why})
    dense_ms = {p: next((r["ms"] for r in rows if r["gemm"].startswith(f"dense {p}") and r["status"] == "ok"), None)
                for p in ("bf16", "FP8")}
    for r in rows:
        if r["status"] == "ok":
            r["TFLOPs_dense_equivalent"] = 2 * t * f * d / r["ms"] / 1e9
            if (dense := dense_ms["FP8" if "FP8" in r["gemm"] else "bf16"]) and "speedup_vs_dense" not in r:
                r["speedup_vs_dense"] = dense / r["ms"]
    return rows


DENSE_FP8 = "dense FP8 (row-wise scales)"


def fp8_rows(cfg: GpuBenchConfig, base: dict, y2s, w2, ref, seed: int = 0) -> list[dict]:
    """The FP8 GEMMs on the same quantized operands, timed in interleaved rounds (`time_rounds`); each 2:4 row's
    speedup over the dense FP8 GEMM is the paired ratio of the rounds with its interval."""
    a8, a_scale = quantize_rowwise_fp8(y2s)
    w8, w_scale = quantize_rowwise_fp8(w2)  # (d x F): one scale per output column of W2ᵀ
    w_scale_t = w_scale.t().contiguous()
    dense8 = lambda: torch._scaled_mm(a8, w8.t(), scale_a=a_scale, scale_b=w_scale_t,  # noqa: E731
                                      out_dtype=torch.bfloat16, use_fast_accum=True)
    ops, _ = import_xformers_ops()
    packed8, meta8 = ops._sparse24_sm90_cutlass_compress(a8)
    sparse8 = lambda: ops._sparse24_fp8_sm90_cutlass_gemm(packed8, meta8, w8.t(), a_scale=a_scale,  # noqa: E731
                                                          b_scale=w_scale_t)
    act24 = act24_fp8_calls(y2s, w8, w_scale_t)
    # name: the timed call, or (timed call, checked call), or why it cannot run here
    calls = {DENSE_FP8: dense8, "2:4 FP8 xformers sm90": sparse8, **cusparselt_fp8_calls(a8, a_scale, w8, w_scale_t),
             **act24}
    rows, pending = [], []
    for name, call in calls.items():
        if isinstance(call, str):
            rows.append({**base, "gemm": name, "status": call})
            continue
        fn, check = call if isinstance(call, tuple) else (call, call)
        gated(rows, {**base, "gemm": name}, lambda check=check: rel_error(check(), ref), 2 * cfg.tolerance,
              lambda ms, fn=fn: event_ms(fn, budget_ms=ms), pending)
    records, _ = time_rounds(pending, cfg, seed)  # one record per GEMM and round, in round order
    by_gemm = {}
    for rec in records:
        by_gemm.setdefault(rec["gemm"], []).append(rec["ms"])
    for r in rows:
        if r["status"] == "ok" and r["gemm"] != DENSE_FP8 and DENSE_FP8 in by_gemm:
            r["speedup_vs_dense"], r["speedup_low"], r["speedup_high"] = paired_ratio_ci(by_gemm[DENSE_FP8],
                                                                                       by_gemm[r["gemm"]])
    notes = {**cusparselt_notes(a8, w8), **act24_notes(act24, sparse8, *a8.shape, w8.shape[0])}
    for r in rows:
        if r["gemm"] in notes:
            r["note"] = notes[r["gemm"]]
    return rows


CSLT_SEARCHED = ("2:4 FP8 cuSPARSELt, searched + scaling pass", "2:4 FP8 cuSPARSELt, searched, GEMM alone")


def cusparselt_fp8_calls(a8, a_scale, w8, w_scale_t) -> dict:
    """cuSPARSELt's FP8 2:4 GEMM: algorithm 0 and the searched one (`kernels.cusparselt`), each with the pass that
    applies the row-wise scales, and the searched GEMM alone (what that pass costs; checked with the pass)."""
    names = ("2:4 FP8 cuSPARSELt, algorithm 0 + scaling pass", *CSLT_SEARCHED)
    if why := backend_here("fused_fp8_cusparselt")[1]:
        return dict.fromkeys(names, why)
    from ..kernels.fused import scale_rows_cols_

    compressed, w8t, m = torch._cslt_compress(a8), w8.t(), a8.shape[0]
    alone = lambda: cusparselt.sparse_mm(compressed, w8t, m)  # noqa: E731
    return {names[0]: lambda: scale_rows_cols_(torch._cslt_sparse_mm(compressed, w8t, out_dtype=torch.bfloat16),
                                               a_scale, w_scale_t),
            names[1]: lambda: cusparselt.fp8_gemm(compressed, w8t, a_scale, w_scale_t),
            names[2]: (alone, lambda: scale_rows_cols_(alone(), a_scale, w_scale_t))}


def cusparselt_notes(a8, w8) -> dict:
    """The searched cuSPARSELt algorithm, for the rows that use it."""
    if backend_here("fused_fp8_cusparselt")[1]:
        return {}
    try:
        choice = cusparselt.search(a8.shape[0], a8.shape[1], w8.shape[0], torch.float8_e4m3fn).describe()
    except RuntimeError as exc:  # no correct algorithm: the rows say it failed
        choice = str(exc)[:300]
    return dict.fromkeys(CSLT_SEARCHED, choice)


ACT24_ROWS = ("2:4 FP8 act24 sm90a, xformers' tile", "2:4 FP8 act24 sm90a, searched")


def act24_fp8_calls(y2s, w8, w_scale_t) -> dict:
    """act24's sm90a GEMM (`kernels.sm90_gemm`) on the fused kernel's packing of the same values: with xformers'
    tile and cluster (128 x 256 x 128, 2 x 1; what the kernel gives before tuning) and with the searched launch."""
    if why := backend_here("fused_fp8_tuned")[1]:
        return dict.fromkeys(ACT24_ROWS, why)
    from ..kernels.fused import PLAIN, sparsify24_rows

    p = sparsify24_rows(y2s, mode=PLAIN)[0]
    args = (p.values, p.meta, w8.t(), p.scale.reshape(-1), w_scale_t.reshape(-1))
    fixed = sm90_gemm.gemm.Launch(sm90_gemm.CONFIGS[0])
    return {ACT24_ROWS[0]: lambda: sm90_gemm.run(fixed, *args), ACT24_ROWS[1]: lambda: sm90_gemm.sparse_fp8_gemm(*args)}


def act24_notes(calls: dict, xformers_gemm, m: int, k: int, n: int) -> dict:
    """How far act24's results are from xformers' GEMM on the same FP8 values, and the searched launch."""
    if any(isinstance(calls[name], str) for name in ACT24_ROWS):
        return {}
    ref = xformers_gemm()
    notes = {name: f"relative difference to xformers' GEMM {rel_error(calls[name](), ref):.1e}" for name in ACT24_ROWS}
    notes[ACT24_ROWS[1]] += f"; {sm90_gemm.search(m, k, n).describe()}"
    return notes


def split_gemm_rows(cfg: GpuBenchConfig, t: int, d: int, f: int, zero_frac: float, shape: str,
                    seed: int = 0) -> tuple[list[dict], list[dict]]:
    """Fig. 6: dW2ᵀ = Ỹ2ᵀ dY3 with K = tokens. Dense, fully 2:4 (along tokens), and split (the densest
    features dense, the rest 2:4), in dense-equivalent TFLOP/s. bf16, cuSPARSELt. Each correct GEMM is timed in
    interleaved rounds (`time_rounds`, orders drawn from `seed`): (rows, one record per GEMM and round)."""
    base = {"shape": shape, "T": t, "d": d, "F": f, **label(zero_frac)}
    if not (found := backend_here("cusparselt"))[0]:
        return [{**base, "gemm": "split", "status": found[1]}], []
    x, w1, _, dy = ffn_inputs(t, d, f, zero_frac, seed)
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
    pending: list = []
    for name, (fn, whole, ref) in variants.items():
        gated(rows, {**base, "gemm": name}, lambda fn=fn, whole=whole, ref=ref: rel_error(whole(fn()), ref),
              cfg.tolerance, lambda ms, fn=fn: event_ms(fn, budget_ms=ms), pending)
    records, _ = time_rounds(pending, cfg, seed)
    for row in rows:
        if row["status"] == "ok":
            row["TFLOPs_dense_equivalent"] = 2 * f * t * d / row["ms"] / 1e9
    return rows, records
