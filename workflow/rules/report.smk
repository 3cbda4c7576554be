# Figures and the claims table; `snakemake --report report.html` collects them with captions.
FIGURES = f"{RESULTS}/figures"
# The ideal speedups (claim C10, and the bounds drawn in Fig. 5 / Fig. 6) of the configured recipe.
IDEAL_SPEEDUPS = ideal_speedups(config["claims"]["ideal_sparse_gemm_speedup"], config["sparse"]["dense_fraction"])


rule fig_sparsity:
    input:
        run_files(STATS, [SPARSE_VARIANT]),
    output:
        png=report(f"{FIGURES}/fig1_sparsity.png", caption="../report/fig1_sparsity.rst", category="Figures"),
        pdf=f"{FIGURES}/fig1_sparsity.pdf",
    params:
        figure="sparsity",
        title=f"FFN activation sparsity during training ({SPARSE_VARIANT})",
        paper_min_zero_frac=config["claims"]["c2_min_zero_frac"],
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/fig1_sparsity.log",
    script:
        "../scripts/figures.py"


rule fig_drop24:
    input:
        run_files(STATS, [SPARSE_VARIANT]),
    output:
        png=report(f"{FIGURES}/drop24.png", caption="../report/drop24.rst", category="Figures"),
        pdf=f"{FIGURES}/drop24.pdf",
    params:
        figure="drop24",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/drop24.log",
    script:
        "../scripts/figures.py"


rule fig_feature_density:
    input:
        run_files(DENSITY, [SPARSE_VARIANT])[:1],
    output:
        png=report(f"{FIGURES}/feature_density.png", caption="../report/feature_density.rst", category="Figures"),
        pdf=f"{FIGURES}/feature_density.pdf",
    params:
        figure="density",
        title=f"Per-feature density at the end of training ({SPARSE_VARIANT}, seed {SEEDS[0]})",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/feature_density.log",
    script:
        "../scripts/figures.py"


rule fig_loss_curves:
    input:
        run_files(METRICS, config["analysis"]["loss_curve_variants"]),
    output:
        png=report(f"{FIGURES}/loss_curves.png", caption="../report/loss_curves.rst", category="Figures"),
        pdf=f"{FIGURES}/loss_curves.pdf",
    params:
        figure="loss",
        labels=LABELS,
        palette=PALETTE,
        reference=SPARSE_VARIANT,  # the third panel: each variant's validation loss minus dense Squared-ReLU's
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/loss_curves.log",
    script:
        "../scripts/figures.py"


rule fig_table1:
    input:
        metrics=run_files(METRICS, TABLE1_VARIANTS),
        table=rules.table1.output.csv,
    output:
        png=report(f"{FIGURES}/table1_ablation.png", caption="../report/table1_ablation.rst", category="Figures"),
        pdf=f"{FIGURES}/table1_ablation.pdf",
    params:
        figure="table1",
        palette=PALETTE,
        margin=config["claims"]["c5_loss_tolerance"],  # the no-loss margin the C5 verdict uses
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/table1_ablation.log",
    script:
        "../scripts/figures.py"


rule fig_table1_gaps:
    input:
        run_files(METRICS, TABLE1_VARIANTS),
    output:
        csv=f"{TABLES}/table1_gaps.csv",
        png=report(f"{FIGURES}/table1_gaps.png", caption="../report/table1_gaps.rst", category="Figures"),
        pdf=f"{FIGURES}/table1_gaps.pdf",
    params:
        figure="table1_gaps",
        rows=config["analysis"].get("table1") or {},
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/table1_gaps.log",
    script:
        "../scripts/figures.py"


rule fig5_ffn_speedup:
    input:
        table=rules.gpu_combine.output.speedups,
        sidecar=rules.gpu_combine.output.sidecar,
    output:
        png=report(f"{FIGURES}/fig5_ffn_speedup.png", caption="../report/fig5.rst", category="GPU benchmarks"),
        pdf=f"{FIGURES}/fig5_ffn_speedup.pdf",
    params:
        figure="fig5",
        ideal=IDEAL_SPEEDUPS,
        paper_speedup=config["claims"]["paper_speedup"],
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/fig5.log",
    script:
        "../scripts/gpu_figures.py"


rule fig5_paper:
    """Fig. 5 for a paper: the best 2:4 FFN against the strongest dense one, per shape, the claims' point marked."""
    input:
        table=rules.gpu_combine.output.speedups,
        sidecar=rules.gpu_combine.output.sidecar,
    output:
        png=report(f"{FIGURES}/fig5_ffn_speedup_paper.png", caption="../report/fig5_paper.rst",
                   category="GPU benchmarks"),
        pdf=f"{FIGURES}/fig5_ffn_speedup_paper.pdf",
    params:
        figure="fig5_paper",
        paper_speedup=config["claims"]["paper_speedup"],
        speed_shape=config["claims"]["speed_shape"],
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/fig5_paper.log",
    script:
        "../scripts/gpu_figures.py"


rule fig_ffn_stages:
    input:
        table=rules.gpu_combine.output.stages,
        sidecar=rules.gpu_combine.output.sidecar,
    output:
        png=report(f"{FIGURES}/ffn_stages.png", caption="../report/ffn_stages.rst", category="GPU benchmarks"),
        pdf=f"{FIGURES}/ffn_stages.pdf",
    params:
        figure="stages",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/ffn_stages.log",
    script:
        "../scripts/gpu_figures.py"


rule fig6_split_gemm:
    input:
        table=rules.gpu_combine.output.split_gemm,
        sidecar=rules.gpu_combine.output.sidecar,
    output:
        png=report(f"{FIGURES}/fig6_split_gemm.png", caption="../report/fig6.rst", category="GPU benchmarks"),
        pdf=f"{FIGURES}/fig6_split_gemm.pdf",
    params:
        figure="fig6",
        ideal=IDEAL_SPEEDUPS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/figures/fig6.log",
    script:
        "../scripts/gpu_figures.py"


rule claims:
    input:
        summaries=run_files(SUMMARY, list(dict.fromkeys([SPARSE_VARIANT, config["analysis"]["swiglu_variant"],
                                                                *RECIPE_VARIANTS, *TABLE1_VARIANTS]))),
        inference=rules.inference_table.output.csv,
        table1=rules.table1.output.csv,
        stats=run_files(STATS, [SPARSE_VARIANT]),
        environment=rules.environment.output[0],
        speedups=rules.gpu_combine.output.speedups,
        split_gemm=rules.gpu_combine.output.split_gemm,
        split_speedups=rules.gpu_combine.output.split_speedups,
        gpu_sidecar=rules.gpu_combine.output.sidecar,
    output:
        csv=f"{TABLES}/claims.csv",
        md=f"{TABLES}/claims.md",
        tex=f"{TABLES}/claims.tex",
        html=report(f"{TABLES}/claims.html", caption="../report/claims.rst", category="Claims"),
    params:
        claims=config["claims"],
        dense_fraction=config["sparse"]["dense_fraction"],
        sparsity_variant=SPARSE_VARIANT,
        swiglu_variant=config["analysis"]["swiglu_variant"],
        sparse_recipe_variant=config["analysis"].get("sparse_recipe_variant"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/claims.log",
    script:
        "../scripts/claims.py"


rule report_all:
    input:
        rules.fig_sparsity.output,
        rules.fig_drop24.output,
        rules.fig_feature_density.output,
        rules.fig_loss_curves.output,
        rules.quality_table.output,
        rules.sparsity_table.output,
        rules.inference_table.output,
        rules.table1.output,
        rules.gradient_fidelity.output if not FINISHED_ONLY else [],  # needs a model file
        rules.fig_table1.output,
        rules.fig_table1_gaps.output,
        rules.params_table.output,
        rules.claims.output,
        rules.bench_cpu_step.output if RECIPE_VARIANTS and not FINISHED_ONLY else [],
        rules.gpu_tables.output,
        rules.fig5_ffn_speedup.output,
        rules.fig5_paper.output,
        rules.fig_ffn_stages.output,
        rules.fig6_split_gemm.output,
