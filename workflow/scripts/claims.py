"""Compute the claims table from the run results."""
from pathlib import Path

import pandas as pd

from act24.io import log_to, read_json
from act24.report import claims, results, tables

with log_to(snakemake.log[0]):
    config = snakemake.config
    runs = [Path(p).parent for p in snakemake.input.summaries]
    thresholds = claims.ClaimThresholds(**{k: tuple(v) if isinstance(v, list) else v
                                           for k, v in config["claims"].items()})
    df = claims.claims_table(results.read_summaries(runs), results.read_stats(runs),
                             read_json(snakemake.input.environment), thresholds,
                             config["analysis"]["sparsity_variant"], config["analysis"]["swiglu_variant"],
                             config["analysis"].get("sparse_recipe_variant"),
                             gpu={"sidecar": read_json(snakemake.input.gpu_sidecar),
                                  "speedups": pd.read_csv(snakemake.input.speedups),
                                  "split_gemm": pd.read_csv(snakemake.input.split_gemm)},
                             table1_rows=config["analysis"].get("table1"),
                             inference=pd.read_csv(snakemake.input.inference))
    df.to_csv(snakemake.output.csv, index=False)
    Path(snakemake.output.md).write_text(tables.to_markdown(df))
    print(df.to_string())
