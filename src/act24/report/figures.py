"""Figures: each takes tidy DataFrames (see report.results) and returns a matplotlib Figure."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

DROP_COLUMNS = {
    "drop24_features": "along features (forward)",
    "drop24_tokens": "along tokens, natural order",
    "drop24_tokens_permuted": "along tokens, permuted",
    "drop24_tokens_permuted_split": "along tokens, permuted, {split} densest features dense",
}


def sparsity_over_training(stats: pd.DataFrame, title: str = "") -> plt.Figure:
    """Fig. 1 mirror: fraction of exact zeros of the FFN activations per layer over training
    (mean over seeds, band = min..max over seeds)."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=stats, x="tokens", y="zero_frac", hue="layer", palette="viridis",
                 errorbar=("pi", 100), ax=ax, legend="full")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    ax.set(xlabel="training tokens", ylabel="fraction of zero activations", ylim=(0, 1),
           title=title or "FFN activation sparsity during training")
    ax.legend(title="layer", ncols=2, fontsize=8)
    fig.tight_layout()
    return fig


def loss_curves(metrics: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Training loss (smoothed, mean over seeds) and validation loss against training tokens."""
    labels = labels or {}
    df = metrics.assign(label=metrics["variant"].map(lambda v: labels.get(v, v)))
    train = df[df["split"] == "train"].sort_values("step").copy()
    train["loss"] = train.groupby(["variant", "seed"])["loss"].transform(
        lambda s: s.ewm(alpha=0.1).mean())
    order = list(dict.fromkeys(df["label"]))  # one colour per variant in both panels
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, part, title in ((axes[0], train, "training loss (EMA 0.1)"),
                            (axes[1], df[df["split"] == "val"], "validation loss (held-out documents)")):
        sns.lineplot(data=part, x="tokens", y="loss", hue="label", hue_order=order, errorbar=("pi", 100), ax=ax)
        ax.set(xlabel="training tokens", ylabel="cross-entropy (nats/token)", title=title)
        ax.legend(title=None)
    last = df[df["split"] == "val"]["loss"]
    axes[0].set_ylim(last.min() - 0.3, last.quantile(0.5) + 1.0)
    fig.tight_layout()
    return fig


def table1_ablation(metrics: pd.DataFrame, table: pd.DataFrame) -> plt.Figure:
    """Table 1 mirror. Left: each Table 1 variant's validation loss minus dense Squared-ReLU's (mean over
    seeds at each evaluation; band min..max over seeds). Right: each row's final-loss difference to dense
    Squared-ReLU with its 95% interval over seeds (diverged rows marked); the paper's difference is in the
    row label. `table`: report.ablation.table1."""
    rows = table[(table["row"] != "context") & (table["variant"] != "")]  # read with report.ablation.read_table1
    labels = {r.variant: f"{r.label}\n(paper {r.paper_diff:+.3f})" for r in rows.itertuples()}
    val = metrics[(metrics["split"] == "val") & metrics["variant"].isin(labels)]
    baseline = rows.loc[rows["row"] == "dense_sqrelu", "variant"]
    fig, axes = plt.subplots(1, 2, figsize=(13, 4.5), gridspec_kw={"width_ratios": [1.1, 1]})
    if not baseline.empty:
        ref = val[val["variant"] == baseline.iloc[0]].groupby("step")["loss"].mean()
        val = val.assign(diff=val["loss"] - val["step"].map(ref), label=val["variant"].map(
            lambda v: labels[v].split("\n")[0]))
        sns.lineplot(data=val, x="tokens", y="diff", hue="label", errorbar=("pi", 100), ax=axes[0])
        late = val[val["step"] >= val["step"].max() / 4]["diff"]
        axes[0].set_ylim(min(late.min(), 0) - 0.02, max(late.max(), 0) + 0.02)
        axes[0].legend(fontsize=7, title=None)
    axes[0].axhline(0, color="grey", lw=0.8, ls="--")
    axes[0].set(xlabel="training tokens", ylabel="validation loss − dense Squared-ReLU (nats)",
                title="during training")
    ax = axes[1]
    y = np.arange(len(rows))[::-1]
    finite = rows["diff_vs_dense_sqrelu"].notna().to_numpy()
    est = rows.loc[finite, "diff_vs_dense_sqrelu"]
    err = [(est - rows.loc[finite, "ci_low"]).fillna(0), (rows.loc[finite, "ci_high"] - est).fillna(0)]
    ax.errorbar(est, y[finite], xerr=err, fmt="o", color="black", capsize=3)
    methods = sorted({m.split(",")[0] for m in rows["interval"] if m})
    for yi, r in zip(y, rows.itertuples()):
        if r.diverged:
            ax.annotate(f"diverged ({r.diverged}/{r.seeds} seeds)", (0, yi), color="firebrick", fontsize=8,
                        va="center")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    ax.set_yticks(y, [labels[v] for v in rows["variant"]], fontsize=7)
    ax.set(xlabel=f"final validation loss − dense Squared-ReLU (nats), 95% interval ({' / '.join(methods)})",
           title="at the end")
    fig.tight_layout()
    return fig


def drop_fractions(stats: pd.DataFrame) -> plt.Figure:
    """Fraction of non-zeros a 2:4 mask drops over training, per direction (mean over layers and seeds)."""
    long = stats.melt(id_vars=["tokens", "layer", "seed"], value_vars=list(DROP_COLUMNS),
                      var_name="mask", value_name="dropped")
    # The split's dense fraction, as the statistics recorded it (runs written before they did: not known).
    split = ", ".join(f"{f:.0%}" for f in stats.get("split_dense_fraction", pd.Series(dtype=float)).unique()) or "the"
    long["mask"] = long["mask"].map({k: v.format(split=split) for k, v in DROP_COLUMNS.items()})
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=long, x="tokens", y="dropped", hue="mask", errorbar=None, ax=ax)
    ax.set(xlabel="training tokens", ylabel="fraction of non-zeros dropped by 2:4",
           title="What a 2:4 mask would drop (mean over layers)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def feature_density(density: np.ndarray, title: str = "") -> plt.Figure:
    """Per-feature density (fraction of tokens with a non-zero), features sorted densest first, per layer.
    `density` is (layers, features) at one step."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    n_features = density.shape[1]
    x = np.arange(1, n_features + 1) / n_features
    colors = sns.color_palette("viridis", density.shape[0])
    for layer, row in enumerate(density):
        ax.plot(x, np.sort(row)[::-1], color=colors[layer], label=f"layer {layer}")
    ax.axvline(0.05, color="grey", ls=":", lw=0.8)
    ax.text(0.055, 0.95, "5% densest", transform=ax.get_xaxis_transform(), fontsize=8, va="top")
    ax.set(xlabel="feature rank / F", ylabel="fraction of tokens active", ylim=(0, 1),
           title=title or "Per-feature density at the end of training")
    ax.legend(fontsize=8, ncols=2)
    fig.tight_layout()
    return fig


def save(fig: plt.Figure, path) -> None:
    fig.savefig(path, dpi=130)
    plt.close(fig)


def not_measured(title: str, reason: str) -> plt.Figure:
    """A placeholder figure that says why there is nothing to draw (e.g. no CUDA device)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", fontsize=12)
    ax.text(0.5, 0.35, reason, ha="center", fontsize=10, color="firebrick")
    return fig


def ffn_speedups(speedups: pd.DataFrame, ideal: dict[str, float]) -> plt.Figure:
    """Fig. 5 mirror: FFN speedup (fastest dense path of the same precision / 2:4 path, geometric mean of the
    interleaved rounds' ratios) against tokens, per shape and pass, for each precision and 2:4 path, with its 95%
    interval (band) and the Amdahl bound of the measured GEMM times (dotted, same colour)."""
    passes = ["forward", "forward+backward"]
    shapes = list(dict.fromkeys(speedups["shape"]))
    fig, axes = plt.subplots(len(passes), len(shapes), figsize=(4.6 * len(shapes), 7), sharex=True, sharey="row",
                             squeeze=False)
    labels = (speedups["precision"] + " " + speedups["sparse_path"]).unique()
    colours = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    for i, ps in enumerate(passes):
        for j, shape in enumerate(shapes):
            ax = axes[i][j]
            part = speedups[(speedups["pass"] == ps) & (speedups["shape"] == shape)]
            for name, g in part.groupby(part["precision"] + " " + part["sparse_path"], sort=False):
                g = g.sort_values("T")
                ax.plot(g["T"], g["speedup"], marker="o", color=colours[name], label=name)
                if "speedup_lo" in g:
                    ax.fill_between(g["T"], g["speedup_lo"], g["speedup_hi"], color=colours[name], alpha=0.2, lw=0)
                if "amdahl_bound" in g:
                    ax.plot(g["T"], g["amdahl_bound"], color=colours[name], lw=0.8, ls=":")
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            bound = ideal["forward" if ps == "forward" else "forward_backward"]
            ax.axhline(bound, color="firebrick", lw=0.8, ls="-.", label=f"ideal {bound:.2f}x (2x GEMMs, rest free)")
            ax.set(xscale="log", title=f"{shape}: {ps}", xlabel="tokens", ylabel="speedup over dense (x)")
            ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def ffn_stages(stages: pd.DataFrame, tokens: int) -> plt.Figure:
    """Where the time goes at `tokens` tokens: per shape, pass and precision, each path's time as stacked bars of
    GEMM kernels, other kernels and the rest of the timed median (launch gaps, host time)."""
    part = stages[stages["T"] == tokens]
    cols = list(dict.fromkeys(zip(part["precision"], part["pass"])))
    shapes = list(dict.fromkeys(part["shape"]))
    fig, axes = plt.subplots(len(shapes), len(cols), figsize=(4.2 * len(cols), 2.6 * len(shapes)), squeeze=False)
    fig.suptitle(f"FFN time per stage at {tokens} tokens", fontsize=11)
    parts = [("gemm_ms", "GEMM kernels", "tab:blue"), ("other_kernels_ms", "other kernels", "tab:orange"),
             ("gaps_ms", "rest (gaps, host)", "tab:gray")]
    for i, shape in enumerate(shapes):
        for j, (precision, ps) in enumerate(cols):
            ax = axes[i][j]
            g = part[(part["shape"] == shape) & (part["precision"] == precision) & (part["pass"] == ps)]
            left = np.zeros(len(g))
            for col, name, colour in parts:
                v = g[col].clip(lower=0).to_numpy()
                ax.barh(g["path"], v, left=left, color=colour, label=name)
                left += v
            ax.set_title(f"{shape}, {precision} {ps}", fontsize=9)
            ax.set_xlabel("ms")
            ax.tick_params(axis="y", labelsize=7)
            ax.invert_yaxis()
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def split_gemm(split: pd.DataFrame, ideal_split: float) -> plt.Figure:
    """Fig. 6 mirror: dense-equivalent TFLOP/s of the K = tokens GEMM: dense, 2:4 and the 95/5 split."""
    shapes = list(dict.fromkeys(split["shape"]))
    fig, axes = plt.subplots(1, len(shapes), figsize=(5.5 * len(shapes), 4), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        part = split[split["shape"] == shape]
        sns.lineplot(data=part, x="T", y="TFLOPs_dense_equivalent", hue="gemm", marker="o", ax=ax)
        dense = part[part["gemm"] == "dense"].sort_values("T")
        ax.plot(dense["T"], dense["TFLOPs_dense_equivalent"] * ideal_split, color="firebrick", lw=0.8, ls=":",
                label=f"ideal split ({ideal_split:.2f}x dense)")
        ax.set(xscale="log", xlabel="tokens (K)", ylabel="TFLOP/s (dense-equivalent)", title=f"{shape}: dW GEMM")
        ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
