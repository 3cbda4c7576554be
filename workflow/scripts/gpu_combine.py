"""All shapes' GPU tables in one file each, plus the speedups (intervals, bounds) and the stages."""
from pathlib import Path

from act24.gpubench import combine
from act24.io import log_to

with log_to(snakemake.log[0]):
    combine(snakemake.params.shape_dirs, Path(snakemake.output.sidecar).parent)
