"""All shapes' GPU tables in one file each, plus the speedups (intervals, bounds) and the stages."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    from act24.gpubench import combine

    combine(snakemake.params.shape_dirs, Path(snakemake.output.sidecar).parent)
