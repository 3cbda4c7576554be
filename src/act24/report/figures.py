"""Figures: each takes tidy DataFrames (see report.results) and returns a matplotlib Figure."""

from __future__ import annotations

import math

import matplotlib.lines as mlines
import matplotlib.pyplot as plt
import matplotlib.ticker as mticker
import numpy as np
import pandas as pd
import seaborn as sns

from .palette import variant_palette

DROP_COLUMNS = {
    "drop24_features": "along features (forward)",
    "drop24_tokens": "along tokens, natural order",
    "drop24_tokens_permuted": "along tokens, permuted",
    "drop24_tokens_permuted_split": "along tokens, permuted, {split} densest features dense",
}


def sparsity_over_training(stats: pd.DataFrame, title: str = "", paper_min: float | None = None) -> plt.Figure:
    """Fig. 1 mirror: fraction of exact zeros of the FFN activations per layer over training
    (mean over seeds, band = min..max over seeds); `paper_min`: the paper's lowest per-layer sparsity at the end of
    its training, drawn as a line."""
    fig, ax = plt.subplots(figsize=(6.5, 4))
    sns.lineplot(data=stats, x="tokens", y="zero_frac", hue="layer", palette="viridis",
                 errorbar=("pi", 100), ax=ax, legend="full")
    ax.axhline(0.5, color="grey", lw=0.8, ls=":")
    if paper_min is not None:
        ax.axhline(paper_min, color="black", lw=0.8, ls="--")
        ax.text(0.01, paper_min + 0.01, f"paper: ≥ {paper_min:.0%} in every layer after 63B tokens (1.5B model)",
                transform=ax.get_yaxis_transform(), fontsize=7)
    _training_tokens_axis(ax)
    ax.set(ylabel="fraction of zero activations", ylim=(0, 1),
           title=title or "FFN activation sparsity during training")
    ax.legend(title="layer", ncols=2, fontsize=8)
    fig.tight_layout()
    return fig


def loss_curves(metrics: pd.DataFrame, labels: dict[str, str] | None = None,
                palette: dict[str, str] | None = None, reference: str | None = None) -> plt.Figure:
    """Training loss (smoothed, mean over seeds) and validation loss against training tokens, and, with a
    `reference` variant that ran, each variant's validation loss minus the reference's (paired on seed and step,
    band: the seeds' range): the differences that matter, which the loss panels draw as overlapping lines.
    `palette`: variant -> colour (report.palette), shared with the other figures."""
    labels = labels or {}
    df = metrics.assign(label=metrics["variant"].map(lambda v: labels.get(v, v)))
    train = df[df["split"] == "train"].sort_values("step").copy()
    train["loss"] = train.groupby(["variant", "seed"])["loss"].transform(
        lambda s: s.ewm(alpha=0.1).mean())
    order = list(dict.fromkeys(df["label"]))  # one colour per variant in every panel
    colours = _label_colours(df, palette or variant_palette(list(dict.fromkeys(df["variant"]))))
    val = df[df["split"] == "val"]
    with_diff = reference is not None and reference in set(val["variant"])
    fig, axes = plt.subplots(1, 3 if with_diff else 2, figsize=(16.5 if with_diff else 11, 4))
    axes[1].sharey(axes[0])
    for ax, part, title in ((axes[0], train, "training loss (EMA 0.1)"),
                            (axes[1], val, "validation loss (held-out documents)")):
        sns.lineplot(data=part, x="tokens", y="loss", hue="label", hue_order=order, palette=colours,
                     errorbar=("pi", 100), ax=ax, legend=ax is axes[0])
        ax.set(ylabel="cross-entropy (nats/token)", title=title)
        _training_tokens_axis(ax)
    if with_diff:
        _difference_panel(axes[2], val, reference, labels.get(reference, reference), order, colours)
    handles, names = axes[0].get_legend_handles_labels()
    axes[0].get_legend().remove()
    fig.legend(handles, names, loc="lower center", ncols=min(len(names), 4), fontsize=8, frameon=False)
    axes[0].set_ylim(val["loss"].min() - 0.3, val["loss"].quantile(0.5) + 1.0)
    fig.tight_layout(rect=(0, 0.04 + 0.05 * math.ceil(len(names) / 4), 1, 1))
    return fig


def _difference_panel(ax, val: pd.DataFrame, reference: str, name: str, order: list, colours: dict) -> None:
    ref = val[val["variant"] == reference].set_index(["seed", "step"])["loss"]
    diff = val.assign(diff=val["loss"].to_numpy()
                      - ref.reindex(pd.MultiIndex.from_frame(val[["seed", "step"]])).to_numpy()).dropna(subset=["diff"])
    sns.lineplot(data=diff, x="tokens", y="diff", hue="label", hue_order=order, palette=colours,
                 errorbar=("pi", 100), ax=ax, legend=False)
    ax.axhline(0, color="grey", lw=0.8, ls="--")
    late = diff.loc[diff["step"] >= diff["step"].max() / 10, "diff"]
    if not late.empty:
        pad = 0.05 * (late.max() - late.min()) + 0.005
        ax.set_ylim(min(late.min(), 0) - pad, max(late.max(), 0) + pad)
    ax.set(ylabel=f"validation loss − {name} (nats)", title=f"difference to {name} (paired on seed)")
    _training_tokens_axis(ax)


def _training_tokens_axis(ax, label: str = "training tokens") -> None:
    ax.set_xlabel(label)
    ax.xaxis.set_major_formatter(mticker.EngFormatter(sep=""))  # 200k, 3M: not 1e6 in the corner


def _label_colours(df: pd.DataFrame, palette: dict[str, str]) -> dict[str, str]:
    """label -> colour from a variant palette."""
    return {label: palette.get(v, "grey") for v, label in zip(df["variant"], df["label"])}


def table1_ablation(metrics: pd.DataFrame, table: pd.DataFrame, palette: dict[str, str] | None = None,
                    margin: float | None = None) -> plt.Figure:
    """Table 1 mirror. Left: each row's final validation loss minus dense Squared-ReLU's, seed by seed (dots,
    paired on the seed), our mean with its 95% interval (bar) and the paper's difference (hollow diamond), in front
    of the band ±`margin` (the no-loss margin that decides C1 / C5). Right: one small panel per row, the same
    difference during training (mean over seeds, band min..max). Every axis holds every point it draws.
    `table`: report.ablation.read_table1; `palette`: variant -> colour (report.palette)."""
    rows = table[(table["row"] != "context") & (table["variant"] != "")].reset_index(drop=True)
    palette = palette or variant_palette(list(rows["variant"]))
    colour = {v: palette.get(v, "black") for v in rows["variant"]}
    baseline = rows.loc[rows["row"] == "dense_sqrelu", "variant"]
    baseline = baseline.iloc[0] if not baseline.empty else None
    others = rows[rows["row"] != "dense_sqrelu"]
    ncols = max(1, math.ceil(len(others) / 2))
    fig = plt.figure(figsize=(6 + 2.6 * ncols, 5))
    grid = fig.add_gridspec(2, 1 + ncols, width_ratios=[2.2] + [1] * ncols)
    val = metrics[metrics["split"] == "val"]
    if baseline is not None:  # paired on seed and step
        ref = val[val["variant"] == baseline].set_index(["seed", "step"])["loss"]
        val = val.assign(diff=val["loss"].to_numpy()
                         - ref.reindex(pd.MultiIndex.from_frame(val[["seed", "step"]])).to_numpy())
    else:
        val = val.assign(diff=np.nan)
    _table1_endpoints(fig.add_subplot(grid[:, 0]), rows, val, colour, margin)
    first = None
    for k, r in enumerate(others.itertuples()):
        ax = fig.add_subplot(grid[k // ncols, 1 + k % ncols], sharey=first, sharex=first)
        first = first or ax
        part = val[(val["variant"] == r.variant) & val["diff"].notna()]
        if not part.empty:
            sns.lineplot(data=part, x="tokens", y="diff", color=colour[r.variant], errorbar=("pi", 100), ax=ax)
        ax.axhline(0, color="grey", lw=0.8, ls="--")
        ax.set_title(r.label, fontsize=8)
        _training_tokens_axis(ax, "training tokens" if k + ncols >= len(others) else "")
        ax.set_ylabel("")
        ax.tick_params(labelsize=7)
    # every drawn row's band after the first tenth of training (the start, all near log(vocab), would flatten it)
    late = val.loc[val["variant"].isin(others["variant"]) & (val["step"] >= val["step"].max() / 10), "diff"].dropna()
    if first is not None and not late.empty:
        pad = 0.05 * (late.max() - late.min()) + 0.01
        first.set_ylim(min(late.min(), 0) - pad, max(late.max(), 0) + pad)
    fig.suptitle("Table 1: each row against dense Squared-ReLU (right: validation loss difference during training)",
                 fontsize=10)
    fig.tight_layout()
    return fig


def _table1_endpoints(ax, rows: pd.DataFrame, val: pd.DataFrame, colour: dict[str, str],
                      margin: float | None = None) -> None:
    """The final differences: seeds (dots), mean and interval (bar), the paper's (hollow diamond), the ±margin
    band; the x axis holds all of them."""
    y = np.arange(len(rows))[::-1]
    final = val[val["step"] == val.groupby(["variant", "seed"])["step"].transform("max")]
    if margin:
        ax.axvspan(-margin, margin, color="tab:green", alpha=0.12, lw=0, label=f"±{margin:g} nats (no-loss margin)")
    xs = [0.0, *([-margin, margin] if margin else []), *final.loc[final["variant"].isin(rows["variant"]), "diff"]
          .dropna(), *rows[["ci_low", "ci_high", "diff_vs_dense_sqrelu", "paper_diff"]].stack().dropna()]
    for yi, r in zip(y, rows.itertuples()):
        seeds = final.loc[final["variant"] == r.variant, "diff"].dropna()
        ax.scatter(seeds, np.full(len(seeds), yi + 0.15), s=12, color=colour[r.variant], alpha=0.6, lw=0)
        if pd.notna(r.diff_vs_dense_sqrelu):
            est = r.diff_vs_dense_sqrelu
            lo, hi = (r.ci_low, r.ci_high) if pd.notna(r.ci_low) else (est, est)
            ax.errorbar(est, yi, xerr=[[est - lo], [hi - est]], fmt="o", color=colour[r.variant], capsize=3)
        if pd.notna(r.paper_diff):
            ax.scatter(r.paper_diff, yi - 0.15, marker="D", s=30, facecolors="none", edgecolors="black", zorder=3)
        if r.diverged:
            ax.annotate(f"diverged ({r.diverged}/{r.seeds} seeds)", (0, yi), color="firebrick", fontsize=8,
                        va="center")
    ax.scatter([], [], marker="D", s=30, facecolors="none", edgecolors="black", label="paper (1.5B, 63B tokens)")
    ax.errorbar([], [], xerr=[], fmt="o", color="grey", capsize=3, label="ours: mean, 95% interval")
    ax.scatter([], [], s=12, color="grey", alpha=0.6, label="ours: one seed")
    ax.axvline(0, color="grey", lw=0.8, ls="--")
    pad = 0.05 * (max(xs) - min(xs)) + 0.005
    ax.set_xlim(min(xs) - pad, max(xs) + pad)
    ax.set_yticks(y, rows["label"], fontsize=8)
    methods = sorted({m.split(",")[0] for m in rows["interval"] if m})
    ax.set(xlabel="final validation loss − dense Squared-ReLU (nats)",
           title=f"at the end ({' / '.join(methods) or 'no interval'})")
    ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.15), ncols=3, frameon=False)


def table1_gaps(gaps: pd.DataFrame, labels: dict[str, str] | None = None) -> plt.Figure:
    """Each ablation's gap to the full recipe against training tokens, with its 95% band over seeds; the dotted line
    is the paper's final gap (off the axis for the large ones: their values are in the legend)."""
    fig, ax = plt.subplots(figsize=(7, 4))
    if gaps.empty:
        ax.text(0.5, 0.5, "no ablation row and full recipe ran here", ha="center", va="center", transform=ax.transAxes)
    for i, (row, g) in enumerate(gaps.groupby("row", sort=False)):
        colour = f"C{i}"
        paper = g["paper_final_gap"].iloc[0]
        ax.plot(g["tokens"], g["gap"], color=colour, marker="o", ms=3,
                label=f"{labels.get(row, row) if labels else row} (paper, final: {paper:+.3f})")
        ax.fill_between(g["tokens"], g["ci_low"], g["ci_high"], color=colour, alpha=0.15, lw=0)
        ax.axhline(paper, color=colour, ls=":", lw=1)
    ax.axhline(0, color="grey", lw=0.8)
    low, high = (gaps[["ci_low", "gap"]].min().min(), gaps[["ci_high", "gap"]].max().max()) if len(gaps) else (0, 1)
    pad = 0.1 * (high - low) if high > low else 0.01
    ax.set_ylim(min(low, 0) - pad, max(high, 0.035) + pad)  # the small paper effects stay in view
    _training_tokens_axis(ax)
    ax.set(ylabel="validation loss − full recipe (nats)",
           title="Table 1 ablations: gap to the full recipe over training")
    ax.legend(fontsize=7, loc="upper left")
    fig.tight_layout()
    return fig


def drop_fractions(stats: pd.DataFrame) -> plt.Figure:
    """Fraction of non-zeros a 2:4 mask drops over training, per direction: the mean over layers, its mean over
    seeds (line) and their range (band); the title names the variant."""
    per_seed = stats.groupby(["tokens", "seed"], as_index=False)[list(DROP_COLUMNS)].mean()
    long = per_seed.melt(id_vars=["tokens", "seed"], value_vars=list(DROP_COLUMNS), var_name="mask",
                         value_name="dropped")
    # The split's dense fraction, as the statistics recorded it (runs written before they did: not known).
    split = ", ".join(f"{f:.0%}" for f in stats.get("split_dense_fraction", pd.Series(dtype=float)).unique()) or "the"
    long["mask"] = long["mask"].map({k: v.format(split=split) for k, v in DROP_COLUMNS.items()})
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    sns.lineplot(data=long, x="tokens", y="dropped", hue="mask", errorbar=("pi", 100), ax=ax)
    _training_tokens_axis(ax)
    variants = ", ".join(map(str, stats["variant"].unique())) if "variant" in stats else "one variant"
    seeds = stats["seed"].nunique()
    ax.set(ylabel="fraction of non-zeros dropped by 2:4",
           title=f"What a 2:4 mask would drop: {variants} (mean over layers; band: {seeds} seeds' range)")
    ax.legend(fontsize=8, loc="upper center", bbox_to_anchor=(0.5, -0.18), ncols=2, frameon=False)
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


def save(fig: plt.Figure, *paths) -> None:
    """Write the figure to each path, in the format its suffix names (PNG for the report, PDF as vector)."""
    for path in paths:
        # No creation date or software version in the files: a rerun gives the same bytes.
        metadata = {"CreationDate": None} if str(path).endswith(".pdf") else {"Software": None}
        fig.savefig(path, dpi=150, bbox_inches="tight", metadata=metadata)
    plt.close(fig)


def _token_axis(ax, tokens, label: str = "tokens") -> None:
    """A log axis labelled at the measured token counts, written out (4096, not 4 x 10^3)."""
    values = sorted({int(t) for t in tokens})
    ax.set_xscale("log")
    ax.set_xticks(values, [str(v) for v in values], rotation=30)
    ax.xaxis.set_minor_locator(mticker.NullLocator())
    ax.set_xlabel(label)


def device_title(environment: dict) -> str:
    """'NVIDIA H200 (torch 2.11.0+cu130)' from a benchmark sidecar's environment."""
    return f"{environment.get('gpu') or 'no GPU'} (torch {environment.get('torch', '?')})"


def not_measured(title: str, reason: str) -> plt.Figure:
    """A placeholder figure that says why there is nothing to draw (e.g. no CUDA device)."""
    fig, ax = plt.subplots(figsize=(6.5, 2.5))
    ax.axis("off")
    ax.text(0.5, 0.6, title, ha="center", fontsize=12)
    ax.text(0.5, 0.35, reason, ha="center", fontsize=10, color="firebrick")
    return fig


def ffn_speedups(speedups: pd.DataFrame, ideal: dict[str, float], device: str = "",
                 paper: float | None = None) -> plt.Figure:
    """Fig. 5 mirror: FFN speedup (fastest dense path of the same precision / 2:4 path, geometric mean of the
    interleaved rounds' ratios) against tokens, per shape and pass, for each precision and 2:4 path, with its 95%
    interval (band) and the Amdahl bound of the GEMM times measured in the same rounds (dotted, same colour). A
    suspect point gets a red cross: above the ideal bound (2x GEMMs, the rest free), or marked "suspect" in the
    table (its interval above its Amdahl bound): its dense baseline did work the 2:4 path skipped. `paper`: the
    paper's claimed speedup, drawn as a line."""
    if "launch" in speedups:  # kernels launched one by one, as a training step does; graph twins: the table
        speedups = speedups[speedups["launch"] == "stream"]
    passes = ["forward", "forward+backward"]
    shapes = list(dict.fromkeys(speedups["shape"]))
    fig, axes = plt.subplots(len(passes), len(shapes), figsize=(4.6 * len(shapes), 7.4), sharex=True, sharey=True,
                             squeeze=False)
    labels = (speedups["precision"] + " " + speedups["sparse_path"]).unique()
    colours = dict(zip(labels, sns.color_palette(n_colors=len(labels))))
    for i, ps in enumerate(passes):
        bound = ideal["forward" if ps == "forward" else "forward_backward"]
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
                marked = g["check"].astype(str).str.startswith("suspect") if "check" in g else False
                suspect = g[(g["speedup"] > bound) | marked]
                ax.scatter(suspect["T"], suspect["speedup"], marker="x", s=60, color="red", zorder=4)
            ax.axhline(1.0, color="grey", lw=0.8, ls="--")
            ax.axhline(bound, color="firebrick", lw=0.8, ls="-.")
            if paper is not None:
                ax.axhline(paper, color="black", lw=0.8, ls="--")
            ax.set_title(f"{shape}: {ps}", fontsize=10)
            _token_axis(ax, speedups["T"], "tokens" if i == len(passes) - 1 else "")
            ax.set_ylabel("speedup over dense (x)" if j == 0 else "")
            ax.text(0.02, bound, f"ideal {bound:.2f}x", transform=ax.get_yaxis_transform(), fontsize=7,
                    color="firebrick", va="bottom")
    # Every path once, whichever panel has it (shapes measured at different commits can differ in paths).
    handles = [mlines.Line2D([], [], color=colours[name], marker="o") for name in labels]
    names = list(labels)
    handles += [mlines.Line2D([], [], color="grey", lw=0.8, ls=":"),
                mlines.Line2D([], [], color="firebrick", lw=0.8, ls="-."),
                mlines.Line2D([], [], color="red", marker="x", ls="")]
    names += ["Amdahl bound of the measured GEMMs", "ideal (2x GEMMs, rest free)",
              "suspect: above the ideal or the Amdahl bound"]
    if paper is not None:
        handles.append(mlines.Line2D([], [], color="black", lw=0.8, ls="--"))
        names.append(f"paper: about {paper:g}x")
    fig.legend(handles, names, loc="lower center", ncols=3, fontsize=8, frameon=False)
    baselines = "; ".join(f"{p}: {', '.join(sorted(g.unique()))}"
                          for p, g in speedups.groupby("precision")["dense_path"])
    fig.suptitle(f"FFN speedup of 2:4 over the fastest dense path of the same precision, {device}\n"
                 f"the fastest dense path per point, of: {baselines}", fontsize=10)
    fig.tight_layout(rect=(0, 0.02 + 0.018 * math.ceil(len(names) / 3), 1, 1))  # room for the legend's rows
    return fig


def ffn_speedup_paper(speedups: pd.DataFrame, point: tuple[str, int], paper: float, device: str = "") -> plt.Figure:
    """Fig. 5 for a paper: one panel per shape, the best 2:4 path's speedup over the strongest dense path of its
    precision at each token count (forward solid, forward + backward dashed, 95% bands), the paper's claimed
    speedup, and the point the C7 / C8 verdicts read (`point`: shape, tokens) marked with a star."""
    if "launch" in speedups:
        speedups = speedups[speedups["launch"] == "stream"]
    speedups = speedups.reset_index(drop=True)  # one label per row: idxmax picks rows by label
    best = speedups.loc[speedups.groupby(["shape", "pass", "T"])["speedup"].idxmax()]
    shapes = list(dict.fromkeys(speedups["shape"]))
    fig, axes = plt.subplots(1, len(shapes), figsize=(3.4 * len(shapes), 3.2), sharey=True, squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        for ps, style in (("forward", "-"), ("forward+backward", "--")):
            g = best[(best["shape"] == shape) & (best["pass"] == ps)].sort_values("T")
            ax.plot(g["T"], g["speedup"], ls=style, marker="o", ms=3, color="tab:blue", label=ps)
            ax.fill_between(g["T"], g["speedup_lo"], g["speedup_hi"], color="tab:blue", alpha=0.15, lw=0)
            at = g[(g["shape"] == point[0]) & (g["T"] == point[1])]
            ax.scatter(at["T"], at["speedup"], marker="*", s=140, color="firebrick", zorder=4)
        ax.axhline(paper, color="black", lw=0.8, ls=":")
        ax.axhline(1.0, color="grey", lw=0.8)
        ax.set_title(shape, fontsize=10)
        _token_axis(ax, speedups["T"])
    axes[0][0].set_ylabel("FFN speedup over dense (x)")
    handles = [mlines.Line2D([], [], color="tab:blue", ls="-", marker="o", ms=3),
               mlines.Line2D([], [], color="tab:blue", ls="--", marker="o", ms=3),
               mlines.Line2D([], [], color="black", ls=":", lw=0.8),
               mlines.Line2D([], [], color="firebrick", marker="*", ls="", ms=10)]
    fig.legend(handles, ["forward", "forward + backward", f"paper: about {paper:g}x",
                         f"claims C7 / C8 ({point[0]}, {point[1]} tokens)"], loc="lower center", ncols=4,
               fontsize=8, frameon=False)
    fig.suptitle(f"Best 2:4 FFN against the strongest dense FFN, {device}", fontsize=10)
    fig.tight_layout(rect=(0, 0.08, 1, 1))
    return fig


def ffn_stages(stages: pd.DataFrame, tokens: int, device: str = "") -> plt.Figure:
    """Where the time goes at `tokens` tokens: per shape, pass and precision, each path's time as stacked bars of
    GEMM kernels, other kernels and the rest of the timed median (launch gaps, host time)."""
    part = stages[stages["T"] == tokens]
    cols = list(dict.fromkeys(zip(part["precision"], part["pass"])))
    shapes = list(dict.fromkeys(part["shape"]))
    fig, axes = plt.subplots(len(shapes), len(cols), figsize=(4.2 * len(cols), 2.6 * len(shapes)), squeeze=False)
    fig.suptitle(f"FFN time per stage at {tokens} tokens, {device}", fontsize=11)
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
            # every bar whole: the zero-width segments' sticky edges pinned the axis at the longest bar's end
            ax.set_xlim(0, 1.05 * left.max() if len(left) and left.max() > 0 else 1)
            ax.set_title(f"{shape}, {precision} {ps}", fontsize=9)
            ax.set_xlabel("ms")
            ax.tick_params(axis="y", labelsize=7)
            ax.invert_yaxis()
    axes[0][0].legend(fontsize=7)
    fig.tight_layout()
    return fig


def split_gemm(split: pd.DataFrame, ideal_split: float, device: str = "") -> plt.Figure:
    """Fig. 6 mirror: dense-equivalent TFLOP/s of the K = tokens GEMM: dense, 2:4 and the 95/5 split (the median
    over the benchmark's processes)."""
    shapes = list(dict.fromkeys(split["shape"]))
    fig, axes = plt.subplots(1, len(shapes), figsize=(5.5 * len(shapes), 4), squeeze=False)
    for ax, shape in zip(axes[0], shapes):
        part = split[split["shape"] == shape].groupby(["T", "gemm"], as_index=False, sort=False)[
            "TFLOPs_dense_equivalent"].median()
        sns.lineplot(data=part, x="T", y="TFLOPs_dense_equivalent", hue="gemm", marker="o", ax=ax)
        dense = part[part["gemm"] == "dense"].sort_values("T")
        ax.plot(dense["T"], dense["TFLOPs_dense_equivalent"] * ideal_split, color="firebrick", lw=0.8, ls=":",
                label=f"ideal split ({ideal_split:.2f}x dense)")
        _token_axis(ax, part["T"], "tokens (the GEMM's reduction dimension)")
        ax.set(ylabel="TFLOP/s (dense-equivalent)", title=f"{shape}: dW GEMM")
        ax.legend(fontsize=8)
    fig.suptitle(f"Fig. 6: weight-gradient GEMM, bf16, {device}", fontsize=10)
    fig.tight_layout()
    return fig
