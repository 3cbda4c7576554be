"""Where a run's files live under results/: folder names and file names, shared by training, the workflow and the
readers (no torch here: the workflow parses without it)."""

from __future__ import annotations

from pathlib import Path

METRICS = "metrics.jsonl"  # training and validation losses
STATS = "activation_stats.csv"  # per-layer activation statistics
DENSITY = "feature_density.npz"  # per-feature densities
CHECKPOINT = "model.pt"  # the final model and its run config
SUMMARY = "summary.json"  # written last: a run with a summary is finished
RESUME = "resume.pt"  # the resumable training state, in the run's resume folder
INFERENCE = "sparse_inference.json"  # written by the sparse_inference rule, next to the run's outputs


def run_dir(results: str | Path, variant: str, seed: int) -> Path:
    return Path(results) / "runs" / variant / f"seed{seed}"


def resume_dir(results: str | Path, variant: str, seed: int) -> Path:
    """Not a rule output: Snakemake never deletes it, so a rerun after a crash resumes from it."""
    return Path(results) / "checkpoints" / variant / f"seed{seed}"
