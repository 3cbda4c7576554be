"""Compute the claims table from the run results."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    from act24.io import read_csv, read_json
    from act24.report import ablation, claims, results, tables

    params = snakemake.params
    runs = [Path(p).parent for p in snakemake.input.summaries]
    thresholds = claims.ClaimThresholds.from_config(params.claims)
    df = claims.claims_table(
        results.read_summaries(runs), results.read_stats(runs), read_json(snakemake.input.environment), thresholds,
        params.sparsity_variant, params.swiglu_variant, params.sparse_recipe_variant,
        dense_fraction=params.dense_fraction,
        gpu={"sidecar": read_json(snakemake.input.gpu_sidecar), "speedups": read_csv(snakemake.input.speedups),
             "split_gemm": read_csv(snakemake.input.split_gemm),
             "split_speedups": read_csv(snakemake.input.split_speedups)},
        table1=ablation.read_table1(snakemake.input.table1), inference=read_csv(snakemake.input.inference))
    df.to_csv(snakemake.output.csv, index=False)
    Path(snakemake.output.md).write_text(tables.claims_markdown(df))  # long texts out of the table
    Path(snakemake.output.html).write_text(tables.to_html(df, "claims"))
    Path(snakemake.output.tex).write_text(tables.to_latex(df[["id", "claim", "paper", "verdict"]],
                                                          "The paper's claims and this run's verdicts", "tab:claims"))
    print(df.to_string())
