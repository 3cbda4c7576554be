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
    if which == "table1":  # the paper table, also for LaTeX
        cols = [c for c in ("label", "paper_loss", "val_loss_mean", "diff_vs_dense_sqrelu", "ci_low", "ci_high",
                            "seeds", "effect") if c in df]
        Path(snakemake.output.tex).write_text(tables.to_latex(df[cols], "Table 1: the 2:4 recipe's ablations",
                                                              "tab:table1"))
    print(df.to_string())
