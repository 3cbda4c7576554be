# Shared settings: validate the config, resolve every (variant, seed) run before any job starts.
import dataclasses
import re
import sys
import time

import yaml

try:
    from act24.config import ConfigError
    from act24.corpus import sources as corpus_sources
    from act24.corpus import DataError
    from act24.experiment import (bench_settings, check_bench_settings, check_config, device_warning,
                                  overrides_needing_a_folder, read_yaml, variant_label, variant_seeds)
    from act24.report.claims import ClaimThresholds, ideal_speedups
    from act24.report.palette import variant_palette
    from act24.layout import (CHECKPOINT, DENSITY, GPU_DERIVED_TABLES, GPU_SHAPE_TABLES, INFERENCE, METRICS, STATS,
                              SUMMARY, remove_finished_resume_folders, resume_dir, run_dir)
except ImportError as exc:
    sys.exit(f"act24 is not importable ({exc}): install it first, e.g. `pip install -e .` (see README)")


try:  # the files (a key twice), the schema (its defaults filled in), then every run: one line, before any job
    for configfile in [os.path.join(workflow.basedir, "config", "config.yaml"), *workflow.config_settings.configfiles]:
        read_yaml(configfile)
    RUNS = check_config(config, os.path.join(workflow.basedir, "workflow", "schemas", "config.schema.yaml"),
                        command_line=workflow.config_settings.overwrite_config)
    ClaimThresholds.from_config(config["claims"])  # read by the claims job only: checked now too
except ConfigError as exc:
    sys.exit(f"config error: {exc}")
if changed := overrides_needing_a_folder(dict(workflow.config_settings.config)):  # --config only, not --configfile
    sys.exit(f"config error: --config changes {', '.join(changed)}, which would retrain runs and rewrite the tables "
             f"in {config['results']}/: give the experiment a folder of its own, e.g. add results={config['results']}/"
             f"my_experiment logs={config['logs']}/my_experiment (or put the settings in a --configfile with its own "
             "results:)")
if device_warning(RUNS):  # at planning time, not after the data steps
    print(device_warning(RUNS), file=sys.stderr)

try:  # every pinned distribution file of data.source: packages, checked before any job
    PACKAGE_SOURCES = {s.file: s for s in corpus_sources(config["data"])} if config["data"]["source"] == "packages" else {}
except DataError as exc:
    sys.exit(f"config error: {exc}")
RESULTS = config["results"]
STARTED = time.time()  # this invocation's start: onsuccess removes the resume folders of the runs it finished
FINISHED_ONLY = config["analysis"].get("finished_runs_only", False)
LOGS = config["logs"]
VARIANTS = list(config["variants"])
SEEDS = [int(s) for s in config["seeds"]]
LABELS = {v: variant_label(config, v) for v in VARIANTS}  # a rule that shows labels declares them (params)
with open(os.path.join(workflow.basedir, "config", "config.yaml")) as f:  # its variants keep their colours
    PALETTE = variant_palette(VARIANTS, first=list(yaml.safe_load(f)["variants"]))  # one colour per variant
RUN = str(run_dir(RESULTS, "{variant}", "{seed}"))  # one run's folder, with wildcards


wildcard_constraints:
    variant="|".join(VARIANTS),
    seed=r"\d+",


def gpu_percent(wildcards):
    """Share of the local GPU (resource gpu_percent, capped at 100 by profiles/default) a run's job takes."""
    on_gpu = RUNS[(wildcards.variant, int(wildcards.seed))].train.device == "cuda"
    return config.get("gpu_percent_per_run", 100) if on_gpu else 0


def run_files(name, variants=VARIANTS):
    """One file (by name) of every run of `variants`, for all their seeds."""
    files = [f"{run_dir(RESULTS, v, s)}/{name}" for v in variants for s in variant_seeds(config, v)]
    if FINISHED_ONLY:  # runs trained elsewhere (act24 sweep): never train here
        files = [f for f in files if os.path.exists(os.path.join(os.path.dirname(f), SUMMARY))]
    return files
