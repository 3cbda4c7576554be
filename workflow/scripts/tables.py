"""Write one table (CSV + markdown) named by params.table."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    from act24.report import ablation, results, tables

    which = snakemake.params.table
    runs = [Path(p).parent for p in snakemake.input.get("summaries", snakemake.input)]
    if which == "quality":
        df = tables.quality_table(results.read_summaries(runs), snakemake.params.labels)
    elif which == "sparsity":
        df = tables.final_sparsity_table(results.read_stats(runs))
    elif which == "inference":
        df = tables.inference_table(results.read_inference(runs), snakemake.params.labels)
    elif which == "table1":
        dynamics = ablation.Dynamics(**snakemake.params.dynamics)
        df = ablation.table1(results.read_summaries(runs), snakemake.params.rows, snakemake.params.labels,
                             metrics=results.read_metrics(runs), dynamics=dynamics)
    elif which == "params":
        df = tables.parameter_table(snakemake.params.shapes)
    else:
        raise ValueError(f"unknown table {which!r}")
    df.to_csv(snakemake.output.csv, index=False)
    tables.write_table(df, snakemake.output.md, snakemake.output.html)
    print(df.to_string())
