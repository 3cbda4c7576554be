"""The scaling views: how the quality claims move with model size (`analysis.scale`: size -> its SwiGLU,
Squared-ReLU and 2:4 variants).

- `gap_table`: per size, the C1 gap (Squared-ReLU − SwiGLU) and the C5 gap (2:4 recipe − dense Squared-ReLU) with
  their paired 95% intervals and non-inferiority verdicts (act24.report.claims' rule, the same margins);
- `drop_table`: per size, the share of non-zeros the forward 2:4 mask drops (pooled over layers, C4's statistic)
  and the zero fraction (C2), with t intervals over seeds;
- figures of both against size, and the per-layer zero fraction against training tokens for every size (Fig. 1 at
  scale). A size or variant that did not run is a row that says so.
"""

from __future__ import annotations

import math

import matplotlib.pyplot as plt
import pandas as pd

from ..intervals import decide, mean_interval
from .claims import LossGap, pooled_drop

GAPS = {"C1": ("sqrelu", "swiglu", "Squared-ReLU − SwiGLU"),
        "C5": ("sparse", "sqrelu", "2:4 recipe − dense Squared-ReLU")}


def _size_facts(summaries: pd.DataFrame, variant: str | None) -> dict:
    runs = summaries[summaries["variant"] == variant] if variant else summaries.iloc[:0]
    if runs.empty:
        return {"non_embedding_params": math.nan, "tokens": math.nan}
    return {"non_embedding_params": int(runs["non_embedding_params"].iloc[0]), "tokens": int(runs["tokens"].max())}


def gap_table(summaries: pd.DataFrame, scale: dict[str, dict[str, str]], margins: dict[str, float]) -> pd.DataFrame:
    """One row per (size, claim): the gap's estimate, interval, seeds and non-inferiority verdict, or why not."""
    rows = []
    for size, spec in scale.items():
        facts = _size_facts(summaries, spec.get("sqrelu"))
        for cid, (a, b, what) in GAPS.items():
            row = {"size": size, **facts, "claim": cid, "gap": what, "variant": spec.get(a, ""),
                   "baseline": spec.get(b, "")}
            missing = [v or f"no {k} variant" for k, v in ((a, spec.get(a)), (b, spec.get(b)))
                       if not v or not (summaries["variant"] == v).any()]
            if missing:
                rows.append({**row, "verdict": f"not run: {', '.join(missing)}"})
                continue
            gap = LossGap.of(summaries, spec[a], spec[b], margins[cid])
            d = gap.interval
            numbers = {} if d is None else {"estimate": d.estimate, "ci_low": d.low, "ci_high": d.high,
                                            "interval": d.method, "seeds": len(gap.losses)}
            rows.append({**row, **numbers, "verdict": gap.verdict, "equivalence": gap.equivalence})
    return pd.DataFrame(rows)


def drop_table(stats: pd.DataFrame, summaries: pd.DataFrame, scale: dict[str, dict[str, str]],
               max_drop: float) -> pd.DataFrame:
    """Per size (its dense Squared-ReLU variant, last statistics step): the pooled 2:4 drop and the zero
    fraction, t intervals over seeds, and the lowest layer's zero fraction."""
    rows = []
    for size, spec in scale.items():
        variant = spec.get("sqrelu")
        st = stats[stats["variant"] == variant]
        row = {"size": size, "variant": variant, **_size_facts(summaries, variant)}
        if st.empty:
            rows.append({**row, "verdict": "not run"})
            continue
        final = st[st["step"] == st["step"].max()]
        drop, zeros = mean_interval(pooled_drop(final)), mean_interval(final.groupby("seed")["zero_frac"].mean())
        rows.append({**row, "seeds": final["seed"].nunique(), "drop": drop.estimate, "drop_low": drop.low,
                     "drop_high": drop.high, "zero_frac": zeros.estimate, "zero_frac_low": zeros.low,
                     "zero_frac_high": zeros.high,
                     "lowest_layer_zero_frac": final.groupby("layer")["zero_frac"].mean().min(),
                     "verdict": decide(drop, high=max_drop)})
    return pd.DataFrame(rows)


def _errorbars(ax, df: pd.DataFrame, y: str, lo: str, hi: str, **kw) -> None:
    ok = df.dropna(subset=[y])
    ax.errorbar(ok["non_embedding_params"], ok[y], yerr=[(ok[y] - ok[lo]).fillna(0), (ok[hi] - ok[y]).fillna(0)],
                capsize=4, marker="o", **kw)
    for _, r in ok.iterrows():
        ax.annotate(r["size"], (r["non_embedding_params"], r[y]), textcoords="offset points", xytext=(6, 4))


def gaps_figure(table: pd.DataFrame, margins: dict[str, float]) -> plt.Figure:
    """The C1 and C5 gaps against non-embedding parameters, with their 95% intervals and the +margin line."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=False)
    for ax, (cid, (_, _, what)) in zip(axes, GAPS.items()):
        _errorbars(ax, table[table["claim"] == cid], "estimate", "ci_low", "ci_high", color="C0")
        ax.axhline(margins[cid], color="C3", ls="--", lw=1, label=f"non-inferiority margin +{margins[cid]}")
        ax.axhline(0, color="grey", lw=0.8)
        ax.set_xscale("log")
        ax.set(xlabel="non-embedding parameters", ylabel="final validation loss gap (nats)", title=f"{cid}: {what}")
        ax.legend(loc="best", fontsize=8)
    fig.tight_layout()
    return fig


def drop_figure(table: pd.DataFrame, max_drop: float) -> plt.Figure:
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    _errorbars(axes[0], table, "drop", "drop_low", "drop_high", color="C1")
    axes[0].axhline(max_drop, color="C3", ls="--", lw=1, label=f"C4 threshold {max_drop:.0%}")
    axes[0].set(ylabel="non-zeros dropped by the 2:4 mask (pooled)", title="C4: 2:4 drop against size")
    _errorbars(axes[1], table, "zero_frac", "zero_frac_low", "zero_frac_high", color="C2")
    axes[1].set(ylabel="zero fraction (mean of layers)", title="C2: sparsity against size")
    for ax in axes:
        ax.set_xscale("log")
        ax.set_xlabel("non-embedding parameters")
        ax.yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.1%}"))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    return fig


def sparsity_figure(stats: pd.DataFrame, scale: dict[str, dict[str, str]], paper_min: float) -> plt.Figure:
    """Fig. 1 at scale: per-layer zero fraction (mean over seeds) against training tokens, one panel per size."""
    sizes = list(scale)
    fig, axes = plt.subplots(1, len(sizes), figsize=(4 * len(sizes), 3.6), sharey=True, squeeze=False)
    for ax, size in zip(axes[0], sizes):
        st = stats[stats["variant"] == scale[size].get("sqrelu")]
        if st.empty:
            ax.text(0.5, 0.5, "not run", ha="center", va="center", transform=ax.transAxes)
        else:
            curves = st.groupby(["layer", "tokens"])["zero_frac"].mean().unstack("layer")
            cmap = plt.get_cmap("viridis", curves.shape[1])
            for i, layer in enumerate(curves.columns):
                ax.plot(curves.index, curves[layer], color=cmap(i), lw=1.2, label=f"layer {layer}")
            ax.legend(fontsize=6, ncol=2, loc="lower right")
        ax.axhline(paper_min, color="C3", ls="--", lw=1)
        ax.set(title=f"{size}: {scale[size].get('sqrelu')}", xlabel="training tokens")
    axes[0][0].set_ylabel("zero fraction of relu(Y1)²")
    axes[0][0].yaxis.set_major_formatter(plt.FuncFormatter(lambda v, _: f"{v:.0%}"))
    fig.tight_layout()
    return fig
