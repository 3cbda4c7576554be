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
        run_files("summary.json"),
    output:
        csv=f"{TABLES}/quality.csv",
        md=report(f"{TABLES}/quality.md", caption="../report/quality.rst", category="Tables"),
    params:
        table="quality",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/quality.log",
    script:
        "../scripts/tables.py"


rule sparsity_table:
    input:
        run_files("activation_stats.csv", [v for v in VARIANTS if config["variants"][v]["ffn"] != "swiglu"]),
    output:
        csv=f"{TABLES}/sparsity.csv",
        md=report(f"{TABLES}/sparsity.md", caption="../report/sparsity_table.rst", category="Tables"),
    params:
        table="sparsity",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/sparsity.log",
    script:
        "../scripts/tables.py"


rule sparse_inference:
    input:
        checkpoint=rules.train.output.checkpoint,
        val=rules.tokenize.output.val,
    output:
        f"{RESULTS}/runs/{{variant}}/seed{{seed}}/sparse_inference.json",
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
        run_files("sparse_inference.json"),
    output:
        csv=f"{TABLES}/sparse_inference.csv",
        md=report(f"{TABLES}/sparse_inference.md", caption="../report/sparse_inference.rst", category="Tables"),
    params:
        table="inference",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/sparse_inference.log",
    script:
        "../scripts/tables.py"


rule gradient_fidelity:
    input:
        checkpoint=f"{RESULTS}/runs/{SPARSE_VARIANT}/seed{SEEDS[0]}/model.pt",
        val=rules.tokenize.output.val,
    output:
        csv=f"{TABLES}/gradient_fidelity.csv",
        md=report(f"{TABLES}/gradient_fidelity.md", caption="../report/gradient_fidelity.rst", category="Tables"),
    params:
        # The sparse Table 1 rows' recipes (the full recipe and its ablations), by variant.
        recipes=lambda w: {v: RUNS[(v, SEEDS[0])].to_dict()["sparse"]
                           for v in dict.fromkeys([*TABLE1_VARIANTS, *RECIPE_VARIANTS])
                           if RUNS[(v, SEEDS[0])].sparse.enabled},
        n_batches=4,
    threads: config["train"].get("threads", 1)
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/gradient_fidelity.log",
    script:
        "../scripts/gradient_fidelity.py"


rule table1:
    input:
        run_files("summary.json"),
    output:
        csv=f"{TABLES}/table1.csv",
        md=report(f"{TABLES}/table1.md", caption="../report/table1.rst", category="Tables"),
    params:
        table="table1",
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/table1.log",
    script:
        "../scripts/tables.py"


rule params_table:
    output:
        csv=f"{TABLES}/params.csv",
        md=report(f"{TABLES}/params.md", caption="../report/params.rst", category="Tables"),
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


rule bench_cpu_step:
    output:
        json=f"{RESULTS}/bench/step_cost.json",
        md=report(f"{TABLES}/step_cost.md", caption="../report/step_cost.rst", category="Tables"),
    params:
        run=lambda w: RUNS[(RECIPE_VARIANTS[0], SEEDS[0])].to_dict(),
        repeats=20,
    threads: config["train"].get("threads", 1)
    resources:
        gpu_percent=100,  # on a GPU config it times the GPU: the whole GPU, nothing else alongside
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/step_cost.log",
    script:
        "../scripts/bench_step.py"


GPU_BENCH = f"{RESULTS}/bench/gpu"
# The trained density profile ships with the repository: resolve it next to the Snakefile.
TRAINED_PROFILE = config["gpu_bench"].get("trained_profile")
if TRAINED_PROFILE and not os.path.isabs(TRAINED_PROFILE):
    TRAINED_PROFILE = os.path.join(workflow.basedir, TRAINED_PROFILE)
GPU_TABLES = ["ceilings", "gemm", "sparsify", "sparsify_share", "ffn", "speedups", "split_gemm"]


rule bench_gpu:
    input:
        [TRAINED_PROFILE] if TRAINED_PROFILE else [],
    output:
        **{t: f"{GPU_BENCH}/{t}.csv" for t in GPU_TABLES},
        sidecar=f"{GPU_BENCH}/bench.json",
    params:
        cfg={**config["gpu_bench"], "trained_profile": TRAINED_PROFILE},
    resources:
        gpu_percent=100,  # times the GPU: the whole GPU, nothing else alongside
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/gpu.log",
    script:
        "../scripts/bench_gpu.py"


rule gpu_tables:
    input:
        gemm=rules.bench_gpu.output.gemm,
        sparsify=rules.bench_gpu.output.sparsify,
        speedups=rules.bench_gpu.output.speedups,
        sparsify_share=rules.bench_gpu.output.sparsify_share,
    output:
        gemm=report(f"{TABLES}/gpu_gemm.md", caption="../report/gpu_gemm.rst", category="GPU benchmarks"),
        sparsify=report(f"{TABLES}/gpu_sparsify.md", caption="../report/gpu_sparsify.rst", category="GPU benchmarks"),
        speedups=report(f"{TABLES}/gpu_speedups.md", caption="../report/gpu_speedups.rst", category="GPU benchmarks"),
        sparsify_share=report(f"{TABLES}/gpu_sparsify_share.md", caption="../report/gpu_sparsify.rst",
                              category="GPU benchmarks"),
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/gpu_tables.log",
    script:
        "../scripts/gpu_tables.py"
