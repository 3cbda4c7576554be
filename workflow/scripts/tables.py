"""Write one table (CSV + markdown) named by params.table."""
from pathlib import Path

from act24.experiment import variant_label
from act24.io import log_to
from act24.report import ablation, claims, results, tables

with log_to(snakemake.log[0]):
    config, which = snakemake.config, snakemake.params.table
    runs = [Path(p).parent for p in snakemake.input.get("summaries", snakemake.input)]
    labels = {v: variant_label(config, v) for v in config["variants"]}
    if which == "quality":
        df = tables.quality_table(results.read_summaries(runs), labels)
    elif which == "sparsity":
        df = tables.final_sparsity_table(results.read_stats(runs))
    elif which == "inference":
        df = tables.inference_table(results.read_inference(runs), labels)
    elif which == "table1":
        dynamics = claims.ClaimThresholds.from_config(snakemake.params.claims).dynamics
        df = ablation.table1(results.read_summaries(runs), snakemake.params.rows, labels,
                             metrics=results.read_metrics(runs), dynamics=dynamics)
    elif which == "params":
        df = tables.parameter_table(snakemake.params.shapes)
    else:
        raise ValueError(f"unknown table {which!r}")
    df.to_csv(snakemake.output.csv, index=False)
    Path(snakemake.output.md).write_text(tables.to_markdown(df))
    print(df.to_string())
