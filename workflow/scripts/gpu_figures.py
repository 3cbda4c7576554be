"""Fig. 5 / Fig. 6 mirrors and the stage breakdown from the GPU benchmark; a figure saying why when it did not run."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    import matplotlib

    matplotlib.use("Agg")  # figures are files; never open a window

    from act24.io import read_csv, read_json
    from act24.report import figures

    TITLES = {"fig5": "Fig. 5: FFN speedup", "fig5_paper": "Fig. 5: FFN speedup", "fig6": "Fig. 6: split GEMM",
              "stages": "FFN time per stage"}

    which, sidecar = snakemake.params.figure, read_json(snakemake.input.sidecar)
    data = read_csv(snakemake.input.table)
    reason = sidecar["status"]
    if reason == "ok":
        cfg = sidecar["config"]
        data = data[(data["zero_frac"] == cfg["sweep_zero_frac"]) & (data["activations"] == "synthetic")]
        if which == "fig6":
            data = data[data["status"] == "ok"]
        reason = "ok" if not data.empty else "no path passed its correctness check"
    device = figures.device_title(sidecar.get("environment", {}))
    if reason != "ok":
        fig = figures.not_measured(TITLES[which], f"{reason} ({device})")
    elif which == "fig5":
        fig = figures.ffn_speedups(data, snakemake.params.ideal, device, snakemake.params.paper_speedup)
    elif which == "fig5_paper":
        fig = figures.ffn_speedup_paper(data, (snakemake.params.speed_shape, cfg["extra_tokens"]),
                                        snakemake.params.paper_speedup, device)
    elif which == "stages":
        fig = figures.ffn_stages(data, cfg["extra_tokens"], device)
    else:
        fig = figures.split_gemm(data, snakemake.params.ideal["split_gemm"], device)
    figures.save(fig, snakemake.output.png, snakemake.output.pdf)
