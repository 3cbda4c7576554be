"""Train the runs of a workflow config without Snakemake, several at a time on one GPU: for a machine that has the
package but not the workflow engine (an offline GPU machine, given the corpus as an `act24.offline` bundle).

The config is resolved exactly as the workflow resolves it (config/config.yaml, then each `--configfile` merged
over it, then `act24.experiment.check_config`), and each run writes the folder the `train` and `sparse_inference`
rules write (results/runs/<variant>/seed<k>/), so the workflow's analysis rules read them as they are. A run that
fails (out of memory, a backend that fails its check) leaves `failed.json` with the reason instead of a summary;
the other runs go on. Finished runs are skipped, so a second call continues a sweep; with `train.checkpoint_every`
set, a run cut short (a time limit, a lost machine) continues from its last checkpoint in the resume folder the
`train` rule uses.
"""

from __future__ import annotations

import concurrent.futures as cf
import hashlib
import json
import multiprocessing
import os
import subprocess
import sys
import time
import traceback
from pathlib import Path


from .config import ConfigError, RunConfig
from .experiment import _merge, apply_assignments, check_config, read_yaml, variant_seeds
from .io import SetupError, log_to, write_json
from .layout import CHECKPOINT, INFERENCE, SUMMARY, remove_finished_resume_folders, resume_dir, run_dir

FAILED = "failed.json"


BASE, SCHEMA = "config/config.yaml", "workflow/schemas/config.schema.yaml"  # relative to the repository root


def read_config(configfiles: list[str], base: str = BASE) -> dict:
    """`base`, then each file of `configfiles` merged over it, as Snakemake merges them (not yet checked)."""
    config = read_yaml(base)
    for path in configfiles:
        config = _merge(config, read_yaml(path))
    return config


def load_config(configfiles: list[str], base: str = BASE,
                schema: str = SCHEMA) -> tuple[dict, dict[tuple[str, int], RunConfig]]:
    """(config, runs) as the workflow sees them: `base`, then each file of `configfiles` merged over it."""
    config = read_config(configfiles, base)
    return config, check_config(config, schema)


FOLDER_KEYS = ("data", "results", "logs")  # the corpus and the folders: the config files' business


def single_run(configfiles: list[str], assignments: list[str], variant: str | None = None, seed: int | None = None,
               base: str = BASE, schema: str = SCHEMA) -> tuple[dict, RunConfig, Path]:
    """The run `act24 train KEY=VALUE ...` trains: config/config.yaml (then each of `configfiles`) with each
    dotted assignment set as the workflow's `--config` would set it, validated the same way; the variant (default
    analysis.sparsity_variant) and seed (default its first). Returns (config, run, its folder:
    <results>/cli/<variant>-<hash of its settings>/seed<k>, so that runs with other settings never share one)."""
    if bad := [a for a in assignments if a.partition("=")[0].split(".")[0] in FOLDER_KEYS]:
        raise ConfigError(f"{bad[0]!r}: the corpus and the folders come from the config files; put them in a "
                          "--configfile (with results: of its own)")
    config = apply_assignments(read_config(configfiles, base), assignments)
    runs = check_config(config, schema)
    variant = variant or config["analysis"]["sparsity_variant"]
    if variant not in config["variants"]:
        raise ConfigError(f"--variant {variant!r}: not a variant (have: {', '.join(config['variants'])})")
    seed = variant_seeds(config, variant)[0] if seed is None else seed
    if (variant, seed) not in runs:
        raise ConfigError(f"--seed {seed}: variant {variant!r} runs seeds {variant_seeds(config, variant)}")
    run = runs[(variant, seed)]
    settings = run.to_dict()
    settings.pop("name")
    settings["train"] = {k: v for k, v in settings["train"].items() if k != "seed"}
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:8]
    return config, run, Path(config["results"]) / "cli" / f"{variant}-{digest}" / f"seed{seed}"


def make_token_files(config: dict, configfiles: list[str]) -> tuple[str, str]:
    """The config's token arrays, made by the workflow's data rules first if they are missing."""
    data = Path(config["results"]) / "data"
    train, val = data / "train.npy", data / "val.npy"
    if not (train.exists() and val.exists()):
        print(f"making the corpus and its tokens first: snakemake {train} {val}", flush=True)
        cmd = [sys.executable, "-m", "snakemake", "--cores", str(os.cpu_count() or 1), str(train), str(val)]
        done = subprocess.run(cmd + (["--configfile", *configfiles] if configfiles else []))
        if done.returncode:
            raise SetupError(f"the data rules failed (exit {done.returncode}; their logs are under "
                             f"{config['logs']}/): `{' '.join(cmd)}`")
    return str(train), str(val)


def _train_one(cfg_dict: dict, train: str, val: str, out: str, resume: str, log: str,
               inference_batches: int) -> dict:
    """One run in its own process: train (continuing from a checkpoint in `resume` if there is one), then the
    sparse-inference evaluation; the model file is left on disk."""
    from .evaluate import sparse_inference
    from .train import train as train_run

    with log_to(log, append=True):  # a run continued from its checkpoint keeps its earlier log
        cfg = RunConfig.from_dict(cfg_dict)
        start = time.perf_counter()
        try:
            summary = train_run(cfg, train, val, out, progress=True, resume_dir=resume)
            write_json(Path(out) / INFERENCE, sparse_inference(Path(out) / CHECKPOINT, val, inference_batches))
        except Exception as exc:  # noqa: BLE001 - any failure becomes the run's row, the sweep goes on
            traceback.print_exc()
            reason = f"{type(exc).__name__}: {(str(exc).splitlines() or [''])[0][:300]}"
            write_json(Path(out) / FAILED, {"name": cfg.name, "reason": reason,
                                             "seconds": time.perf_counter() - start})
            return {"name": cfg.name, "status": f"failed: {reason}"}
    return {"name": cfg.name, "status": "ok", "final_val_loss": summary["final_val_loss"],
            "tokens_per_second": summary["tokens_per_second"], "seconds": summary["train_seconds"]}


def sweep(config: dict, runs: dict[tuple[str, int], RunConfig], train: str, val: str, parallel: int = 1,
          variants: list[str] | None = None, seeds: list[int] | None = None) -> list[dict]:
    """Train every run of `runs` without a summary (or only those of `variants` and `seeds`), `parallel` at a time,
    each in a fresh process, seed by seed (so that a sweep cut short leaves complete sets of variants); returns one
    status row per run."""
    results, logs = Path(config["results"]), Path(config["logs"])
    todo, rows, started = [], [], time.time()
    for (variant, seed), cfg in sorted(runs.items(), key=lambda item: config["seeds"].index(item[0][1])):
        out = run_dir(results, variant, seed)
        if (variants and variant not in variants) or (seeds and seed not in seeds):
            continue
        if (out / SUMMARY).exists() and (out / INFERENCE).exists():
            rows.append({"name": cfg.name, "status": "done before"})
            continue
        (out / FAILED).unlink(missing_ok=True)
        todo.append((cfg.to_dict(), train, val, str(out), str(resume_dir(results, variant, seed)),
                     str(logs / "train" / variant / f"seed{seed}.log"),
                     config["analysis"].get("inference_eval_batches", 32)))
    context = multiprocessing.get_context("spawn")  # CUDA cannot be forked
    with cf.ProcessPoolExecutor(max(1, parallel), mp_context=context, max_tasks_per_child=1) as pool:
        futures = {pool.submit(_train_one, *job): job for job in todo}
        for future in cf.as_completed(futures):
            try:
                row = future.result()
            except Exception as exc:  # noqa: BLE001 - a process killed outright (e.g. by the OOM killer)
                cfg, out = futures[future][0], futures[future][3]
                reason = f"the process ended without a result ({type(exc).__name__}: {exc})"
                write_json(Path(out) / FAILED, {"name": cfg["name"], "reason": reason})
                row = {"name": cfg["name"], "status": f"failed: {reason}"}
            print(row, flush=True)
            rows.append(row)
    remove_finished_resume_folders(results, runs, finished_since=started)
    return rows
