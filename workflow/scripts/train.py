"""Train one (variant, seed) run with the threads Snakemake granted."""
import dataclasses

from act24.config import RunConfig
from act24.io import log_to
from act24.train import describe, train

with log_to(snakemake.log[0]):
    cfg = RunConfig.from_dict(snakemake.params.run)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=snakemake.threads))
    summary = train(cfg, snakemake.input.train, snakemake.input.val, snakemake.params.out_dir,
                    resume_dir=snakemake.params.resume_dir)
    print(describe(summary))
