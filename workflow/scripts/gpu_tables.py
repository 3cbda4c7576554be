"""The GPU benchmark CSVs as Markdown and HTML tables (a 'skipped' record stays a one-row table)."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from act24.io import read_csv
    from act24.report.tables import write_table

    for name in ("gemm", "sparsify", "speedups", "stages", "sparsify_share", "split_speedups", "model_step"):
        df = read_csv(snakemake.input[name])
        write_table(df, snakemake.output[name], snakemake.output[f"{name}_html"])
        print(name, len(df), "rows")
