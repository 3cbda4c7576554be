"""The GPU benchmark CSVs as markdown tables (a 'skipped' record stays a one-row table)."""
from pathlib import Path

from act24.io import log_to, read_csv
from act24.report.tables import to_markdown

with log_to(snakemake.log[0]):
    for name in ("gemm", "sparsify", "speedups", "stages", "sparsify_share", "model_step"):
        df = read_csv(snakemake.input[name])
        Path(snakemake.output[name]).write_text(to_markdown(df))
        print(name, len(df), "rows")
