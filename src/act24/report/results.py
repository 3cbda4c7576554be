"""Read training runs from results/ into tidy pandas DataFrames (one row per observation)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import pandas as pd

from .. import layout as T
from ..layout import INFERENCE, run_dir

__all__ = ["find_runs", "read_density", "read_inference", "read_metrics", "read_stats", "read_summaries", "run_dir"]


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
        df = pd.read_json(run / T.METRICS, lines=True)
        frames.append(df.assign(**_identify(run)))
    return _concat(frames, "metrics")


def read_stats(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Per-layer activation statistics: variant, seed, step, tokens, layer, zero_frac, drop24_* ..."""
    frames = [pd.read_csv(Path(r) / T.STATS).assign(**_identify(Path(r))) for r in runs]
    return _concat(frames, "activation statistics")


def read_summaries(runs: Iterable[str | Path]) -> pd.DataFrame:
    rows = []
    for run in map(Path, runs):
        s = json.loads((run / T.SUMMARY).read_text())
        rows.append({**_identify(run), **{k: v for k, v in s.items() if not isinstance(v, dict)}})
    return _concat([pd.DataFrame(rows)] if rows else [], "run summaries")


def read_inference(runs: Iterable[str | Path]) -> pd.DataFrame:
    """Sparse-inference evaluations (act24.evaluate.sparse_inference), one row per run."""
    rows = [{**_identify(Path(r)), **json.loads((Path(r) / INFERENCE).read_text())} for r in runs]
    return _concat([pd.DataFrame(rows)] if rows else [], "sparse-inference evaluations")


def read_density(run: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """(steps, density[record, layer, feature]) of one run."""
    with np.load(Path(run) / T.DENSITY) as z:
        return z["steps"], z["density"]
