# The scaling views of analysis.scale (config/gpu_scale.yaml): the C1 / C5 gaps, the 2:4 drop and the sparsity
# against model size, and Fig. 1 at every size.
SCALE = config["analysis"].get("scale") or {}
SCALE_VARIANTS = list(dict.fromkeys(v for spec in SCALE.values() for v in spec.values()))
SCALE_SQRELU = [spec["sqrelu"] for spec in SCALE.values()]
SCALE_PARAMS = dict(
    scale=SCALE,
    margins={"C1": config["claims"]["c1_loss_tolerance"], "C5": config["claims"]["c5_loss_tolerance"]},
    max_drop=config["claims"]["c4_max_drop"],
    paper_min=config["claims"]["c2_min_zero_frac"],
)


rule scale_gaps:
    input:
        summaries=run_files(SUMMARY, SCALE_VARIANTS),
    output:
        csv=f"{TABLES}/scale_gaps.csv",
        md=f"{TABLES}/scale_gaps.md",
        html=report(f"{TABLES}/scale_gaps.html", caption="../report/scale_gaps_table.rst", category="Scale"),
        png=report(f"{FIGURES}/scale_gaps.png", caption="../report/scale_gaps.rst", category="Scale"),
        pdf=f"{FIGURES}/scale_gaps.pdf",
    params:
        view="gaps",
        **SCALE_PARAMS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/scale/gaps.log",
    script:
        "../scripts/scale.py"


rule scale_drop:
    input:
        summaries=run_files(SUMMARY, SCALE_SQRELU),
        stats=run_files(STATS, SCALE_SQRELU),
    output:
        csv=f"{TABLES}/scale_drop.csv",
        md=f"{TABLES}/scale_drop.md",
        html=report(f"{TABLES}/scale_drop.html", caption="../report/scale_drop_table.rst", category="Scale"),
        png=report(f"{FIGURES}/scale_drop.png", caption="../report/scale_drop.rst", category="Scale"),
        pdf=f"{FIGURES}/scale_drop.pdf",
    params:
        view="drop",
        **SCALE_PARAMS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/scale/drop.log",
    script:
        "../scripts/scale.py"


rule scale_sparsity:
    input:
        summaries=run_files(SUMMARY, SCALE_SQRELU),
        stats=run_files(STATS, SCALE_SQRELU),
    output:
        png=report(f"{FIGURES}/scale_sparsity.png", caption="../report/scale_sparsity.rst", category="Scale"),
        pdf=f"{FIGURES}/scale_sparsity.pdf",
    params:
        view="sparsity",
        **SCALE_PARAMS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/scale/sparsity.log",
    script:
        "../scripts/scale.py"


rule scale_all:
    input:
        (rules.scale_gaps.output, rules.scale_drop.output, rules.scale_sparsity.output) if SCALE else [],
