"""The whole-model training step with dense and 2:4 FFNs; without CUDA, a 'skipped' record."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.gpubench import ModelStepConfig
    from act24.gpubench.model_step import write_model_step

    write_model_step(snakemake.output.csv, snakemake.output.sidecar, ModelStepConfig.from_dict(snakemake.params.cfg),
                     rounds_csv=snakemake.output.rounds)
