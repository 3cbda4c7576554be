"""Where a run's files live under results/: folder names and file names, shared by training, the workflow and the
readers (no torch here: the workflow parses without it)."""

from __future__ import annotations

import shutil
from collections.abc import Iterable
from pathlib import Path

METRICS = "metrics.jsonl"  # training and validation losses
STATS = "activation_stats.csv"  # per-layer activation statistics
DENSITY = "feature_density.npz"  # per-feature densities
CHECKPOINT = "model.pt"  # the final model and its run config
SUMMARY = "summary.json"  # written last: a run with a summary is finished
RESUME = "resume.pt"  # the resumable training state, in the run's resume folder
INFERENCE = "sparse_inference.json"  # written by the sparse_inference rule, next to the run's outputs
# The GPU benchmark's tables: each shape-and-process job writes the first, the combine step adds the second.
GPU_SHAPE_TABLES = ("ceilings", "gemm", "sparsify", "ffn", "ffn_rounds", "breakdown", "split_gemm",
                    "split_gemm_rounds")
GPU_DERIVED_TABLES = ("speedups", "stages", "sparsify_share", "split_speedups")


def run_dir(results: str | Path, variant: str, seed: int) -> Path:
    return Path(results) / "runs" / variant / f"seed{seed}"


def resume_dir(results: str | Path, variant: str, seed: int) -> Path:
    """Not a rule output: Snakemake never deletes it, so a rerun after a crash resumes from it."""
    return Path(results) / "checkpoints" / variant / f"seed{seed}"


def remove_finished_resume_folders(results: str | Path, runs: Iterable[tuple[str, int]],
                                   finished_since: float = 0.0) -> list[Path]:
    """Remove the resume folder of each (variant, seed) run whose summary is in place (the run finished) and was
    written at or after `finished_since` (a time.time()). The workflow passes its own start, once Snakemake has
    recorded its finished jobs: a summary from an earlier, killed invocation may belong to a job Snakemake marks
    incomplete, whose rerun needs the folder."""
    removed = []
    for variant, seed in runs:
        folder, summary = resume_dir(results, variant, seed), run_dir(results, variant, seed) / SUMMARY
        if summary.exists() and summary.stat().st_mtime >= finished_since and folder.exists():
            shutil.rmtree(folder)
            removed.append(folder)
    for folder in [*{f.parent for f in removed}, Path(results) / "checkpoints"]:  # and the folders left empty
        if folder.is_dir() and not any(folder.iterdir()):
            folder.rmdir()
    return removed
