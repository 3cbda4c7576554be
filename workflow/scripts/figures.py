"""Draw one figure named by params.figure."""
from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # figures are files; never open a window

from act24.experiment import variant_label
from act24.io import log_to
from act24.report import figures, results

with log_to(snakemake.log[0]):
    config, which = snakemake.config, snakemake.params.figure
    runs = [Path(p).parent for p in snakemake.input if str(p).endswith((".csv", ".npz", ".jsonl"))]
    if which == "sparsity":
        fig = figures.sparsity_over_training(results.read_stats(runs), snakemake.params.title)
    elif which == "drop24":
        fig = figures.drop_fractions(results.read_stats(runs))
    elif which == "density":
        _, density = results.read_density(runs[0])
        fig = figures.feature_density(density[-1], snakemake.params.title)
    elif which in ("fig5", "fig6"):
        import pandas as pd

        from act24.io import read_json
        from act24.report.claims import ideal_speedups

        sidecar = read_json(snakemake.input.sidecar)
        title = "Fig. 5: FFN speedup" if which == "fig5" else "Fig. 6: split GEMM"
        data = pd.read_csv(snakemake.input.table)
        if sidecar["status"] == "ok":
            data = data[(data["zero_frac"] == sidecar["config"]["sweep_zero_frac"])
                        & (data["activations"] == "synthetic")]
            if which == "fig6":
                data = data[data["status"] == "ok"]
        if sidecar["status"] != "ok" or data.empty:
            fig = figures.not_measured(title, sidecar["status"] if sidecar["status"] != "ok"
                                       else "no path passed its correctness check")
        elif which == "fig5":
            fig = figures.ffn_speedups(data, ideal_speedups())
        else:
            fig = figures.split_gemm(data, ideal_speedups()["split_gemm"])
    elif which == "loss":
        labels = {v: variant_label(config, v) for v in config["variants"]}
        fig = figures.loss_curves(results.read_metrics(runs), labels)
    else:
        raise ValueError(f"unknown figure {which!r}")
    figures.save(fig, snakemake.output[0])
