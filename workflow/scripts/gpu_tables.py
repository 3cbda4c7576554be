"""The GPU benchmark CSVs as Markdown and HTML tables (a 'skipped' record stays a one-row table)."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.io import read_csv
    from act24.report.tables import to_latex, write_table

    for name in ("gemm", "sparsify", "speedups", "stages", "sparsify_share", "split_speedups", "model_step"):
        df = read_csv(snakemake.input[name])
        write_table(df, snakemake.output[name], snakemake.output[f"{name}_html"])
        print(name, len(df), "rows")
        if name == "speedups":  # the paper table, also for LaTeX
            cols = [c for c in ("shape", "T", "precision", "pass", "sparse_path", "dense_path", "speedup",
                                "speedup_lo", "speedup_hi", "status") if c in df]
            caption = "FFN speedups of the 2:4 paths over the fastest dense path"
            with open(snakemake.output.speedups_tex, "w") as f:
                f.write(to_latex(df[cols], caption, "tab:speedups"))
