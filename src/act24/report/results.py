"""Read training runs from results/ into tidy pandas DataFrames (one row per observation)."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout as T
from ..io import InputFileError, read_csv, read_json, reading, rebuild_hint
from ..layout import INFERENCE, run_dir

__all__ = ["find_runs", "read_density", "read_inference", "read_metrics", "read_stats", "read_summaries", "run_dir"]


def results_or_reference(results: str | Path, reference: str | Path, needs: str, make: str) -> Path:
    """The folder a notebook reads: `results` when it holds `needs` (a file below it), else the committed
    `reference` folder, saying so, with the command (`make`, run from the repository root) that makes it here."""
    results, reference = Path(results), Path(reference)
    if (results / needs).exists():
        return results
    print(f"{results / needs} is not made here yet (`{make}`, from the repository root makes it): showing the "
          f"committed reference {reference} instead")
    return reference


def find_runs(results: str | Path) -> list[Path]:
    """Every finished run (one with a summary) under `results`/runs, sorted."""
    return sorted(p.parent for p in Path(results).glob(f"runs/*/seed*/{T.SUMMARY}"))


def _identify(path: Path) -> dict:
    return {"variant": path.parent.name, "seed": int(path.name.removeprefix("seed"))}


def _concat(frames: list[pd.DataFrame], what: str) -> pd.DataFrame:
    if not frames:
        raise FileNotFoundError(f"no {what} found: run the pipeline first (snakemake --cores 2)")
    return pd.concat(frames, ignore_index=True)


def read_metrics(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Training and validation losses: variant, seed, split, step, tokens, loss, lr, grad_norm, time."""
    frames = []
    for run in map(Path, runs):
        path = run / T.METRICS
        with reading(path, "metrics log (JSON lines)"):
            df = pd.read_json(path, lines=True)
            last = df["step"].max()
        summary = _summary_if_any(run)
        if summary.get("diverged_at_step") is None and "steps" in summary and last != summary["steps"]:
            raise InputFileError(f"{path}: truncated: ends at step {last}, the run at step {summary['steps']} "
                                 f"({run / T.SUMMARY}); {rebuild_hint(path)}")
        frames.append(df.assign(**_identify(run)))
    return _concat(frames, "metrics")


def _summary_if_any(run: Path) -> dict:
    """The run's summary, or {} without one (a run still training, in a notebook): for completeness checks."""
    return read_json(run / T.SUMMARY, "run summary") if (run / T.SUMMARY).exists() else {}


def read_stats(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Per-layer activation statistics: variant, seed, step, tokens, layer, zero_frac, drop24_* ...; checked for
    completeness (every step has every layer and every value; the last step is the run's last, per its summary)."""
    return _concat([_read_run_stats(Path(r)) for r in runs], "activation statistics")


def _read_run_stats(run: Path) -> pd.DataFrame:
    path = run / T.STATS
    df = read_csv(path, "activation statistics CSV")
    with reading(path, "activation statistics CSV"):  # without a step or layer column
        layers = df.groupby("step")["layer"].nunique()
    summary = _summary_if_any(run)
    finished = summary.get("diverged_at_step") is None  # a diverged run's last statistics may be NaN
    problem = ("empty" if df.empty else "incomplete rows (empty values)" if finished and df.isna().any().any()
               else f"steps with fewer layers than others ({list(layers[layers < layers.max()].index)})"
               if layers.nunique() > 1 else "")
    if not problem and finished and "steps" in summary and df["step"].max() != summary["steps"]:
        problem = f"ends at step {df['step'].max()}, the run at step {summary['steps']} ({run / T.SUMMARY})"
    if problem:
        raise InputFileError(f"{path}: truncated or incomplete: {problem}; {rebuild_hint(path)}")
    return df.assign(**_identify(run))


def _settings(config: dict) -> dict:
    """A run's settings that must agree across its variant's seeds: all but its name and seed."""
    return {section: {k: v for k, v in values.items() if k != "seed"} if isinstance(values, dict) else values
            for section, values in config.items() if section != "name"}


def _differences(a: dict, b: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(a) | set(b))
    out = []
    for k in keys:
        if isinstance(a.get(k), dict) and isinstance(b.get(k), dict):
            out += _differences(a[k], b[k], f"{prefix}{k}.")
        elif a.get(k) != b.get(k):
            out.append(f"{prefix}{k} {a.get(k)!r} / {b.get(k)!r}")
    return out


def read_summaries(runs: Iterable[str | Path]) -> pd.DataFrame:
    """The finished runs' summaries, one row each. The seeds of one variant must share every other setting (a
    table over seeds that mixed, say, 100-step and 250-step runs would be wrong): else an error naming the runs."""
    rows, first = [], {}
    for run in map(Path, runs):
        s = read_json(run / T.SUMMARY, "run summary")
        if "final_val_loss" not in s:
            raise InputFileError(f"{run / T.SUMMARY}: not a finished run's summary (no final_val_loss); "
                                 f"{rebuild_hint(run / T.SUMMARY)}")
        if isinstance(s.get("config"), dict):
            other = first.setdefault(run.parent, (run, _settings(s["config"])))
            if diff := _differences(other[1], _settings(s["config"])):
                raise InputFileError(f"{other[0]} and {run} are seeds of one variant with different settings "
                                     f"({'; '.join(diff[:3])}): rerun them alike, or keep experiments in results "
                                     "folders of their own (results=...)")
        rows.append({**_identify(run), **{k: v for k, v in s.items() if not isinstance(v, dict)}})
    return _concat([pd.DataFrame(rows)] if rows else [], "run summaries")


def read_inference(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Sparse-inference evaluations (act24.evaluate.sparse_inference), one row per run."""
    rows = [{**_identify(Path(r)), **read_json(Path(r) / INFERENCE, "sparse-inference evaluation")} for r in runs]
    return _concat([pd.DataFrame(rows)] if rows else [], "sparse-inference evaluations")


def read_density(run: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, density[record, layer, feature]) of one run."""
    path = Path(run) / T.DENSITY
    with reading(path, "feature-density archive (npz)"), np.load(path) as z:
        return z["steps"], z["density"]
