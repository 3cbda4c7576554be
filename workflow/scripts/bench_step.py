"""Cost of the emulated 2:4 training step against the dense step (a benchmark, not a test)."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    import dataclasses
    import pandas as pd

    from act24.bench import step_cost
    from act24.config import RunConfig
    from act24.io import write_json
    from act24.report.tables import write_table

    cfg = RunConfig.from_dict(snakemake.params.run)
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(cfg.train, threads=snakemake.threads))
    result = step_cost(cfg, repeats=snakemake.params.repeats)
    write_json(snakemake.output.json, result)
    write_table(pd.DataFrame([result]), snakemake.output.md, snakemake.output.html)
    print(result)
