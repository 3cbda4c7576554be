"""The whole-model training step with dense and 2:4 FFNs, one width and benchmark process; without CUDA, a
'skipped' record."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    from act24.gpubench import ModelStepConfig
    from act24.gpubench.model_step import write_model_step_part

    write_model_step_part(Path(snakemake.output.sidecar).parent, ModelStepConfig.from_dict(snakemake.params.cfg),
                          snakemake.wildcards.width, int(snakemake.wildcards.process))
