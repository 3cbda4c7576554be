"""Table 1 of the paper at our scale: the 2:4 recipe's ablation, and the ordering verdict of claim C6.

`analysis.table1` maps each of the paper's rows to the variant that mirrors it. Losses are the runs' final
validation losses; a run whose training loss became non-finite (train.on_nonfinite: stop) is "diverged" and
ranks worst. Differences carry a normal-approximation 95% interval over seeds (report.compare.welch_ci95).
"""

from __future__ import annotations

import math

import pandas as pd

from .compare import kendall_tau, welch_ci95

# The paper's Table 1, in its order: row -> (description, final loss). The SwiGLU loss is C1's (unconfirmed).
PAPER_TABLE1 = {
    "dense_swiglu": ("dense SwiGLU", 2.654),
    "dense_sqrelu": ("dense Squared-ReLU", 2.651),
    "full_recipe": ("2:4 full recipe", 2.652),
    "no_dense_warmup": ("2:4 without dense warmup", 2.657),
    "naive_backward": ("2:4 naive backward sparsification", 2.682),
    "no_token_permutation": ("2:4 without token permutation (plateaus)", 2.919),
    "no_dy1_mask": ("2:4 without the forward mask on dY1 (diverges)", 3.735),
}
RECIPE_ROWS = ["full_recipe", "no_dense_warmup", "naive_backward", "no_token_permutation", "no_dy1_mask"]
BASELINE_ROW = "dense_sqrelu"


def _losses(summaries: pd.DataFrame, variant: str) -> tuple[pd.Series, int]:
    """(final losses of the finished runs, number of diverged runs) of `variant`."""
    runs = summaries[summaries["variant"] == variant]
    diverged = runs["diverged_at_step"].notna() if "diverged_at_step" in runs else pd.Series(False, runs.index)
    return runs.loc[~diverged, "final_val_loss"].astype(float), int(diverged.sum())


def _difference(a: pd.Series, b: pd.Series, diverged: int) -> tuple[float, float, str]:
    """(mean difference, 95% half-width, effect) of losses a against b."""
    if diverged:
        return math.nan, math.nan, "diverged"
    if a.empty or b.empty:
        return math.nan, math.nan, "not run"
    diff, ci = a.mean() - b.mean(), welch_ci95(a, b)
    if math.isnan(ci):
        effect = "one seed: no interval"
    elif diff - ci > 0:
        effect = "worse"
    elif diff + ci < 0:
        effect = "better"
    else:
        effect = "within seed noise"
    return diff, ci, effect


def table1(summaries: pd.DataFrame, rows: dict[str, str], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per Table 1 row (the paper's order), then every other variant of `summaries` as context.

    `rows` maps a Table 1 row (a key of PAPER_TABLE1) to its variant. Columns: the paper's loss and its
    difference to dense Squared-ReLU; ours (mean ± std over finished seeds, diverged count) and the difference
    to dense Squared-ReLU with its 95% interval and effect."""
    labels = labels or {}
    baseline = rows.get(BASELINE_ROW)
    base_losses = _losses(summaries, baseline)[0] if baseline else pd.Series(dtype=float)
    mapped = {v: r for r, v in rows.items()}
    order = [(r, rows.get(r)) for r in PAPER_TABLE1]
    order += [(None, v) for v in dict.fromkeys(summaries["variant"]) if v not in mapped]
    out = []
    for row, variant in order:
        paper_desc, paper_loss = PAPER_TABLE1.get(row, ("", math.nan))
        losses, diverged = _losses(summaries, variant) if variant else (pd.Series(dtype=float), 0)
        n = len(losses) + diverged
        diff, ci, effect = (_difference(losses, base_losses, diverged) if variant != baseline
                            else (0.0, math.nan, "baseline"))
        out.append({
            "row": row or "context", "paper": paper_desc or "(not in Table 1)", "variant": variant or "",
            "label": labels.get(variant, variant) if variant else "not run (config/ablation.yaml runs it)",
            "paper_loss": paper_loss,
            "paper_diff": paper_loss - PAPER_TABLE1[BASELINE_ROW][1],
            "seeds": n, "diverged": diverged,
            "val_loss_mean": losses.mean() if len(losses) else math.nan,
            "val_loss_std": losses.std(ddof=1) if len(losses) > 1 else math.nan,
            "diff_vs_dense_sqrelu": diff if n else math.nan, "ci95": ci if n else math.nan,
            "effect": effect if n else "not run",
        })
    return pd.DataFrame(out)


def ordering_verdict(summaries: pd.DataFrame, rows: dict[str, str], min_tau: float) -> tuple[str, str, str]:
    """Claim C6: do the ablations order like the paper's Table 1? Returns (ours, verdict, criterion).

    Each ablation is compared with the full recipe (difference ± 95% interval); diverged rows rank worst.
    Verdict: "inconclusive" when no ablation differs from the full recipe beyond its interval; else
    "reproduced" when the mean losses order exactly as the paper's, "partly reproduced" when Kendall's tau
    with the paper's order is at least `min_tau`, otherwise "not reproduced"."""
    criterion = (f"order of mean losses (diverged = worst) vs the paper's; exact: reproduced, Kendall tau ≥ "
                 f"{min_tau}: partly; no ablation beyond the 95% interval of the full recipe: inconclusive")
    missing = [r for r in RECIPE_ROWS if r not in rows]
    if missing:
        return "", (f"not measured: Table 1 rows not run here ({', '.join(missing)}); run "
                    "config/ablation.yaml"), criterion
    full, _ = _losses(summaries, rows["full_recipe"])
    ranked, parts, beyond = [], [], 0
    for row in RECIPE_ROWS:
        losses, diverged = _losses(summaries, rows[row])
        ranked.append(math.inf if diverged else losses.mean())
        if row == "full_recipe":
            parts.append(f"full {losses.mean():.3f}")
            continue
        diff, ci, effect = _difference(losses, full, diverged)
        beyond += effect in ("worse", "better", "diverged")
        parts.append(f"{row} " + ("diverged" if diverged else f"{diff:+.3f} ± {ci:.3f}"))
    tau = kendall_tau([PAPER_TABLE1[r][1] for r in RECIPE_ROWS], ranked)
    ours = "; ".join(parts) + f" (vs full); Kendall tau with the paper's order {tau:+.2f}"
    if not beyond:
        verdict = "inconclusive: no ablation differs from the full recipe beyond the seed-to-seed spread"
    elif tau == 1.0:
        verdict = "reproduced"
    elif tau >= min_tau:
        verdict = "partly reproduced"
    else:
        verdict = "not reproduced"
    return ours, verdict, criterion
