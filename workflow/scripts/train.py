"""Train one (variant, seed) run with the threads Snakemake granted (in train.processes processes)."""
import dataclasses

from act24.config import RunConfig
from act24.distributed import train_data_parallel
from act24.io import log_to
from act24.train import describe, train

with log_to(snakemake.log[0]):
    cfg = RunConfig.from_dict(snakemake.params.run)
    threads = max(1, snakemake.threads // cfg.train.processes)  # per process
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=threads))
    fit = train_data_parallel if cfg.train.processes > 1 else train
    summary = fit(cfg, snakemake.input.train, snakemake.input.val, snakemake.params.out_dir,
                  resume_dir=snakemake.params.resume_dir)
    print(describe(summary))
