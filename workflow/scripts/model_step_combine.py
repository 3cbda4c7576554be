"""The model-step table from every (width, process) job: speedups over the processes, full-depth estimates."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.gpubench import ModelStepConfig
    from act24.gpubench.model_step import combine_model_step

    out = snakemake.output
    combine_model_step(snakemake.params.part_dirs, out.csv, out.rounds, out.sidecar,
                       ModelStepConfig.from_dict(snakemake.params.cfg))
