import dataclasses
import html
import json
import math
import re

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as scipy_stats

from act24 import intervals as compare
from act24.report import ablation, claims, tables
from act24.report.claims import ClaimThresholds, claims_table, ideal_speedups
from conftest import REPO

# The thresholds of the shipped config: the one place their defaults live.
TH = ClaimThresholds.from_config(yaml.safe_load((REPO / "config" / "config.yaml").read_text())["claims"])


def summaries(sq=(3.00, 3.02, 3.04), sw=(3.01, 3.03, 3.05)):
    rows = [{"variant": "sqrelu", "seed": i, "final_val_loss": v} for i, v in enumerate(sq)]
    rows += [{"variant": "swiglu", "seed": i, "final_val_loss": v} for i, v in enumerate(sw)]
    return pd.DataFrame(rows)


def stats(curve, layers=(0.9, 0.95), drop=0.01, seeds=(0, 1, 2), spread=0.002):
    """Per-layer stats of variant sqrelu: mean zero_frac follows `curve` (step -> value); the last step's
    per-layer values are `layers`; seed k adds k * `spread` to every value."""
    rows = []
    last = max(curve)
    for seed in seeds:
        for step, z in curve.items():
            for layer, zl in enumerate(layers):
                rows.append({"variant": "sqrelu", "seed": seed, "step": step, "layer": layer,
                             "zero_frac": (zl if step == last else z) + seed * spread,
                             "drop24_features": drop + seed * spread / 10, "drop24_features_energy": drop / 10})
    return pd.DataFrame(rows)


def table(summaries, **kw):
    return claims_table(summaries, kw.pop("st", stats({0: 0.5, 25: 0.8, 50: 0.88, 75: 0.9, 100: 0.92})),
                        kw.pop("env", {}),
                        kw.pop("th", TH), "sqrelu", "swiglu", kw.pop("recipe", None), dense_fraction=0.05, **kw)


def verdicts(df):
    return dict(zip(df["id"], df["verdict"]))


IDS = ["C1", "C2", "C3", "C4", "C5", "C6a", "C6b", "C7", "C8", "C9", "C10"]


def test_claims_reproduced_when_results_match_the_paper():
    df = table(summaries())
    v = verdicts(df)
    assert list(df["id"]) == IDS
    assert v["C1"] == v["C2"] == v["C3"] == v["C4"] == v["C10"] == "reproduced"
    assert v["C7"] == "not measured: no CUDA device"
    assert v["C5"].startswith("not measured") and v["C6a"].startswith("not measured")
    assert "-0.010 [-0.010, -0.010] (paired t, 3 seeds)" in df.set_index("id").loc["C1", "ours"]


def test_claims_not_reproduced_when_results_differ():
    late_curve = {0: 0.3, 25: 0.32, 50: 0.35, 75: 0.6, 100: 0.9}
    v = verdicts(table(summaries(sq=(3.2, 3.21, 3.25)), st=stats(late_curve, layers=(0.5, 0.7), drop=0.2),
                       env={"cuda_available": True}))
    assert v["C1"] == v["C2"] == v["C3"] == v["C4"] == "not reproduced"
    assert v["C7"] == "not measured: the GPU benchmark did not run"


def test_c1_is_a_non_inferiority_test_on_the_paired_interval():
    tol = TH.c1_loss_tolerance
    # The committed default run's case: a mean difference of -0.008 inside the tolerance, with an interval 13x
    # as wide: not reproduced, not "reproduced" either.
    wide = summaries(sq=(5.062, 4.998), sw=(4.9, 5.176))
    row = table(wide).set_index("id").loc["C1"]
    assert row["verdict"].startswith("inconclusive: the 95% interval [-2.") and row["verdict"].endswith(
        f"contains {tol} nats")
    assert f"two-sided equivalence within ±{tol}: inconclusive" in row["ours"]
    assert "-0.008 [" in row["ours"] and "(paired t, 2 seeds)" in row["ours"]
    # Seeds move both variants together: unpaired the spread hides the difference, paired it is decided.
    base = np.array([3.0, 3.2, 3.4])
    shared = summaries(sq=base + 0.005 + np.array([0, 0.002, -0.002]), sw=base)
    assert verdicts(table(shared))["C1"] == "reproduced"
    unpaired = pd.concat([shared[shared["variant"] == "sqrelu"],
                          shared[shared["variant"] == "swiglu"].assign(seed=lambda d: d["seed"] + 10)])
    row = table(unpaired).set_index("id").loc["C1"]
    assert "Welch t, 3 and 3 seeds" in row["ours"] and row["verdict"].startswith("inconclusive")
    # Worse by more than the margin: not reproduced. Better by more than the margin: no loss, so reproduced; the
    # two-sided equivalence beside it says the two are not equal.
    assert verdicts(table(summaries(sq=(3.06, 3.08, 3.1))))["C1"] == "not reproduced"
    better = table(summaries(sq=(2.95, 2.97, 2.99))).set_index("id").loc["C1"]
    assert better["verdict"] == "reproduced"
    assert f"two-sided equivalence within ±{tol}: not reproduced" in better["ours"]
    # An upper end just under the margin: reproduced, and marked borderline.
    near = table(summaries(sq=(3.0285, 3.0485, 3.0685), sw=(3.01, 3.03, 3.05))).set_index("id").loc["C1"]
    assert near["verdict"] == (f"reproduced (borderline: the upper end 0.0185 is within 10% of the margin from "
                               f"{tol:g})")


def test_c5_compares_the_24_recipe_with_dense_sqrelu():
    s = pd.concat([summaries(), pd.DataFrame([{"variant": "sq24", "seed": i, "final_val_loss": v}
                                              for i, v in enumerate((3.011, 3.029, 3.05))])])
    row = table(s, recipe="sq24").set_index("id").loc["C5"]
    assert row["verdict"] == "reproduced" and row["ours"].startswith("3.030 vs 3.020; difference +0.010 [")
    tight = dataclasses.replace(TH, c5_loss_tolerance=0.005)
    assert verdicts(table(s, th=tight, recipe="sq24"))["C5"] == "not reproduced"
    looser = dataclasses.replace(TH, c5_loss_tolerance=0.012)  # the interval [-0.0...,+0.02] crosses 0.012
    assert verdicts(table(s, th=looser, recipe="sq24"))["C5"].startswith("inconclusive: the 95% interval")


def test_sparsity_claims_use_intervals_over_seeds():
    curve = {0: 0.5, 100: 0.9}
    # Layer 0 wholly below 84%, layer 1 wholly above: partly.
    df = table(summaries(), st=stats(curve, layers=(0.5, 0.95)))
    assert verdicts(df)["C2"] == "partly reproduced"
    assert "1 of 2 layers above 84%, 1 below" in df.set_index("id").loc["C2", "ours"]
    # A layer whose interval contains the threshold leaves C2 open.
    assert verdicts(table(summaries(), st=stats(curve, layers=(0.84, 0.95), spread=0.01)))["C2"].startswith(
        "inconclusive: 1 of 2 layers")
    # C4: the mean drop's interval against 2%, from both sides.
    assert verdicts(table(summaries(), st=stats(curve, drop=0.019, spread=0.02)))["C4"].startswith("inconclusive")
    assert verdicts(table(summaries(), st=stats(curve, drop=0.03)))["C4"] == "not reproduced"


def test_ideal_speedups_from_gemm_counts():
    ideal = ideal_speedups(2.0, 0.05)
    assert ideal["forward"] == pytest.approx(4 / 3)
    assert ideal["forward_backward"] == pytest.approx(1.5)
    assert ideal["split_gemm"] == pytest.approx(1 / 0.525)
    assert ideal_speedups(1.0, 0.05) == {"forward": 1.0, "forward_backward": 1.0, "split_gemm": 1.0}
    assert ideal_speedups(2.0, 0.0)["split_gemm"] == pytest.approx(2.0)


def test_c10_uses_the_configured_recipe():
    row = claims_table(summaries(), stats({0: 0.5, 100: 0.9}), {}, TH, "sqrelu", "swiglu",
                       dense_fraction=0.2).set_index("id").loc["C10"]
    assert row["verdict"] == "not reproduced" and "split GEMM 1.667x" in row["ours"]


def test_quality_table_mean_and_spread_over_seeds():
    s = summaries().assign(ffn_params=10, non_embedding_params=20, tokens=30)
    q = tables.quality_table(s, {"sqrelu": "Squared-ReLU", "swiglu": "SwiGLU"})
    row = q.set_index("variant").loc["sqrelu"]
    assert row["seeds"] == 3 and row["label"] == "Squared-ReLU"
    assert row["val_loss_mean"] == pytest.approx(3.02)
    assert row["val_loss_std"] == pytest.approx(0.02)
    assert list(q["variant"]) == ["sqrelu", "swiglu"]  # best first


def test_final_sparsity_table_takes_the_last_step_of_each_run():
    df = tables.final_sparsity_table(stats({0: 0.5, 100: 0.9}))
    assert df["step"].tolist() == [100, 100]
    assert df["zero_frac"].tolist() == pytest.approx([0.902, 0.952])


def test_parameter_table_has_equal_counts_per_shape():
    shapes = {"small": {"d_model": 64, "n_layers": 2, "n_heads": 2, "vocab_size": 100}}
    df = tables.parameter_table(shapes)
    assert set(df["ffn"]) == {"swiglu", "sqrelu", "relu", "gelu"}
    assert df["non_embedding_params"].nunique() == 1


TABLE = pd.DataFrame({"a": [1, 2], "b": [0.123456, float("nan")], "label": ["1.5e3", "<x & y>"]})


def test_markdown_table_formats_floats_keeps_labels_and_leaves_missing_cells_empty():
    lines = tables.to_markdown(TABLE).splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["a", "b", "label"] and cells[2:] == [["1", "0.1235", "1.5e3"], ["2", "", "<x & y>"]]
    assert lines[1].startswith("|--") and lines[1].split("|")[1].endswith(":")  # numbers right-aligned


def test_html_table_is_a_page_with_escaped_cells_and_the_same_values(tmp_path):
    tables.write_table(TABLE, tmp_path / "t.md", tmp_path / "t.html")
    page = (tmp_path / "t.html").read_text()
    assert page.startswith("<!doctype html>") and "<title>t</title>" in page
    assert "&lt;x &amp; y&gt;" in page and "<x & y>" not in page
    rows = [[html.unescape(c) for c in re.findall(r"<td[^>]*>(.*?)</td>", row)]
            for row in re.findall(r"<tr>(.*?)</tr>", page, flags=re.S)]
    assert [r for r in rows if r] == [["1", "0.1235", "1.5e3"], ["2", "", "<x & y>"]]
    assert page == tables.to_html(TABLE, "t")  # the same bytes on a rerun


def test_every_claim_has_paper_text():
    assert list(claims.PAPER) == IDS


def gpu_tables(fwd=((1.1, 1.05, 1.15), (1.3, 1.25, 1.35)), fwd_bwd=((0.9, 0.85, 0.95), (1.0, 0.95, 1.05)),
               split_ms=(2.0, 1.5)):
    """Speedup rows (estimate, 95% low, high) for bf16 and fp8 at the claims' point, and a split GEMM."""
    sidecar = {"status": "ok", "config": {"shapes": {"1.5B-like": [8, 8], "7B-like": [8, 8]},
                                          "extra_tokens": 16384, "sweep_zero_frac": 0.95}}
    rows = []
    for ps, values in (("forward", fwd), ("forward+backward", fwd_bwd)):
        rows += [{"shape": "7B-like", "T": 16384, "activations": "synthetic", "zero_frac": 0.95, "precision": p,
                  "pass": ps, "sparse_path": "2:4 (fused kernels)", "dense_path": "dense (fused kernels)",
                  "speedup": v, "speedup_lo": lo, "speedup_hi": hi, "check": "ok"}
                 for p, (v, lo, hi) in zip(("bf16", "fp8"), values)]
    split = pd.DataFrame([{"shape": "7B-like", "T": 65536, "activations": "synthetic", "zero_frac": 0.95, "gemm": g,
                           "status": "ok", "ms": ms}
                          for g, ms in zip(("dense", "split (95% 2:4 + 5% dense)"), split_ms)])
    return {"sidecar": sidecar, "speedups": pd.DataFrame(rows), "split_gemm": split}


def test_speed_claims_take_their_verdict_from_the_interval():
    th = dataclasses.replace(TH, paper_speedup=1.3, speedup_tolerance=0.1)  # threshold 1.2
    df = table(summaries(), th=th, gpu=gpu_tables())
    v = verdicts(df)
    # fp8 [1.25, 1.35] is wholly above 1.2; forward+backward's best [0.95, 1.05] wholly below.
    assert v["C7"] == "reproduced" and v["C8"] == "not reproduced"
    assert df.set_index("id").loc["C7", "ours"].startswith(
        "bf16 2:4 (fused kernels) 1.10x [1.05, 1.15] over dense (fused kernels), fp8 2:4 (fused kernels) 1.30x "
        "[1.25, 1.35]")
    # C9 has one median per GEMM: no interval, so no verdict either way.
    assert df.set_index("id").loc["C9", "ours"].startswith("split / dense throughput 1.33x")
    assert v["C9"] == "inconclusive: no interval (one do_bench median per GEMM)"
    # The same estimate with a wider interval that reaches below the threshold is inconclusive.
    wide = gpu_tables(fwd=((1.1, 1.0, 1.2), (1.3, 1.15, 1.45)))
    assert verdicts(table(summaries(), th=th, gpu=wide))["C7"] == (
        "inconclusive: the 95% interval [1.150, 1.450] contains 1.2x")
    other = dataclasses.replace(TH, speed_shape="70B-like")
    v = verdicts(table(summaries(), th=other, gpu=gpu_tables()))
    assert v["C7"] == "not measured: claims.speed_shape '70B-like' is not a benchmarked shape (1.5B-like, 7B-like)"
    v = verdicts(table(summaries(), gpu={"sidecar": {"status": "skipped: no CUDA device"}}))
    assert v["C7"] == v["C9"] == "not measured: no CUDA device"


def test_c9_takes_the_split_gemms_interval_over_processes_at_the_largest_token_count():
    gpu = gpu_tables()
    ratio = {"shape": "7B-like", "activations": "synthetic", "zero_frac": 0.95, "gemm": "split (95% 2:4 + 5% dense)",
             "interval": "t over 3 processes (5 rounds each)"}
    gpu["split_speedups"] = pd.DataFrame([
        {**ratio, "T": 65536, "speedup": 1.16, "speedup_lo": 1.10, "speedup_hi": 1.22},
        {**ratio, "T": 4096, "speedup": 0.9, "speedup_lo": 0.85, "speedup_hi": 0.95},  # not the largest T
        {**ratio, "T": 65536, "gemm": "2:4 (all features)", "speedup": 0.5, "speedup_lo": 0.4, "speedup_hi": 0.6}])
    df = table(summaries(), gpu=gpu).set_index("id")
    assert df.loc["C9", "verdict"] == "reproduced"
    assert df.loc["C9", "ours"] == ("split / dense throughput 1.16x [1.10, 1.22] (t over 3 processes (5 rounds "
                                    "each); 7B-like, K = T = 65536)")
    gpu["split_speedups"].loc[0, ["speedup_lo", "speedup_hi"]] = [0.98, 1.3]
    assert verdicts(table(summaries(), gpu=gpu))["C9"].startswith("inconclusive: the 95% interval [0.980, 1.300]")


def test_verdict_is_three_way_on_the_interval():
    iv = lambda lo, hi: compare.Interval((lo + hi) / 2, lo, hi, "t")  # noqa: E731
    assert compare.verdict(iv(1.2, 1.4), low=1.2) == "reproduced"
    assert compare.verdict(iv(1.0, 1.19), low=1.2) == "not reproduced"
    assert compare.verdict(iv(1.1, 1.3), low=1.2) == "inconclusive: the 95% interval [1.100, 1.300] contains 1.2"
    assert compare.verdict(iv(-0.01, 0.01), -0.02, 0.02) == "reproduced"
    assert compare.verdict(iv(0.021, 0.05), -0.02, 0.02) == "not reproduced"
    assert compare.verdict(iv(-0.05, -0.021), -0.02, 0.02) == "not reproduced"
    assert compare.verdict(iv(-0.01, 0.03), -0.02, 0.02).endswith("contains 0.02")
    none = compare.Interval(1.0, math.nan, math.nan, "1 value: no interval")
    assert compare.verdict(none, low=0.5) == "inconclusive: no interval (1 value: no interval)"


def test_mean_interval_is_the_student_t_interval():
    x = [3.0, 3.1, 3.5]
    iv = compare.mean_interval(x)
    half = scipy_stats.t.ppf(0.975, 2) * np.std(x, ddof=1) / 3**0.5  # 4.303 x the standard error
    assert (iv.estimate, iv.low, iv.high) == pytest.approx((3.2, 3.2 - half, 3.2 + half))
    assert half > 2.1 * 1.96 * np.std(x, ddof=1) / 3**0.5  # normal quantiles would be 2.2x too narrow
    assert iv.method == "t, n = 3"
    assert compare.mean_interval([2.0, 2.0]).low == 2.0
    assert not compare.mean_interval([1.0]).defined


def test_difference_pairs_shared_seeds_and_otherwise_uses_welch():
    a = pd.Series([3.01, 3.22, 3.39, 3.61], index=[0, 1, 2, 3])
    b = pd.Series([3.60, 3.40, 3.20, 3.00], index=[3, 2, 1, 0])  # the same seeds, listed in another order
    paired = compare.difference(a, b)
    d = a.to_numpy() - np.array([3.00, 3.20, 3.40, 3.60])
    half = scipy_stats.t.ppf(0.975, 3) * d.std(ddof=1) / 2
    assert paired.method == "paired t, 4 seeds"
    assert (paired.low, paired.high) == pytest.approx((d.mean() - half, d.mean() + half))
    welch = compare.difference(a, b.set_axis([10, 11, 12, 13]))
    va, vb = a.var(ddof=1) / 4, b.var(ddof=1) / 4
    dof = (va + vb) ** 2 / (va**2 / 3 + vb**2 / 3)
    half = scipy_stats.t.ppf(0.975, dof) * (va + vb) ** 0.5
    assert welch.method == "Welch t, 4 and 4 seeds"
    assert (welch.low, welch.high) == pytest.approx((d.mean() - half, d.mean() + half))
    assert welch.high - welch.low > 10 * (paired.high - paired.low)
    some = compare.difference(a, b.set_axis([1, 2, 3, 10]))  # seeds 1, 2, 3 shared: paired over those
    d3 = a[[1, 2, 3]].to_numpy() - np.array([3.60, 3.40, 3.20])
    half = scipy_stats.t.ppf(0.975, 2) * d3.std(ddof=1) / 3**0.5
    assert some.method == "paired t, 3 seeds shared of 4 and 4"
    assert (some.estimate, some.low, some.high) == pytest.approx((d3.mean(), d3.mean() - half, d3.mean() + half))
    assert compare.difference(a, b.set_axis([3, 10, 11, 12])).method == "Welch t, 4 and 4 seeds"  # one shared


def test_order_test_has_the_exact_permutation_p_value():
    paper = [1, 2, 3, 4, 5]
    assert compare.order_test(paper, [10, 20, 30, 40, 50]) == pytest.approx((1.0, 1 / 120))
    # One adjacent swap: tau 0.8; the identity and the 4 adjacent swaps reach it, of 5! orders.
    assert compare.order_test(paper, [10, 30, 20, 40, 50]) == pytest.approx((0.8, 5 / 120))
    assert compare.order_test(paper, [50, 40, 30, 20, 10]) == pytest.approx((-1.0, 1.0))
    tau, p = compare.order_test(paper, [10, 20, 30, 40, math.inf])  # a diverged row ranks worst
    assert tau == 1.0 and p == pytest.approx(1 / 120)


def ablation_summaries(losses: dict[str, tuple], diverged: dict[str, int] | None = None) -> pd.DataFrame:
    """Summaries of variants named by Table 1 row: `losses` row -> per-seed losses; `diverged` row -> how
    many further seeds diverged (null loss)."""
    rows, diverged = [], diverged or {}
    for row in dict.fromkeys([*losses, *diverged]):
        vals = losses.get(row, ())
        rows += [{"variant": row, "seed": i, "final_val_loss": v, "diverged_at_step": None}
                 for i, v in enumerate(vals)]
        rows += [{"variant": row, "seed": len(vals) + i, "final_val_loss": None, "diverged_at_step": 7}
                 for i in range(diverged.get(row, 0))]
    return pd.DataFrame(rows)


def val_curves(curves: dict[str, list[float]], seeds=(0, 1, 2), every: int = 10) -> pd.DataFrame:
    """Validation metrics: variant -> losses at steps 0, every, 2 every, ... (the same for every seed)."""
    return pd.DataFrame([{"variant": v, "seed": s, "split": "val", "step": i * every, "loss": loss}
                         for v, losses in curves.items() for s in seeds for i, loss in enumerate(losses)])


ALL_ROWS = {r: r for r in ablation.PAPER_TABLE1}


def test_table1_differences_intervals_and_effects():
    s = ablation_summaries({"dense_swiglu": (3.0, 3.02, 3.04), "dense_sqrelu": (3.0, 3.01, 3.02),
                            "full_recipe": (3.01, 3.021, 3.029), "no_dense_warmup": (3.5, 3.52, 3.54),
                            "context_relu": (2.5, 2.51, 2.52)}, diverged={"no_dy1_mask": 3})
    rows = {"dense_swiglu": "dense_swiglu", "dense_sqrelu": "dense_sqrelu", "full_recipe": "full_recipe",
            "no_dense_warmup": "no_dense_warmup", "no_dy1_mask": "no_dy1_mask"}
    t = ablation.table1(s, rows, {"full_recipe": "Full"}).set_index("row")
    assert list(t.index[:7]) == list(ablation.PAPER_TABLE1) and t.index[7] == "context"
    assert t.loc["full_recipe", "label"] == "Full"
    assert t.loc["dense_sqrelu", "effect"] == "baseline" and t.loc["dense_sqrelu", "diff_vs_dense_sqrelu"] == 0
    full = t.loc["full_recipe"]
    d = np.array([0.01, 0.011, 0.009])  # per seed
    half = scipy_stats.t.ppf(0.975, 2) * d.std(ddof=1) / 3**0.5
    assert (full["diff_vs_dense_sqrelu"], full["ci_low"], full["ci_high"]) == pytest.approx(
        (0.01, 0.01 - half, 0.01 + half))
    assert full["interval"] == "paired t, 3 seeds" and full["effect"] == "worse" and full["seeds"] == 3
    assert t.loc["no_dense_warmup", "effect"] == "worse"
    assert t.loc["context", "effect"] == "better" and t.loc["context", "paper"] == "(not in Table 1)"
    dy1 = t.loc["no_dy1_mask"]
    assert dy1["effect"] == "diverged" and dy1["diverged"] == 3 and dy1["seeds"] == 3
    assert dy1["vs_paper"] == "consistent: diverged"
    assert t.loc["naive_backward", "effect"] == "not run" and t.loc["naive_backward", "seeds"] == 0
    assert t.loc["no_token_permutation", "paper_diff"] == pytest.approx(2.919 - 2.651)
    # no_dense_warmup: +0.5 against the full recipe rules out the paper's +0.005.
    warm = t.loc["no_dense_warmup"]
    assert warm["diff_vs_full"] == pytest.approx(0.5) and warm["vs_paper"].startswith("ruled out: the paper's +0.005")


def test_table1_reads_back_from_csv(tmp_path):
    s = ablation_summaries({r: (3.0, 3.01) for r in ("dense_sqrelu", "full_recipe")})
    t = ablation.table1(s, {"dense_sqrelu": "dense_sqrelu", "full_recipe": "full_recipe"})
    t.to_csv(tmp_path / "t.csv", index=False)
    back = ablation.read_table1(tmp_path / "t.csv")
    assert back.loc[3, "variant"] == "" and back.loc[2, "interval"] == "paired t, 2 seeds"
    assert ablation.order_claim(back, 0.05)[1] == ablation.order_claim(t, 0.05)[1]


def recipe_table(effects: dict[str, tuple], spread=(0.0, 0.01, -0.01), metrics=None, diverged=None):
    """table1 of a full recipe at 3.0 and each ablation row at 3.0 + effect + the per-seed `spread`."""
    losses = {"full_recipe": (3.0, 3.0, 3.0)}
    losses |= {r: tuple(3.0 + eff + e for e in spread) for r, eff in effects.items()}
    return ablation.table1(ablation_summaries(losses, diverged), ALL_ROWS, metrics=metrics, dynamics=TH.dynamics)


PAPER_EFFECTS = {"no_dense_warmup": 0.005, "naive_backward": 0.030, "no_token_permutation": 0.267}


@pytest.mark.parametrize("effects, diverged, verdict", [
    # The paper's order, every step beyond the spread: p = 1/120.
    ({"no_dense_warmup": 0.1, "naive_backward": 0.2, "no_token_permutation": 0.3}, {"no_dy1_mask": 3},
     "reproduced"),
    # Two neighbours swapped: tau 0.8, p = 5/120.
    ({"no_dense_warmup": 0.2, "naive_backward": 0.1, "no_token_permutation": 0.3, "no_dy1_mask": 0.4}, {},
     "reproduced"),
    # Two swaps: tau 0.6, p = 14/120: not beyond chance.
    ({"no_dense_warmup": 0.2, "naive_backward": 0.1, "no_token_permutation": 0.4, "no_dy1_mask": 0.3}, {},
     "inconclusive: Kendall tau +0.60 is not beyond chance (p = 0.12"),
    # Reversed.
    ({"no_dense_warmup": -0.1, "naive_backward": -0.2, "no_token_permutation": -0.3, "no_dy1_mask": -0.4}, {},
     "not reproduced"),
])
def test_c6a_order_with_an_exact_permutation_p_value(effects, diverged, verdict):
    ours, got, criterion = ablation.order_claim(recipe_table(effects, diverged=diverged), 0.05)
    assert got.startswith(verdict) and "Kendall tau" in ours and "0.05" in criterion
    if diverged:
        assert "no_dy1_mask diverged" in ours


def test_c6b_effect_sizes_against_the_paper():
    # The paper's effects (intervals ± 0.025), with a diverged no-dY1-mask row: every ablation consistent, except
    # the smallest (+0.005), whose interval contains 0 too.
    _, verdict, _ = ablation.effects_claim(recipe_table(PAPER_EFFECTS, diverged={"no_dy1_mask": 3}))
    assert verdict == "inconclusive: cannot tell no_dense_warmup from no effect"
    big = {**PAPER_EFFECTS, "no_dense_warmup": 0.0055}
    _, verdict, _ = ablation.effects_claim(recipe_table(big, spread=(0.0, 0.0003, -0.0003),
                                                        diverged={"no_dy1_mask": 3}))
    assert verdict == "reproduced"
    # Our scale: every ablation within a few thousandths of the full recipe. The paper's large effects are ruled
    # out; the small ones cannot be told from zero.
    small = {"no_dense_warmup": 0.001, "naive_backward": 0.0, "no_token_permutation": 0.002, "no_dy1_mask": 0.0}
    ours, verdict, _ = ablation.effects_claim(recipe_table(small, spread=(0.0, 0.02, -0.02)))  # ± 0.05
    assert verdict == ("not observed at this scale: our intervals rule out the paper's effect of "
                       "no_token_permutation, no_dy1_mask; cannot tell: no_dense_warmup, naive_backward")
    # With the run length known, the verdict states it.
    assert ablation.effects_claim(recipe_table(small, spread=(0.0, 0.02, -0.02)), 3_300_000)[1].startswith(
        "not observed at 3.3M tokens: our intervals rule out")
    assert "no_dy1_mask +0.000 [" in ours and "vs paper +1.083, diverged 0 of 3" in ours
    partly = {**small, "no_token_permutation": 0.267}
    assert ablation.effects_claim(recipe_table(partly, spread=(0.0, 0.02, -0.02)))[1].startswith(
        "partly reproduced: our intervals rule out the paper's effect of no_dy1_mask; consistent: no_token_permutation")


def test_divergence_and_plateau_detection():
    dyn = ablation.Dynamics(divergence_rise=0.5, plateau_share=0.5, plateau_gain_ratio=0.5)  # the shipped rule
    assert dyn == TH.dynamics
    falling = [5.0, 4.0, 3.5, 3.2, 3.0, 2.9]  # steps 0-50: the best loss gains 0.6 after step 25 (3.5 -> 2.9)
    flat = [5.0, 4.0, 3.5, 3.45, 3.44, 3.43]  # gains 0.07 < half of 0.6
    rising = [5.0, 4.0, 3.5, 3.2, 3.5, 3.8]   # 0.6 above its best at the end
    metrics = val_curves({"full_recipe": falling, "no_token_permutation": flat, "no_dy1_mask": rising,
                          "no_dense_warmup": falling, "naive_backward": falling})
    t = recipe_table({r: 0.0 for r in ablation.ABLATION_ROWS}, metrics=metrics).set_index("row")
    assert t.loc["no_token_permutation", "plateaued"] == 3 and t.loc["no_dense_warmup", "plateaued"] == 0
    assert t.loc["no_dy1_mask", "diverged"] == 3 and t.loc["full_recipe", "diverged"] == 0
    assert dyn.late_gain(pd.DataFrame({"step": [0, 10, 20, 30, 40, 50], "loss": falling})) == pytest.approx(0.6)
    # The curve ends 0.6 above its best: a stricter rule (a 0.7 rise) no longer calls it diverged.
    strict = ablation.table1(ablation_summaries({"full_recipe": (3.0,), "no_dy1_mask": (3.0,)}), ALL_ROWS,
                             metrics=metrics, dynamics=dataclasses.replace(dyn, divergence_rise=0.7))
    assert strict.set_index("row").loc["no_dy1_mask", "diverged"] == 0


def test_c6_not_measured_names_the_missing_rows():
    t = ablation.table1(ablation_summaries({"full_recipe": (3.0, 3.1)}), {"full_recipe": "full_recipe"})
    for claim in (ablation.order_claim(t, 0.05), ablation.effects_claim(t)):
        assert claim[1].startswith("not measured: Table 1 rows not run here (no_dense_warmup, naive_backward")
        assert "config/ablation.yaml" in claim[1]


def test_kendall_tau_counts_ties_as_neither():
    assert compare.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert compare.kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert compare.kendall_tau([1, 2, 3], [1, math.inf, math.inf]) == pytest.approx(2 / 3)


def test_a_diverged_run_fails_c5():
    s = pd.concat([summaries(), pd.DataFrame([{"variant": "sq24", "seed": 0, "final_val_loss": 3.0},
                                              {"variant": "sq24", "seed": 1, "final_val_loss": None}])])
    row = table(s, recipe="sq24").set_index("id").loc["C5"]
    assert row["verdict"] == "not reproduced" and row["ours"].startswith("1 of 2 2:4 recipe")


def test_inference_table_pairs_dense_and_24_losses():
    rows = [{"variant": v, "seed": s, "ffn": "sqrelu", "trained_sparse": False, "val_loss_dense": 3.0 + s,
             "val_loss_24": 3.0 + s + d, "delta_24": d, "eval_tokens": 64, "zero_frac": 0.9,
             "drop24_features": 0.01, "drop24_features_energy": 0.001}
            for v, deltas in (("a", (0.01, 0.03)), ("b", (0.2,))) for s, d in enumerate(deltas)]
    t = tables.inference_table(pd.DataFrame(rows), {"a": "A"}).set_index("variant")
    assert t.loc["a", "label"] == "A" and t.loc["a", "seeds"] == 2
    assert t.loc["a", "delta_24_mean"] == pytest.approx(0.02)
    half = scipy_stats.t.ppf(0.975, 1) * 0.01414213 / 2**0.5  # 12.7 x the standard error at 2 seeds
    assert (t.loc["a", "delta_24_ci_low"], t.loc["a", "delta_24_ci_high"]) == pytest.approx((0.02 - half, 0.02 + half))
    assert t.loc["a", "interval"] == "t, n = 2"
    assert t.loc["a", "val_loss_dense"] == pytest.approx(3.5) and math.isnan(t.loc["b", "delta_24_ci_low"])


def test_the_default_variants_keep_their_colours_in_every_config():
    from act24.report.palette import variant_palette

    default = variant_palette(["swiglu", "sqrelu", "sqrelu_24"])
    ablation = variant_palette(["relu", "gelu", "sqrelu_24_no_warmup", "swiglu", "sqrelu", "sqrelu_24"],
                               first=["swiglu", "sqrelu", "sqrelu_24"])
    assert all(ablation[v] == default[v] for v in default)
    assert len(set(ablation.values())) == 6  # and every variant its own colour


def speedup_rows(speedups_fwd, speedups_bwd, tokens=(4096, 8192), shape="7B-like", path="2:4 (fused kernels)"):
    rows = []
    for ps, values in (("forward", speedups_fwd), ("forward+backward", speedups_bwd)):
        for t, v in zip(tokens, values):
            rows.append({"shape": shape, "T": t, "precision": "fp8", "pass": ps,
                         "sparse_path": path, "dense_path": "dense (fused kernels)", "speedup": v,
                         "speedup_lo": v - 0.05,
                         "speedup_hi": v + 0.05, "amdahl_bound": v + 0.1})
    return pd.DataFrame(rows)


def test_fig5_names_device_and_baseline_labels_tokens_and_marks_suspect_points():
    from matplotlib.collections import PathCollection

    from act24.report import figures

    rows = speedup_rows([1.1, 1.4], [1.2, 1.3]).assign(check="ok")
    rows.loc[(rows["pass"] == "forward+backward") & (rows["T"] == 4096), "check"] = "suspect: above its Amdahl bound"
    fig = figures.ffn_speedups(rows, {"forward": 4 / 3, "forward_backward": 1.5}, "NVIDIA H200 (torch 2.11)",
                               paper=1.3)
    marked = [tuple(map(float, o)) for ax in fig.axes for c in ax.collections if isinstance(c, PathCollection)
              for o in c.get_offsets()]
    # forward 1.4 > 1.33 (above the ideal); forward+backward 1.2 at 4096 tokens (marked suspect in the table)
    assert marked == [(8192.0, 1.4), (4096.0, 1.2)]
    title = fig._suptitle.get_text()
    assert "NVIDIA H200" in title and "fp8: dense (fused kernels)" in title
    assert [t.get_text() for t in fig.axes[1].get_xticklabels()] == ["4096", "8192"]  # the bottom row
    assert fig.axes[0].get_shared_y_axes().joined(fig.axes[0], fig.axes[1])  # one y scale for both passes
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert "paper: about 1.3x" in names and "suspect: above the ideal or the Amdahl bound" in names


def test_fig5_legend_names_a_path_that_only_some_shapes_have():
    from act24.report import figures

    rows = pd.concat([speedup_rows([1.1, 1.2], [1.1, 1.2]),
                      speedup_rows([1.0, 1.1], [1.0, 1.1], shape="13B-like", path="2:4 (other GEMM)")])
    fig = figures.ffn_speedups(rows, {"forward": 4 / 3, "forward_backward": 1.5}, "a GPU")
    names = [t.get_text() for t in fig.legends[0].get_texts()]
    assert {"fp8 2:4 (fused kernels)", "fp8 2:4 (other GEMM)"} <= set(names)


def test_figures_are_written_as_png_and_pdf_with_the_same_bytes_on_a_rerun(tmp_path):
    import matplotlib.pyplot as plt

    from act24.report import figures

    for run in ("a", "b"):
        fig, ax = plt.subplots()
        ax.plot([0, 1], [1, 0])
        figures.save(fig, tmp_path / f"{run}.png", tmp_path / f"{run}.pdf")
    assert (tmp_path / "a.pdf").read_bytes().startswith(b"%PDF")
    assert (tmp_path / "a.png").read_bytes().startswith(b"\x89PNG")
    assert (tmp_path / "a.pdf").read_bytes() == (tmp_path / "b.pdf").read_bytes()
    assert (tmp_path / "a.png").read_bytes() == (tmp_path / "b.png").read_bytes()


def test_borderline_marks_a_deciding_end_within_a_tenth_of_the_margin():
    iv = lambda lo, hi: compare.Interval((lo + hi) / 2, lo, hi, "t")  # noqa: E731
    assert compare.decide(iv(-0.01, 0.0185), high=0.02) == (
        "reproduced (borderline: the upper end 0.0185 is within 10% of the margin from 0.02)")
    assert compare.decide(iv(-0.01, 0.017), high=0.02) == "reproduced"
    assert compare.decide(iv(0.0215, 0.05), high=0.02).startswith("not reproduced (borderline: the lower end 0.0215")
    # An inconclusive verdict has no deciding end; a margin can be given where the bound is not the margin.
    assert compare.decide(iv(0.0199, 0.0201), high=0.02).startswith("inconclusive")
    assert compare.decide(iv(0.85, 0.9), low=0.84, margin=0.16) == (
        "reproduced (borderline: the lower end 0.85 is within 10% of the margin from 0.84)")
    assert compare.decide(iv(0.87, 0.9), low=0.84, margin=0.16) == "reproduced"


def test_seeds_to_decide_solves_the_t_interval_for_n():
    worse = [0.010, 0.025, 0.040]  # mean 0.025, sd 0.015: decided (not reproduced) once the lower end passes +0.02
    n = compare.seeds_to_decide(worse, high=0.02)
    lower = lambda k: 0.025 - scipy_stats.t.ppf(0.975, k - 1) * 0.015 / math.sqrt(k)  # noqa: E731
    assert lower(n) > 0.02 >= lower(n - 1)
    near = [0.000, 0.010, 0.020]  # mean 0.01, sd 0.01: n = 6 gives 0.01 + 2.571 * 0.01 / sqrt(6) = 0.0205 > 0.02
    n = compare.seeds_to_decide(near, high=0.02)
    t = scipy_stats.t.ppf(0.975, n - 1)
    assert 0.01 + t * 0.01 / math.sqrt(n) <= 0.02 < 0.01 + scipy_stats.t.ppf(0.975, n - 2) * 0.01 / math.sqrt(n - 1)
    assert compare.seeds_to_decide([0.01], high=0.02) is None  # no spread to extrapolate from


def test_c4_pools_the_drop_over_layers_weighted_by_their_non_zeros():
    # Layer 0 half dense and dropping 10%, layer 1 90% zeros and dropping 0%: pooled 0.5*0.1 / (0.5 + 0.1) = 8.3%,
    # the mean of layers 5%.
    st = stats({0: 0.5, 100: 0.9}, layers=(0.5, 0.9), drop=0.0, spread=0.0)
    st.loc[st["layer"] == 0, "drop24_features"] = 0.1
    row = table(summaries(), st=st).set_index("id").loc["C4"]
    assert row["ours"].startswith("8.33% [8.33%, 8.33%] (t, n = 3) of non-zeros dropped, pooled over layers")
    assert "mean of layers 5.00%" in row["ours"] and row["verdict"] == "not reproduced"


def test_scale_views_give_every_size_a_row_and_say_what_did_not_run():
    from act24.report import scale

    rows = []
    for size, params, base in (("S", 5e6, 2.0), ("M", 2.7e7, 1.8)):
        for v, off in (("swiglu", 0.0), ("sqrelu", -0.03), ("sq24", -0.029)):
            if size == "M" and v == "sq24":
                continue
            rows += [{"variant": f"{size}_{v}", "seed": s, "non_embedding_params": params, "tokens": 10**8,
                      "final_val_loss": base + off + 0.01 * s + 0.001 * (v == "sq24")} for s in range(3)]
    summ = pd.DataFrame(rows)
    spec = {size: {"swiglu": f"{size}_swiglu", "sqrelu": f"{size}_sqrelu", "sparse": f"{size}_sq24"}
            for size in ("S", "M", "L")}
    gaps = scale.gap_table(summ, spec, {"C1": 0.02, "C5": 0.02}).set_index(["size", "claim"])
    assert gaps.loc[("S", "C1"), "estimate"] == pytest.approx(-0.03)
    assert gaps.loc[("S", "C1"), "verdict"] == "reproduced"
    assert gaps.loc[("S", "C1"), "equivalence"] == "not reproduced"  # better by more than the margin
    assert gaps.loc[("S", "C5"), "estimate"] == pytest.approx(0.002) and gaps.loc[("S", "C5"), "seeds"] == 3
    assert gaps.loc[("M", "C5"), "verdict"] == "not run: M_sq24"
    assert gaps.loc[("L", "C1"), "verdict"] == "not run: L_sqrelu, L_swiglu"
    st = pd.concat([stats({0: 0.5, 100: 0.9}).assign(variant=f"{size}_sqrelu") for size in ("S", "M")])
    drop = scale.drop_table(st, summ, spec, 0.02).set_index("size")
    assert drop.loc["S", "drop"] == pytest.approx(drop.loc["M", "drop"]) and drop.loc["L", "verdict"] == "not run"
    assert drop.loc["S", "non_embedding_params"] == 5e6


def test_table1_gaps_follow_each_ablation_over_training():
    rows = []
    for variant, gap in (("full", 0.0), ("noperm", 0.05)):
        for seed in range(3):
            for step, loss in ((0, 5.0), (10, 4.0), (20, 3.0)):
                rows.append({"variant": variant, "seed": seed, "split": "val", "step": step, "tokens": step * 100,
                             "loss": loss + gap * step / 20 + 0.001 * seed * (variant == "noperm")})
    gaps = ablation.gap_curves(pd.DataFrame(rows), {"full_recipe": "full", "no_token_permutation": "noperm"})
    assert list(gaps["row"].unique()) == ["no_token_permutation"]
    assert gaps["gap"].round(4).tolist() == [0.001, 0.026, 0.051] and gaps["seeds"].tolist() == [3, 3, 3]
    assert gaps["paper_final_gap"].iloc[0] == pytest.approx(0.267)
    assert (gaps["ci_low"] <= gaps["gap"]).all() and (gaps["gap"] <= gaps["ci_high"]).all()


def test_a_notebook_reads_the_committed_reference_where_results_lack_a_table_and_says_how_to_make_it(tmp_path,
                                                                                                      capsys):
    from act24.report.results import results_or_reference

    made, reference = tmp_path / "results", tmp_path / "reference"
    (made / "tables").mkdir(parents=True)
    assert results_or_reference(made, reference, "tables/table1.csv", "make x") == reference
    assert capsys.readouterr().out == (f"{made}/tables/table1.csv is not made here yet (`make x`, from the repository "
                                       f"root makes it): showing the committed reference {reference} instead\n")
    (made / "tables" / "table1.csv").write_text("row\n")
    assert results_or_reference(made, reference, "tables/table1.csv", "make x") == made
    assert capsys.readouterr().out == ""


def test_seeds_of_one_variant_with_different_settings_are_refused_by_name(tmp_path):
    from act24.io import InputFileError
    from act24.report.results import read_summaries

    runs = []
    for seed, steps in ((0, 100), (1, 250)):
        run = tmp_path / "runs" / "sqrelu" / f"seed{seed}"
        run.mkdir(parents=True)
        config = {"name": f"sqrelu/seed{seed}", "train": {"steps": steps, "seed": seed}, "model": {"d_model": 64}}
        (run / "summary.json").write_text(json.dumps({"name": config["name"], "final_val_loss": 4.0,
                                                      "config": config}))
        runs.append(run)
    with pytest.raises(InputFileError, match=r"runs/sqrelu/seed0 and .*runs/sqrelu/seed1 are seeds of one variant "
                                             r"with different settings \(train.steps 100 / 250\)"):
        read_summaries(runs)
    assert len(read_summaries(runs[:1])) == 1


def test_paper_tables_come_as_booktabs_latex_with_every_special_character_escaped():
    from act24.report.tables import to_latex

    df = pd.DataFrame({"row": ["no_dy1_mask", "full & 50%"], "val_loss": [2.6521, float("nan")], "seeds": [3, 3]})
    tex = to_latex(df, "Table 1 # ablations", "tab:t1")
    lines = tex.splitlines()
    assert lines[:6] == ["\\begin{table}[t]", "\\centering", "\\caption{Table 1 \\# ablations}", "\\label{tab:t1}",
                         "\\begin{tabular}{lrr}", "\\toprule"]
    assert lines[6:10] == ["row & val loss & seeds \\\\", "\\midrule", "no\\_dy1\\_mask & 2.652 & 3 \\\\",
                           "full \\& 50\\% &  & 3 \\\\"]
    assert lines[10:] == ["\\bottomrule", "\\end{tabular}", "\\end{table}"]


def test_the_claims_markdown_keeps_long_texts_out_of_its_table():
    from act24.report.tables import claims_markdown

    df = pd.DataFrame([{"id": "C1", "claim": "matches", "paper": "2.651 vs 2.654", "ours": "x " * 400,
                        "verdict": "inconclusive: the 95% interval [-0.051, -0.007] contains -0.02 nats "
                                   "(borderline: far too long to sit in a table cell)",
                        "criterion": "non-inferiority", "source": "tables/quality.md"}])
    md = claims_markdown(df)
    assert max(map(len, md.splitlines())) <= 160
    assert "| C1   | matches | inconclusive: the 95% interval [-0.051, -0.007] contains -0.02 nats |" in md
    assert "\n### C1: matches\n" in md and "- **criterion**: non-inferiority" in md
    assert md.split().count("x") == 400  # every word of the long text is kept, wrapped


def test_table1_figure_draws_the_no_loss_band_and_holds_every_point_on_its_axes():
    from act24.report import figures

    steps = [0, 50, 100]
    final = {"sq": 0.0, "sw": 0.30, "full": 0.01}  # SwiGLU far above: it used to run off the axis
    metrics = pd.DataFrame([{"split": "val", "variant": v, "seed": s, "step": st, "tokens": st * 10,
                             "loss": 4.0 + d * st / 100 + 0.002 * s} for v, d in final.items() for s in (0, 1, 2)
                            for st in steps])
    table = pd.DataFrame([
        {"row": "dense_sqrelu", "variant": "sq", "label": "Squared-ReLU", "diff_vs_dense_sqrelu": np.nan,
         "ci_low": np.nan, "ci_high": np.nan, "paper_diff": 0.0, "diverged": 0, "seeds": 3, "interval": ""},
        {"row": "dense_swiglu", "variant": "sw", "label": "SwiGLU", "diff_vs_dense_sqrelu": 0.30, "ci_low": 0.28,
         "ci_high": 0.32, "paper_diff": 0.003, "diverged": 0, "seeds": 3, "interval": "paired t, 3 seeds"},
        {"row": "full", "variant": "full", "label": "full recipe", "diff_vs_dense_sqrelu": 0.01, "ci_low": -0.01,
         "ci_high": 0.03, "paper_diff": 0.001, "diverged": 0, "seeds": 3, "interval": "paired t, 3 seeds"}])
    fig = figures.table1_ablation(metrics, table, margin=0.02)
    left, panels = fig.axes[0], fig.axes[1:]
    band = [p for p in left.patches if abs(p.get_x() + 0.02) < 1e-9 and abs(p.get_width() - 0.04) < 1e-9]
    assert len(band) == 1  # the ±0.02 no-loss band
    lo, hi = left.get_xlim()
    assert lo < -0.02 and hi > 0.32  # the band, SwiGLU's interval and seeds
    for ax in panels:  # the panels share a y scale that holds SwiGLU's difference during training
        assert ax.get_ylim()[1] > 0.30 + 0.002 * 2 and ax.get_ylim()[0] < 0


def test_drop24_names_its_variant_and_draws_a_band_over_seeds():
    from matplotlib.collections import PolyCollection

    from act24.report import figures
    from act24.report.figures import DROP_COLUMNS

    stats = pd.DataFrame([{"variant": "sqrelu", "seed": s, "layer": l, "tokens": t, **{c: 0.05 + 0.01 * s
                                                                                       for c in DROP_COLUMNS}}
                          for s in (0, 1, 2) for l in (0, 1) for t in (0, 100, 200)])
    fig = figures.drop_fractions(stats)
    ax = fig.axes[0]
    assert "sqrelu" in ax.get_title() and "3 seeds' range" in ax.get_title()
    assert any(isinstance(c, PolyCollection) for c in ax.collections)  # the band


def test_loss_curves_add_a_panel_of_each_variants_difference_to_the_reference():
    from act24.report import figures

    metrics = pd.DataFrame([{"split": split, "variant": v, "seed": s, "step": st, "tokens": st * 10,
                             "loss": 5.0 - st / 100 + off + 0.001 * s}
                            for split in ("train", "val") for v, off in (("sqrelu", 0.0), ("swiglu", 0.03))
                            for s in (0, 1) for st in (0, 50, 100)])
    fig = figures.loss_curves(metrics, {"sqrelu": "Squared-ReLU"}, reference="sqrelu")
    assert len(fig.axes) == 3 and fig.axes[2].get_title() == "difference to Squared-ReLU (paired on seed)"
    lines = [l for l in fig.axes[2].get_lines() if len(l.get_ydata()) == 3]
    ys = sorted(round(float(y), 6) for l in lines for y in l.get_ydata())
    assert ys == [0.0] * 3 + [0.03] * 3  # the reference against itself, and SwiGLU 0.03 above it
    assert len(figures.loss_curves(metrics).axes) == 2  # no reference: the two loss panels


def test_the_paper_fig5_draws_the_best_2_4_path_per_shape_and_stars_the_claims_point():
    from matplotlib.collections import PathCollection

    from act24.report import figures

    rows = pd.concat([speedup_rows([1.1, 1.2], [1.05, 1.1]), speedup_rows([1.0, 1.25], [0.9, 1.0], path="2:4 other"),
                      speedup_rows([1.0, 1.1], [1.0, 1.05], shape="13B-like")])
    fig = figures.ffn_speedup_paper(rows, ("7B-like", 8192), 1.3, "an H100")
    assert [ax.get_title() for ax in fig.axes] == ["7B-like", "13B-like"]
    forward = next(l for l in fig.axes[0].get_lines() if l.get_linestyle() == "-" and l.get_marker() == "o")
    assert list(forward.get_ydata()) == [1.1, 1.25]  # the best path at each token count
    stars = [tuple(map(float, o)) for c in fig.axes[0].collections if isinstance(c, PathCollection)
             for o in c.get_offsets()]
    assert sorted(stars) == [(8192.0, 1.1), (8192.0, 1.25)]  # forward+backward's best, forward's best
    assert not [c for c in fig.axes[1].collections if isinstance(c, PathCollection) and len(c.get_offsets())]


def test_tables_for_people_put_an_estimate_and_its_interval_in_one_cell_and_counts_in_millions():
    df = pd.DataFrame({"sparse_path": ["2:4 (fused kernels)", "2:4 other"], "speedup": [1.1703, 0.9],
                       "speedup_lo": [1.1412, float("nan")], "speedup_hi": [1.1931, float("nan")],
                       "non_embedding_params": [102256960, 5573440], "tokens_per_second": [226060.7, 871.9]})
    lines = tables.to_markdown(df, floatfmt=".3g").splitlines()
    cells = [[c.strip() for c in line.strip("|").split("|")] for line in lines]
    assert cells[0] == ["sparse path", "speedup [95% CI]", "non embedding params", "tokens per second"]
    assert cells[2] == ["2:4 (fused kernels)", "1.17 [1.14, 1.19]", "102.3M", "226.1k"]
    assert cells[3] == ["2:4 other", "0.9", "5.6M", "871"]  # no interval: the estimate alone
    assert lines[1].split("|")[2].endswith(":")  # the interval column is a number column: right-aligned


def test_ffn_stages_draws_every_bar_whole():
    from act24.report import figures

    rows = [{"shape": "7B-like", "T": 16384, "precision": "fp8", "pass": "forward", "path": p, "gemm_ms": g,
             "other_kernels_ms": o, "gaps_ms": r} for p, g, o, r in (("dense", 5.0, 1.0, 0.5),
                                                                    ("2:4 (stock packing)", 4.0, 60.0, -1.0))]
    fig = figures.ffn_stages(pd.DataFrame(rows), 16384, "a GPU")
    ax = fig.axes[0]
    ends = [p.get_x() + p.get_width() for p in ax.patches]
    assert max(ends) == 64.0 and ax.get_xlim()[1] > max(ends)  # room after the longest bar, not flush with the edge
