"""Table 1 of the paper at our scale: the 2:4 recipe's ablation, and claim C6 in two parts.

`analysis.table1` maps each of the paper's rows to the variant that mirrors it. Losses are the runs' final
validation losses; a run whose training loss became non-finite (train.on_nonfinite: stop) has none. Every
difference is per seed over the seeds both variants ran (paired t, at least two shared), else Welch t
(act24.intervals).

C6a, the order: Kendall's tau between our mean losses and the paper's, with the exact permutation p-value over
the five recipe rows. C6b, the effect sizes: for each ablation, whether our interval of its difference to the
full recipe includes the paper's difference (and excludes zero), rules it out, or cannot tell; with
divergence and plateau detection on the validation curves (`Dynamics`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import pandas as pd

from ..intervals import Interval, difference, order_test
from ..io import read_csv

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
ABLATION_ROWS = RECIPE_ROWS[1:]
BASELINE_ROW = "dense_sqrelu"
# What the paper reports beyond the final loss (Table 1's notes).
PAPER_BEHAVIOUR = {"no_token_permutation": "plateaus", "no_dy1_mask": "diverges"}


@dataclass(frozen=True)
class Dynamics:
    """How a validation curve is classified (claims.divergence_rise, plateau_share, plateau_gain_ratio).

    diverged: the training loss became non-finite, or the last validation loss is more than `divergence_rise`
    nats above the run's best. plateaued: over the last `plateau_share` of the steps, the validation loss
    improves by less than `plateau_gain_ratio` times what the full recipe's run with the same seed improves
    (gain = best loss before the window - best loss within it)."""

    divergence_rise: float
    plateau_share: float
    plateau_gain_ratio: float

    def late_gain(self, val: pd.DataFrame) -> float:
        """Improvement of the best validation loss over the last `plateau_share` of the steps (`val`: step, loss)."""
        if val.empty:
            return math.nan
        cut = val["step"].max() * (1 - self.plateau_share)
        before, within = val.loc[val["step"] <= cut, "loss"], val.loc[val["step"] > cut, "loss"]
        return before.min() - within.min() if len(before) and len(within) else math.nan

    def diverged(self, summary: pd.Series, val: pd.DataFrame) -> bool:
        if pd.notna(summary.get("diverged_at_step")) or pd.isna(summary.get("final_val_loss")):
            return True
        return bool(len(val)) and val.sort_values("step")["loss"].iloc[-1] > val["loss"].min() + self.divergence_rise

    def plateaued(self, val: pd.DataFrame, reference: pd.DataFrame) -> bool:
        gain, ref = self.late_gain(val), self.late_gain(reference)
        return bool(ref > 0 and gain < self.plateau_gain_ratio * ref)


def final_losses(summaries: pd.DataFrame, variant: str | None) -> tuple[pd.Series, int]:
    """(final losses of the finished runs indexed by seed, number of diverged runs) of `variant`."""
    runs = summaries[summaries["variant"] == variant]
    diverged = runs["diverged_at_step"].notna() if "diverged_at_step" in runs else pd.Series(False, runs.index)
    diverged |= runs["final_val_loss"].isna()
    finished = runs[~diverged]
    return pd.Series(finished["final_val_loss"].astype(float).to_numpy(), index=finished["seed"].to_numpy()), \
        int(diverged.sum())


def _effect(d: Interval) -> str:
    if not d.defined:
        return d.method
    return "worse" if d.low > 0 else "better" if d.high < 0 else "within seed noise"


def _vs_paper(d: Interval | None, diverged: int, n: int, paper: float, behaviour: str | None) -> str:
    """Our difference to the full recipe against the paper's: consistent / ruled out / cannot tell."""
    if diverged:
        return ("consistent: diverged" if behaviour == "diverges"
                else f"ruled out: {diverged} of {n} runs diverged, the paper's did not")
    if d is None or not d.defined:
        return "cannot tell: no interval"
    if not d.contains(paper):
        return f"ruled out: the paper's {paper:+.3f} is outside our interval"
    return "cannot tell: our interval contains 0 and the paper's difference" if d.contains(0.0) else "consistent"


def _curves(metrics: pd.DataFrame | None) -> dict[tuple[str, int], pd.DataFrame]:
    if metrics is None or metrics.empty:
        return {}
    val = metrics[metrics["split"] == "val"]
    return {(v, int(s)): g[["step", "loss"]] for (v, s), g in val.groupby(["variant", "seed"])}


def table1(summaries: pd.DataFrame, rows: dict[str, str], labels: dict[str, str] | None = None,
           metrics: pd.DataFrame | None = None, dynamics: Dynamics | None = None) -> pd.DataFrame:
    """One row per Table 1 row (the paper's order), then every other variant of `summaries` as context.

    `rows` maps a Table 1 row (a key of PAPER_TABLE1) to its variant; `metrics` (report.results.read_metrics)
    and `dynamics` (the config's rule) give the divergence and plateau counts; without them a run counts as
    diverged only by a non-finite loss, and plateaus are not counted. Columns: the paper's loss and its
    difference to dense Squared-ReLU; ours (mean ± std over finished seeds); the difference to dense
    Squared-ReLU with its 95% interval; for the ablations, the difference to the full recipe, the paper's, and
    whether ours is consistent with it."""
    labels = labels or {}
    curves = _curves(metrics) if dynamics else {}
    base_losses = final_losses(summaries, rows.get(BASELINE_ROW))[0]
    full_variant = rows.get("full_recipe")
    full_losses = final_losses(summaries, full_variant)[0]
    mapped = {v: r for r, v in rows.items()}
    order = [(r, rows.get(r)) for r in PAPER_TABLE1]
    order += [(None, v) for v in dict.fromkeys(summaries["variant"]) if v not in mapped]
    out = []
    for row, variant in order:
        paper_desc, paper_loss = PAPER_TABLE1.get(row, ("", math.nan))
        losses, diverged = final_losses(summaries, variant)
        n = len(losses) + diverged
        runs = summaries[summaries["variant"] == variant]
        d = difference(losses, base_losses) if n and not diverged and variant != rows.get(BASELINE_ROW) else None
        record = {
            "row": row or "context", "paper": paper_desc or "(not in Table 1)", "variant": variant or "",
            "label": labels.get(variant, variant) if variant else "not run (config/ablation.yaml runs it)",
            "paper_loss": paper_loss, "paper_diff": paper_loss - PAPER_TABLE1[BASELINE_ROW][1],
            "seeds": n, "diverged": diverged if not dynamics else sum(
                dynamics.diverged(r, curves.get((variant, int(r.seed)), pd.DataFrame(columns=["step", "loss"])))
                for _, r in runs.iterrows()),
            "val_loss_mean": losses.mean() if len(losses) else math.nan,
            "val_loss_std": losses.std(ddof=1) if len(losses) > 1 else math.nan,
            "diff_vs_dense_sqrelu": d.estimate if d else (0.0 if n and row == BASELINE_ROW else math.nan),
            "ci_low": d.low if d else math.nan, "ci_high": d.high if d else math.nan,
            "interval": d.method if d else "",
            "effect": ("baseline" if row == BASELINE_ROW else "not run" if not n else "diverged" if diverged
                       else _effect(d)),
        }
        if row in ABLATION_ROWS:
            paper_vs_full = paper_loss - PAPER_TABLE1["full_recipe"][1]
            f = difference(losses, full_losses) if n and not diverged and len(full_losses) else None
            plateaued = [dynamics.plateaued(curves[(variant, s)], curves[(full_variant, s)])
                         for s in losses.index if (variant, s) in curves and (full_variant, s) in curves]
            record.update({
                "paper_diff_vs_full": paper_vs_full, "diff_vs_full": f.estimate if f else math.nan,
                "full_ci_low": f.low if f else math.nan, "full_ci_high": f.high if f else math.nan,
                "plateaued": sum(plateaued) if plateaued else math.nan,
                "vs_paper": _vs_paper(f, diverged, n, paper_vs_full, PAPER_BEHAVIOUR.get(row)) if n else "not run",
            })
        out.append(record)
    return pd.DataFrame(out)


def read_table1(path) -> pd.DataFrame:
    """A table1 CSV as `table1` returned it (empty text cells stay empty strings)."""
    df = read_csv(path, "Table 1 CSV")
    text = df.select_dtypes(exclude="number").columns
    return df.astype({c: object for c in text}).fillna({c: "" for c in text})


def _not_run(t: pd.DataFrame) -> str:
    """Why a C6 part cannot be measured from table1 `t` (indexed by row), or "" when every recipe row ran."""
    missing = [r for r in RECIPE_ROWS if r not in t.index or not t.loc[r, "seeds"]]
    return (f"not measured: Table 1 rows not run here ({', '.join(missing)}); run config/ablation.yaml"
            if missing else "")


def order_claim(table: pd.DataFrame, alpha: float) -> tuple[str, str, str]:
    """Claim C6a from `table1(...)`: do the recipe rows' mean losses order like the paper's? (ours, verdict,
    criterion). Kendall's tau with the paper's order (diverged rows rank worst) and its exact one-sided
    permutation p-value: p ≤ alpha reproduced; the reverse order at p ≤ alpha not reproduced; else
    inconclusive."""
    criterion = (f"Kendall tau of the mean losses (diverged = worst) with the paper's order of the {len(RECIPE_ROWS)} "
                 f"recipe rows; exact permutation p-value ≤ {alpha}: reproduced; the reverse order at p ≤ {alpha}: "
                 "not reproduced; else inconclusive")
    t = table.set_index("row")
    if why := _not_run(t):
        return "", why, criterion
    ours = [math.inf if t.loc[r, "effect"] == "diverged" else t.loc[r, "val_loss_mean"] for r in RECIPE_ROWS]
    paper = [PAPER_TABLE1[r][1] for r in RECIPE_ROWS]
    tau, p = order_test(paper, ours)
    _, p_reverse = order_test([-v for v in paper], ours)
    text = ("; ".join(f"{r} " + ("diverged" if math.isinf(v) else f"{v:.3f}") for r, v in zip(RECIPE_ROWS, ours))
            + f"; Kendall tau with the paper's order {tau:+.2f}, exact permutation p = {p:.3f}")
    if p <= alpha:
        verdict = "reproduced"
    elif p_reverse <= alpha:
        verdict = "not reproduced"
    else:
        verdict = f"inconclusive: Kendall tau {tau:+.2f} is not beyond chance (p = {p:.2f} under a random order)"
    return text, verdict, criterion


def effects_claim(table: pd.DataFrame, tokens: int | None = None) -> tuple[str, str, str]:
    """Claim C6b from `table1(...)`: the paper's effect sizes of the ablations against ours (ours, verdict,
    criterion). Every ablation consistent: reproduced; some ruled out and some consistent: partly; ruled out
    and none consistent: not observed at `tokens` training tokens per run (the paper's effects come from 63B tokens:
    an interval that excludes them says what this scale shows, not that the paper is wrong); else inconclusive."""
    criterion = ("per ablation, the 95% interval of its difference to the full recipe: contains the paper's "
                 "difference and not 0 (or both diverged): consistent; excludes the paper's: ruled out; contains "
                 "both: cannot tell")
    t = table.set_index("row")
    if why := _not_run(t):
        return "", why, criterion
    parts, outcome = [], {}
    for r in ABLATION_ROWS:
        x = t.loc[r]
        ours = "diverged" if x["effect"] == "diverged" else (
            f"{x['diff_vs_full']:+.3f} [{x['full_ci_low']:+.3f}, {x['full_ci_high']:+.3f}]")
        extra = ""
        if r == "no_token_permutation" and pd.notna(x["plateaued"]):
            extra = f", plateaued {int(x['plateaued'])} of {int(x['seeds'])}"
        if r == "no_dy1_mask":
            extra = f", diverged {int(x['diverged'])} of {int(x['seeds'])}"
        parts.append(f"{r} {ours} vs paper {x['paper_diff_vs_full']:+.3f}{extra}")
        outcome[r] = x["vs_paper"].split(":")[0]
    named = lambda kind: ", ".join(r for r, o in outcome.items() if o == kind)  # noqa: E731
    counts = {k: sum(o == k for o in outcome.values()) for k in ("consistent", "ruled out", "cannot tell")}
    if counts["consistent"] == len(outcome):
        verdict = "reproduced"
    elif counts["ruled out"]:
        absent = f"not observed at {tokens / 1e6:.3g}M tokens" if tokens else "not observed at this scale"
        verdict = (f"{'partly reproduced' if counts['consistent'] else absent}: our intervals rule out the "
                   f"paper's effect of {named('ruled out')}"
                   + (f"; consistent: {named('consistent')}" if counts["consistent"] else "")
                   + (f"; cannot tell: {named('cannot tell')}" if counts["cannot tell"] else ""))
    else:
        verdict = f"inconclusive: cannot tell {named('cannot tell')} from no effect"
    return "; ".join(parts) + " (difference to the full recipe, paired 95% interval)", verdict, criterion


def gap_curves(metrics: pd.DataFrame, rows: dict[str, str]) -> pd.DataFrame:
    """Each ablation's validation-loss gap to the full recipe at every evaluation step, paired by seed: one row per
    (ablation, step) with the mean gap, its 95% interval over seeds and the paper's final gap. Growth, a plateau
    or a divergence shows in how the gap moves with training, not only at its end. Ablations or a full recipe that
    did not run give no rows."""
    val = metrics[metrics["split"] == "val"]
    full = val[val["variant"] == rows.get("full_recipe")].set_index(["seed", "step"])["loss"]
    out = []
    for row in ABLATION_ROWS:
        runs = val[val["variant"] == rows.get(row)] if rows.get(row) else val.iloc[:0]
        for step, g in runs.groupby("step"):
            gaps = {s: loss - full[(s, step)] for s, loss in zip(g["seed"], g["loss"]) if (s, step) in full.index}
            if not gaps:
                continue
            d = difference(pd.Series(gaps), pd.Series(0.0, index=list(gaps)))
            out.append({"row": row, "variant": rows[row], "step": int(step), "tokens": int(g["tokens"].iloc[0]),
                        "seeds": len(gaps), "gap": d.estimate, "ci_low": d.low, "ci_high": d.high,
                        "paper_final_gap": PAPER_TABLE1[row][1] - PAPER_TABLE1["full_recipe"][1]})
    return pd.DataFrame(out, columns=["row", "variant", "step", "tokens", "seeds", "gap", "ci_low", "ci_high",
                                      "paper_final_gap"])
