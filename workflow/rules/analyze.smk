# Tables computed from the runs: quality, final sparsity per layer, parameter counts.
TABLES = f"{RESULTS}/tables"
SPARSE_VARIANT = config["analysis"]["sparsity_variant"]
RECIPE_VARIANTS = [v for v in [config["analysis"].get("sparse_recipe_variant")] if v]
TABLE1_VARIANTS = list(dict.fromkeys((config["analysis"].get("table1") or {}).values()))


rule environment:
    output:
        f"{RESULTS}/environment.json",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/environment.log",
    script:
        "../scripts/environment.py"


rule quality_table:
    input:
        run_files(SUMMARY),
    output:
        csv=f"{TABLES}/quality.csv",
        md=f"{TABLES}/quality.md",
        html=report(f"{TABLES}/quality.html", caption="../report/quality.rst", category="Tables"),
    params:
        table="quality",
        labels=LABELS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/quality.log",
    script:
        "../scripts/tables.py"


rule sparsity_table:
    input:
        run_files(STATS, [v for v in VARIANTS if config["variants"][v]["ffn"] != "swiglu"]),
    output:
        csv=f"{TABLES}/sparsity.csv",
        md=f"{TABLES}/sparsity.md",
        html=report(f"{TABLES}/sparsity.html", caption="../report/sparsity_table.rst", category="Tables"),
    params:
        table="sparsity",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/sparsity.log",
    script:
        "../scripts/tables.py"


if not FINISHED_ONLY:  # see train.smk

    rule sparse_inference:
        input:
            checkpoint=rules.train.output.checkpoint,
            val=rules.tokenize.output.val,
        output:
            f"{RUN}/{INFERENCE}",
        params:
            n_batches=config["analysis"].get("inference_eval_batches", 32),
        threads: config["train"].get("threads", 1)
        resources:
            gpu_percent=gpu_percent,
        conda:
            "../../environment.yml"
        log:
            f"{LOGS}/sparse_inference/{{variant}}/seed{{seed}}.log",
        script:
            "../scripts/sparse_inference.py"


rule inference_table:
    input:
        run_files(INFERENCE),
    output:
        csv=f"{TABLES}/sparse_inference.csv",
        md=f"{TABLES}/sparse_inference.md",
        html=report(f"{TABLES}/sparse_inference.html", caption="../report/sparse_inference.rst", category="Tables"),
    params:
        table="inference",
        labels=LABELS,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/sparse_inference.log",
    script:
        "../scripts/tables.py"


rule gradient_fidelity:
    input:
        checkpoint=str(run_dir(RESULTS, SPARSE_VARIANT, SEEDS[0]) / CHECKPOINT),
        val=rules.tokenize.output.val,
    output:
        csv=f"{TABLES}/gradient_fidelity.csv",
        md=f"{TABLES}/gradient_fidelity.md",
        html=report(f"{TABLES}/gradient_fidelity.html", caption="../report/gradient_fidelity.rst", category="Tables"),
    params:
        # The sparse Table 1 rows' recipes (the full recipe and its ablations), by variant.
        recipes=lambda w: {v: RUNS[(v, SEEDS[0])].to_dict()["sparse"]
                           for v in dict.fromkeys([*TABLE1_VARIANTS, *RECIPE_VARIANTS])
                           if RUNS[(v, SEEDS[0])].sparse.enabled},
        n_batches=4,
        labels=LABELS,
    threads: config["train"].get("threads", 1)
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/gradient_fidelity.log",
    script:
        "../scripts/gradient_fidelity.py"


rule table1:
    input:
        summaries=run_files(SUMMARY),
        metrics=run_files(METRICS),
    output:
        csv=f"{TABLES}/table1.csv",
        md=f"{TABLES}/table1.md",
        tex=f"{TABLES}/table1.tex",
        html=report(f"{TABLES}/table1.html", caption="../report/table1.rst", category="Tables"),
    params:
        table="table1",
        labels=LABELS,
        rows=config["analysis"].get("table1") or {},
        # divergence and plateau detection: these thresholds only, so that other claims thresholds rerun claims only
        dynamics=dataclasses.asdict(ClaimThresholds.from_config(config["claims"]).dynamics),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/table1.log",
    script:
        "../scripts/tables.py"


rule params_table:
    output:
        csv=f"{TABLES}/params.csv",
        md=f"{TABLES}/params.md",
        html=report(f"{TABLES}/params.html", caption="../report/params.rst", category="Tables"),
    params:
        table="params",
        shapes={
            "this config": {**config["model"], "vocab_size": config["data"]["vocab_size"]},
            **config["analysis"].get("reference_shapes", {}),
        },
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/params.log",
    script:
        "../scripts/tables.py"
