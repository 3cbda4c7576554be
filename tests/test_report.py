import math

import pandas as pd
import pytest

from act24.report import ablation, claims, compare, tables
from act24.report.claims import ClaimThresholds, claims_table, ideal_speedups


def summaries(sq=(3.00, 3.02), sw=(3.01, 3.03)):
    rows = [{"variant": "sqrelu", "seed": i, "final_val_loss": v} for i, v in enumerate(sq)]
    rows += [{"variant": "swiglu", "seed": i, "final_val_loss": v} for i, v in enumerate(sw)]
    return pd.DataFrame(rows)


def stats(curve, layers=(0.9, 0.95), drop=0.01):
    """Per-layer stats of variant sqrelu: mean zero_frac follows `curve` (step -> value); the last step's
    per-layer values are `layers`."""
    rows = []
    last = max(curve)
    for step, z in curve.items():
        for layer, zl in enumerate(layers):
            rows.append({"variant": "sqrelu", "seed": 0, "step": step, "layer": layer,
                         "zero_frac": zl if step == last else z, "drop24_features": drop,
                         "drop24_features_energy": drop / 10})
    return pd.DataFrame(rows)


def verdicts(df):
    return dict(zip(df["id"], df["verdict"]))


def test_claims_reproduced_when_results_match_the_paper():
    curve = {0: 0.5, 25: 0.8, 50: 0.88, 75: 0.9, 100: 0.92}
    df = claims_table(summaries(), stats(curve), {"cuda_available": False}, ClaimThresholds(), "sqrelu", "swiglu")
    v = verdicts(df)
    assert list(df["id"]) == [f"C{i}" for i in range(1, 11)]
    assert v["C1"] == v["C2"] == v["C3"] == v["C4"] == v["C10"] == "reproduced"
    assert v["C7"] == "not measured: no CUDA device"
    assert v["C5"].startswith("not measured")
    assert "-0.010" in df.set_index("id").loc["C1", "ours"]


def test_claims_not_reproduced_when_results_differ():
    late_curve = {0: 0.3, 25: 0.32, 50: 0.35, 75: 0.6, 100: 0.9}
    df = claims_table(summaries(sq=(3.2, 3.21)), stats(late_curve, layers=(0.5, 0.7), drop=0.2),
                      {"cuda_available": True}, ClaimThresholds(), "sqrelu", "swiglu")
    v = verdicts(df)
    assert v["C1"] == v["C2"] == v["C3"] == v["C4"] == "not reproduced"
    assert v["C7"] == "not measured: the GPU benchmark did not run"


def test_c5_compares_the_24_recipe_with_dense_sqrelu():
    s = pd.concat([summaries(), pd.DataFrame([{"variant": "sq24", "seed": i, "final_val_loss": v}
                                              for i, v in enumerate((3.015, 3.025))])])
    curve = {0: 0.5, 100: 0.9}
    df = claims_table(s, stats(curve), {}, ClaimThresholds(), "sqrelu", "swiglu", recipe_variant="sq24")
    row = df.set_index("id").loc["C5"]
    assert row["verdict"] == "reproduced" and row["ours"].startswith("3.020 vs 3.010 (difference +0.010")
    tight = ClaimThresholds(c5_loss_tolerance=0.005)  # +0.010 > 0.005, but within the seeds' spread
    assert verdicts(claims_table(s, stats(curve), {}, tight, "sqrelu", "swiglu", "sq24"))["C5"].startswith(
        "inconclusive: the difference is within the seed-to-seed spread")


def test_some_layers_sparse_enough_is_partly_reproduced():
    df = claims_table(summaries(), stats({0: 0.5, 100: 0.9}, layers=(0.5, 0.95)), {}, ClaimThresholds(),
                      "sqrelu", "swiglu")
    assert verdicts(df)["C2"] == "partly reproduced"
    assert "1 of 2 layers" in df.set_index("id").loc["C2", "ours"]


def test_ideal_speedups_from_gemm_counts():
    ideal = ideal_speedups()
    assert ideal["forward"] == pytest.approx(4 / 3)
    assert ideal["forward_backward"] == pytest.approx(1.5)
    assert ideal["split_gemm"] == pytest.approx(1 / 0.525)
    assert ideal_speedups(sparse_gemm_speedup=1.0) == {"forward": 1.0, "forward_backward": 1.0, "split_gemm": 1.0}


def test_quality_table_mean_and_spread_over_seeds():
    s = summaries().assign(ffn_params=10, non_embedding_params=20, tokens=30)
    q = tables.quality_table(s, {"sqrelu": "Squared-ReLU", "swiglu": "SwiGLU"})
    row = q.set_index("variant").loc["sqrelu"]
    assert row["seeds"] == 2 and row["label"] == "Squared-ReLU"
    assert row["val_loss_mean"] == pytest.approx(3.01)
    assert row["val_loss_std"] == pytest.approx(0.02 / 2**0.5)
    assert list(q["variant"]) == ["sqrelu", "swiglu"]  # best first


def test_final_sparsity_table_takes_the_last_step_of_each_run():
    df = tables.final_sparsity_table(stats({0: 0.5, 100: 0.9}))
    assert df["step"].tolist() == [100, 100]
    assert df["zero_frac"].tolist() == [0.9, 0.95]


def test_parameter_table_has_equal_counts_per_shape():
    shapes = {"small": {"d_model": 64, "n_layers": 2, "n_heads": 2, "vocab_size": 100}}
    df = tables.parameter_table(shapes)
    assert set(df["ffn"]) == {"swiglu", "sqrelu", "relu", "gelu"}
    assert df["non_embedding_params"].nunique() == 1


def test_markdown_table():
    md = tables.to_markdown(pd.DataFrame({"a": [1, 2], "b": [0.123456, float("nan")]}))
    assert md.splitlines() == ["| a | b |", "|---|---|", "| 1 | 0.1235 |", "| 2 |  |"]


def test_every_claim_has_paper_text():
    assert set(claims.PAPER) == {f"C{i}" for i in range(1, 11)}


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
    curve = {0: 0.5, 100: 0.9}
    th = ClaimThresholds(paper_speedup=1.3, speedup_tolerance=0.1)  # threshold 1.2
    df = claims_table(summaries(), stats(curve), {}, th, "sqrelu", "swiglu", gpu=gpu_tables())
    v = verdicts(df)
    # fp8 [1.25, 1.35] is wholly above 1.2; forward+backward's best [0.95, 1.05] wholly below.
    assert v["C7"] == "reproduced" and v["C8"] == "not reproduced" and v["C9"] == "reproduced"
    assert df.set_index("id").loc["C7", "ours"].startswith(
        "bf16 2:4 (fused kernels) 1.10x [1.05, 1.15] over dense (fused kernels), fp8 2:4 (fused kernels) 1.30x "
        "[1.25, 1.35]")
    assert df.set_index("id").loc["C9", "ours"].startswith("split / dense throughput 1.33x")
    # The same estimate with a wider interval that reaches below the threshold is inconclusive.
    wide = gpu_tables(fwd=((1.1, 1.0, 1.2), (1.3, 1.15, 1.45)))
    assert verdicts(claims_table(summaries(), stats(curve), {}, th, "sqrelu", "swiglu", gpu=wide))["C7"].startswith(
        "inconclusive")
    other = ClaimThresholds(speed_shape="70B-like")
    v = verdicts(claims_table(summaries(), stats(curve), {}, other, "sqrelu", "swiglu", gpu=gpu_tables()))
    assert v["C7"] == "not measured: claims.speed_shape '70B-like' is not a benchmarked shape (1.5B-like, 7B-like)"
    skipped = {"sidecar": {"status": "skipped: no CUDA device"}}
    v = verdicts(claims_table(summaries(), stats(curve), {}, th, "sqrelu", "swiglu", gpu=skipped))
    assert v["C7"] == v["C9"] == "not measured: no CUDA device"


def test_interval_verdict_boundaries():
    assert claims.interval_verdict(1.2, 1.4, 1.2) == "reproduced"
    assert claims.interval_verdict(1.0, 1.19, 1.2) == "not reproduced"
    assert claims.interval_verdict(1.1, 1.3, 1.2).startswith("inconclusive: the 95% interval")
    assert claims.interval_verdict(float("nan"), float("nan"), 1.2).startswith("inconclusive: no interval")


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


ALL_ROWS = {r: r for r in ablation.PAPER_TABLE1}


def test_table1_differences_intervals_and_effects():
    s = ablation_summaries({"dense_swiglu": (3.0, 3.02, 3.04), "dense_sqrelu": (3.0, 3.01, 3.02),
                            "full_recipe": (3.01, 3.02, 3.03), "no_dense_warmup": (3.5, 3.52, 3.54),
                            "context_relu": (2.5, 2.51, 2.52)}, diverged={"no_dy1_mask": 3})
    rows = {"dense_swiglu": "dense_swiglu", "dense_sqrelu": "dense_sqrelu", "full_recipe": "full_recipe",
            "no_dense_warmup": "no_dense_warmup", "no_dy1_mask": "no_dy1_mask"}
    t = ablation.table1(s, rows, {"full_recipe": "Full"}).set_index("row")
    assert list(t.index[:7]) == list(ablation.PAPER_TABLE1) and t.index[7] == "context"
    assert t.loc["full_recipe", "label"] == "Full"
    assert t.loc["dense_sqrelu", "effect"] == "baseline" and t.loc["dense_sqrelu", "diff_vs_dense_sqrelu"] == 0
    full = t.loc["full_recipe"]
    assert full["diff_vs_dense_sqrelu"] == pytest.approx(0.01)
    assert full["ci95"] == pytest.approx(1.96 * (2 * 0.01**2 / 3) ** 0.5)
    assert full["effect"] == "within seed noise" and full["seeds"] == 3 and full["val_loss_std"] == pytest.approx(0.01)
    assert t.loc["no_dense_warmup", "effect"] == "worse"
    assert t.loc["context", "effect"] == "better" and t.loc["context", "paper"] == "(not in Table 1)"
    dy1 = t.loc["no_dy1_mask"]
    assert dy1["effect"] == "diverged" and dy1["diverged"] == 3 and dy1["seeds"] == 3
    assert t.loc["naive_backward", "effect"] == "not run" and t.loc["naive_backward", "seeds"] == 0
    assert t.loc["no_token_permutation", "paper_diff"] == pytest.approx(2.919 - 2.651)


@pytest.mark.parametrize(
    "losses, diverged, verdict",
    [
        # The paper's order, each step beyond the seed spread.
        ({"full_recipe": (3.0, 3.01), "no_dense_warmup": (3.1, 3.11), "naive_backward": (3.2, 3.21),
          "no_token_permutation": (3.3, 3.31)}, {"no_dy1_mask": 2}, "reproduced"),
        # Two neighbours swapped: tau = 0.8.
        ({"full_recipe": (3.0, 3.01), "no_dense_warmup": (3.2, 3.21), "naive_backward": (3.1, 3.11),
          "no_token_permutation": (3.3, 3.31), "no_dy1_mask": (3.4, 3.41)}, {}, "partly reproduced"),
        # Reversed.
        ({"full_recipe": (3.4, 3.41), "no_dense_warmup": (3.3, 3.31), "naive_backward": (3.2, 3.21),
          "no_token_permutation": (3.1, 3.11), "no_dy1_mask": (3.0, 3.01)}, {}, "not reproduced"),
        # Everything within noise, even in the paper's order.
        ({"full_recipe": (3.0, 3.2), "no_dense_warmup": (3.01, 3.21), "naive_backward": (3.02, 3.22),
          "no_token_permutation": (3.03, 3.23), "no_dy1_mask": (3.04, 3.24)}, {}, "inconclusive: "),
    ],
)
def test_c6_ordering_verdict(losses, diverged, verdict):
    ours, got, criterion = ablation.ordering_verdict(ablation_summaries(losses, diverged), ALL_ROWS, 0.5)
    assert got.startswith(verdict) and "Kendall tau" in ours and "0.5" in criterion
    if diverged:
        assert "no_dy1_mask diverged" in ours


def test_c6_not_measured_names_the_missing_rows():
    s = ablation_summaries({"full_recipe": (3.0, 3.1)})
    _, verdict, _ = ablation.ordering_verdict(s, {"full_recipe": "full_recipe"}, 0.5)
    assert verdict.startswith("not measured: Table 1 rows not run here (no_dense_warmup, naive_backward")
    assert "config/ablation.yaml" in verdict


def test_kendall_tau_counts_ties_as_neither():
    assert compare.kendall_tau([1, 2, 3], [10, 20, 30]) == 1.0
    assert compare.kendall_tau([1, 2, 3], [30, 20, 10]) == -1.0
    assert compare.kendall_tau([1, 2, 3], [1, math.inf, math.inf]) == pytest.approx(2 / 3)


def test_a_diverged_run_fails_c5():
    s = pd.concat([summaries(), pd.DataFrame([{"variant": "sq24", "seed": 0, "final_val_loss": 3.0},
                                              {"variant": "sq24", "seed": 1, "final_val_loss": None}])])
    df = claims_table(s, stats({0: 0.5, 100: 0.9}), {}, ClaimThresholds(), "sqrelu", "swiglu", "sq24")
    row = df.set_index("id").loc["C5"]
    assert row["verdict"] == "not reproduced" and row["ours"].startswith("1 of 2 2:4 recipe")


def test_inference_table_pairs_dense_and_24_losses():
    rows = [{"variant": v, "seed": s, "ffn": "sqrelu", "trained_sparse": False, "val_loss_dense": 3.0 + s,
             "val_loss_24": 3.0 + s + d, "delta_24": d, "eval_tokens": 64, "zero_frac": 0.9,
             "drop24_features": 0.01, "drop24_features_energy": 0.001}
            for v, deltas in (("a", (0.01, 0.03)), ("b", (0.2,))) for s, d in enumerate(deltas)]
    t = tables.inference_table(pd.DataFrame(rows), {"a": "A"}).set_index("variant")
    assert t.loc["a", "label"] == "A" and t.loc["a", "seeds"] == 2
    assert t.loc["a", "delta_24_mean"] == pytest.approx(0.02)
    assert t.loc["a", "delta_24_ci95"] == pytest.approx(1.96 * 0.01414213 / 2**0.5, rel=1e-5)
    assert t.loc["a", "val_loss_dense"] == pytest.approx(3.5) and math.isnan(t.loc["b", "delta_24_ci95"])
