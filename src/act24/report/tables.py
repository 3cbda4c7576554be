"""Tables computed from run results and configs."""

from __future__ import annotations

import html
import math
from pathlib import Path

import pandas as pd

from ..config import FFN_KINDS, ModelConfig
from ..config import parameter_counts
from ..intervals import mean_interval


def quality_table(summaries: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Final validation loss per variant: mean, sample std, min, max over seeds."""
    g = summaries.groupby("variant", sort=False)
    out = g["final_val_loss"].agg(["count", "mean", "std", "min", "max"]).reset_index()
    out.columns = ["variant", "seeds", "val_loss_mean", "val_loss_std", "val_loss_min", "val_loss_max"]
    out["ffn_params"] = g["ffn_params"].first().to_numpy()
    out["non_embedding_params"] = g["non_embedding_params"].first().to_numpy()
    out["tokens"] = g["tokens"].first().to_numpy()
    out["diverged"] = g["final_val_loss"].agg(lambda s: int(s.isna().sum())).to_numpy()  # null loss: diverged
    for column in ("train_seconds", "tokens_per_second"):  # what a run costs, mean over seeds
        if column in summaries:
            out[f"{column}_mean"] = g[column].mean().to_numpy()
    if "device" in summaries:
        out["device"] = g["device"].agg(lambda s: ", ".join(sorted(set(map(str, s))))).to_numpy()
    if labels:
        out.insert(1, "label", out["variant"].map(labels))
    return out.sort_values("val_loss_mean", kind="stable").reset_index(drop=True)


def parameter_table(shapes: dict[str, dict]) -> pd.DataFrame:
    """Parameter counts of each FFN kind for each named model shape (the FFN widths are parameter-matched)."""
    rows = []
    for shape, model in shapes.items():
        for kind in FFN_KINDS:
            counts = parameter_counts(ModelConfig(**{**model, "ffn": kind}))
            rows.append({"shape": shape, "ffn": kind, "d_model": model["d_model"],
                         "n_layers": model["n_layers"], **counts})
    return pd.DataFrame(rows)


def final_sparsity_table(stats: pd.DataFrame) -> pd.DataFrame:
    """Per variant and layer: activation statistics at the last logged step, mean over seeds."""
    last = stats[stats["step"] == stats.groupby(["variant", "seed"])["step"].transform("max")]
    value_cols = [c for c in last.columns if c.startswith(("zero_frac", "drop24", "dense_"))]
    out = last.groupby(["variant", "layer"])[value_cols].mean().reset_index()
    out.insert(2, "step", last.groupby(["variant", "layer"])["step"].max().to_numpy())
    return out


def inference_table(inference: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Sparse inference per variant: validation loss dense and with 2:4 forced on the FFN activations, the
    paired change (mean over seeds, its 95% Student t interval over seeds), and what the mask drops (mean over
    layers and seeds)."""
    g = inference.groupby("variant", sort=False)
    out = g.agg(ffn=("ffn", "first"), trained_sparse=("trained_sparse", "first"), seeds=("seed", "count"),
                val_loss_dense=("val_loss_dense", "mean"), val_loss_24=("val_loss_24", "mean"),
                delta_24_mean=("delta_24", "mean"), zero_frac=("zero_frac", "mean"),
                drop24_features=("drop24_features", "mean"),
                drop24_features_energy=("drop24_features_energy", "mean"),
                eval_tokens=("eval_tokens", "first")).reset_index()
    ci = [mean_interval(g.get_group(v)["delta_24"]) for v in out["variant"]]
    out.insert(7, "delta_24_ci_low", [c.low for c in ci])
    out.insert(8, "delta_24_ci_high", [c.high for c in ci])
    out.insert(9, "interval", [c.method for c in ci])
    if labels:
        out.insert(1, "label", out["variant"].map(labels))
    return out


def gradient_fidelity_table(rows: pd.DataFrame, labels: dict[str, str] | None = None) -> pd.DataFrame:
    """Per recipe: relative error and cosine of the FFN weight gradients against the exact gradient of the
    masked forward (act24.evaluate.gradient_fidelity), mean over layers, for W1 and W2."""
    out = rows.pivot_table(index="recipe", columns="weight", values=["rel_error", "cosine"], aggfunc="mean",
                           sort=False)
    out.columns = [f"{w}_{stat}" for stat, w in out.columns]
    out = out[["w1_rel_error", "w2_rel_error", "w1_cosine", "w2_cosine"]].reset_index()
    if labels:
        out.insert(1, "label", out["recipe"].map(labels))
    return out


def _cell(v, floatfmt: str) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    return format(v, floatfmt) if isinstance(v, float) else str(v)


def _count(v) -> str:
    """968.9M, 16.4k: a count of parameters or tokens as people read it."""
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return ""
    for scale, unit in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if abs(v) >= scale:
            return f"{v / scale:.1f}{unit}"
    return str(int(v))


def _intervals(df: pd.DataFrame) -> list[tuple[str, str, str]]:
    """(estimate, low, high) column triples: X with X_lo / X_hi or X_low / X_high, X_mean with X_ci_low /
    X_ci_high, and the column just before ci_low / ci_high."""
    cols, out = list(df.columns), []
    for c in cols:
        for lo, hi in ((f"{c}_lo", f"{c}_hi"), (f"{c}_low", f"{c}_high"),
                       (f"{c.removesuffix('_mean')}_ci_low", f"{c.removesuffix('_mean')}_ci_high")):
            if lo in cols and hi in cols:
                out.append((c, lo, hi))
                break
    if "ci_low" in cols and "ci_high" in cols and cols.index("ci_low") > 0:
        out.append((cols[cols.index("ci_low") - 1], "ci_low", "ci_high"))
    return out


def _shown(df: pd.DataFrame, floatfmt: str) -> tuple[pd.DataFrame, list[bool]]:
    """The table as people read it, every cell text, and which columns are numbers (right-aligned): an estimate and
    its interval in one cell ("1.17 [1.14, 1.19]"), counts of parameters and tokens as 968.9M, headers in words,
    floats with `floatfmt`, missing values empty."""
    numeric = dict(zip(df.columns, _numeric(df)))
    out = pd.DataFrame(index=df.index)
    merged = {est: (lo, hi) for est, lo, hi in _intervals(df)}
    skip = {c for lo, hi in merged.values() for c in (lo, hi)}
    for c in df.columns:
        if c in skip:
            continue
        if c in merged:
            lo, hi = merged[c]
            out[f"{c} [95% CI]"] = [f"{_cell(e, floatfmt)} [{_cell(a, floatfmt)}, {_cell(b, floatfmt)}]"
                                    if _cell(a, floatfmt) else _cell(e, floatfmt)
                                    for e, a, b in zip(df[c], df[lo], df[hi])]
        elif numeric[c] and ("params" in c or "tokens" in c):
            out[c] = df[c].map(_count)
        else:
            out[c] = df[c].astype(object).map(lambda v: _cell(v, floatfmt))
    right = [numeric.get(c.removesuffix(" [95% CI]"), False) for c in out.columns]
    out.columns = [c.replace("_", " ") for c in out.columns]
    return out, right


def _numeric(df: pd.DataFrame) -> list[bool]:
    return [pd.api.types.is_numeric_dtype(t) and not pd.api.types.is_bool_dtype(t) for t in df.dtypes]


def to_markdown(df: pd.DataFrame, floatfmt: str = ".4g") -> str:
    """A GitHub-flavoured markdown table (pandas' `to_markdown`; the cells formatted here, so that a label that
    looks like a number is not reformatted)."""
    shown, right = _shown(df, floatfmt)
    align = ["right" if n else "left" for n in right]
    return shown.to_markdown(index=False, disable_numparse=True, colalign=align or None) + "\n"


def to_html(df: pd.DataFrame, title: str, floatfmt: str = ".4g") -> str:
    """A standalone HTML page with the table (what `snakemake --report` shows inline); numbers right-aligned."""
    shown, numbers = _shown(df, floatfmt)
    right = "".join(f" td:nth-child({i + 1}) {{ text-align: right }}" for i, n in enumerate(numbers) if n)
    style = ("table { border-collapse: collapse } th { text-align: left; border-bottom: 1px solid #888 } "
             f"td, th {{ padding: 2px 8px }}{right}")
    table = shown.to_html(index=False, border=0, justify="left", escape=True)
    return (f"<!doctype html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>\n"
            f"<style>{style}</style></head>\n<body style=\"font-family: sans-serif; font-size: 13px\">\n{table}\n"
            "</body></html>\n")


LATEX_SPECIAL = {"\\": r"\textbackslash{}", "&": r"\&", "%": r"\%", "$": r"\$", "#": r"\#", "_": r"\_",
                 "{": r"\{", "}": r"\}", "~": r"\textasciitilde{}", "^": r"\textasciicircum{}"}


def _latex_text(text: str) -> str:
    return "".join(LATEX_SPECIAL.get(c, c) for c in text).replace("−", "$-$").replace("±", "$\\pm$")


def to_latex(df: pd.DataFrame, caption: str, label: str, floatfmt: str = ".4g") -> str:
    """A booktabs LaTeX table (\\usepackage{booktabs}) of `df` for a paper: headers with underscores as spaces,
    numbers right-aligned, the cells as the Markdown table shows them, every special character escaped."""
    shown, right = _shown(df, floatfmt)
    spec = "".join("r" if n else "l" for n in right)
    head = " & ".join(_latex_text(str(c)) for c in shown.columns)
    body = "\n".join(" & ".join(_latex_text(v) for v in row) + r" \\" for row in shown.itertuples(index=False))
    return (f"\\begin{{table}}[t]\n\\centering\n\\caption{{{_latex_text(caption)}}}\n\\label{{{label}}}\n"
            f"\\begin{{tabular}}{{{spec}}}\n\\toprule\n{head} \\\\\n\\midrule\n{body}\n\\bottomrule\n"
            "\\end{tabular}\n\\end{table}\n")


def claims_markdown(df: pd.DataFrame, width: int = 118) -> str:
    """The claims for a person: a table of id, claim and verdict, then each claim's paper value, ours, the
    criterion and the source as wrapped text (long texts in table cells made lines of 800 characters)."""
    import textwrap

    short = df[["id", "claim", "verdict"]].copy()
    short["verdict"] = short["verdict"].map(lambda v: str(v).split(" (")[0] if len(str(v)) > 60 else v)
    parts = [to_markdown(short)]
    for r in df.itertuples(index=False):
        parts.append(f"\n### {r.id}: {r.claim}\n")
        for name in ("paper", "ours", "verdict", "criterion", "source"):
            text = str(getattr(r, name, "") or "")
            if text and text != "nan":
                parts.append(textwrap.fill(text, width, initial_indent=f"- **{name}**: ", subsequent_indent="  ")
                             + "\n")
    return "".join(parts)


def write_table(df: pd.DataFrame, md: str | Path, html_page: str | Path, floatfmt: str = ".4g") -> None:
    """The table as markdown (for reading on GitHub) and as HTML (for the report)."""
    Path(md).write_text(to_markdown(df, floatfmt))
    Path(html_page).write_text(to_html(df, Path(md).stem, floatfmt))
