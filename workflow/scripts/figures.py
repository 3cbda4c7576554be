"""Draw one figure of the training runs, named by params.figure."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window

    from act24.report import ablation, figures, results

    which = snakemake.params.figure
    runs = [Path(p).parent for p in snakemake.input]
    if which == "sparsity":
        fig = figures.sparsity_over_training(results.read_stats(runs), snakemake.params.title,
                                             snakemake.params.paper_min_zero_frac)
    elif which == "drop24":
        fig = figures.drop_fractions(results.read_stats(runs))
    elif which == "density":
        _, density = results.read_density(runs[0])
        fig = figures.feature_density(density[-1], snakemake.params.title)
    elif which == "loss":
        fig = figures.loss_curves(results.read_metrics(runs), snakemake.params.labels, snakemake.params.palette,
                                  snakemake.params.reference)
    elif which == "table1_gaps":
        gaps = ablation.gap_curves(results.read_metrics(runs), snakemake.params.rows)
        gaps.to_csv(snakemake.output.csv, index=False)
        fig = figures.table1_gaps(gaps)
    elif which == "table1":
        fig = figures.table1_ablation(results.read_metrics(Path(p).parent for p in snakemake.input.metrics),
                                      ablation.read_table1(snakemake.input.table), snakemake.params.palette,
                                      snakemake.params.margin)
    else:
        raise ValueError(f"unknown figure {which!r}")
    figures.save(fig, snakemake.output.png, snakemake.output.pdf)
