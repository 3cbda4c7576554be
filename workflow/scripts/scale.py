"""One scaling view (params.view): its table (CSV, Markdown, HTML) and figure (PNG, PDF)."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window

    from act24.report import figures, results, scale, tables

    p, out = snakemake.params, snakemake.output
    summaries = results.read_summaries(Path(f).parent for f in snakemake.input.summaries)
    if p.view == "gaps":
        df = scale.gap_table(summaries, p.scale, p.margins)
        fig = scale.gaps_figure(df, p.margins)
    else:
        stats = results.read_stats(Path(f).parent for f in snakemake.input.stats)
        if p.view == "drop":
            df = scale.drop_table(stats, summaries, p.scale, p.max_drop)
            fig = scale.drop_figure(df, p.max_drop)
        else:
            df, fig = None, scale.sparsity_figure(stats, p.scale, p.paper_min)
    if df is not None:
        df.to_csv(out.csv, index=False)
        tables.write_table(df, out.md, out.html)
        print(df.to_string())
    figures.save(fig, out.png, out.pdf)
