# Benchmarks: the CPU step cost of the emulated recipe; on a CUDA device the FFN speed per shape and process,
# the whole-model training step per width and process, and their combined tables (else "skipped" records).


rule bench_cpu_step:
    output:
        json=f"{RESULTS}/bench/step_cost.json",
        md=f"{TABLES}/step_cost.md",
        html=report(f"{TABLES}/step_cost.html", caption="../report/step_cost.rst", category="Tables"),
    params:
        run=lambda w: RUNS[(RECIPE_VARIANTS[0], SEEDS[0])].to_dict(neutral=False),
        repeats=20,
        threads=config["train"].get("threads", 1),  # a timing depends on its thread count: a change reruns it
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
# The trained density profile ships with the repository: found next to the Snakefile, named relative to the
# working folder (an absolute path would change with every clone and rerun the benchmarks).
TRAINED_PROFILE = config["gpu_bench"].get("trained_profile")
if TRAINED_PROFILE and not os.path.isabs(TRAINED_PROFILE):
    TRAINED_PROFILE = os.path.relpath(os.path.join(workflow.basedir, TRAINED_PROFILE))
try:  # what only the benchmark and claims jobs read, checked before any job
    check_bench_settings(config, TRAINED_PROFILE)
except ConfigError as exc:
    sys.exit(f"config error: {exc}")
GPU_BENCH_CFG, MODEL_STEP_CFG = bench_settings(config, TRAINED_PROFILE)
GPU_SHAPES = list(GPU_BENCH_CFG["shapes"])  # gpu_bench.only_shapes, or every shape
GPU_PROCESSES = list(range(config["gpu_bench"]["processes"]))  # independent benchmark processes, a job each
SHAPE_TABLES, DERIVED_TABLES = list(GPU_SHAPE_TABLES), list(GPU_DERIVED_TABLES)  # the tables act24.gpubench writes


rule bench_gpu:
    """One benchmark process of one FFN shape: a job each, so that processes are independent, each fits a time
    limit, and shapes and processes run, fail and rerun on their own."""
    input:
        [TRAINED_PROFILE] if TRAINED_PROFILE else [],
    output:
        **{t: f"{GPU_BENCH}/shapes/{{shape}}/process{{process}}/{t}.csv" for t in SHAPE_TABLES},
        sidecar=f"{GPU_BENCH}/shapes/{{shape}}/process{{process}}/bench.json",
    wildcard_constraints:
        shape="|".join(re.escape(s) for s in GPU_SHAPES),
        process=r"\d+",
    params:
        cfg=GPU_BENCH_CFG,
    resources:
        gpu_percent=100,  # times the GPU: the whole GPU, nothing else alongside
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/gpu_{{shape}}_process{{process}}.log",
    script:
        "../scripts/bench_gpu.py"


rule gpu_combine:
    """All shapes' and processes' tables in one file each; the speedups with their intervals and bounds, the
    stages."""
    input:
        expand(f"{GPU_BENCH}/shapes/{{shape}}/process{{process}}/{{table}}", shape=GPU_SHAPES, process=GPU_PROCESSES,
               table=[f"{t}.csv" for t in SHAPE_TABLES] + ["bench.json"]),
    output:
        **{t: f"{GPU_BENCH}/{t}.csv" for t in SHAPE_TABLES + DERIVED_TABLES},
        sidecar=f"{GPU_BENCH}/bench.json",
    params:
        shape_dirs={f"{s}/process{p}": f"{GPU_BENCH}/shapes/{s}/process{p}"
                    for s in GPU_SHAPES for p in GPU_PROCESSES},
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/gpu_combine.log",
    script:
        "../scripts/gpu_combine.py"


MODEL_STEP = f"{GPU_BENCH}/model_step"
MODEL_STEP_WIDTHS = list(config["model_step"]["widths"])
MODEL_STEP_PROCESSES = list(range(config["model_step"]["processes"]))


rule bench_model_step:
    """The whole-model training step with dense and 2:4 FFNs at one width, both depths, one benchmark process."""
    output:
        rows=f"{MODEL_STEP}/{{width}}/process{{process}}/rows.csv",
        rounds=f"{MODEL_STEP}/{{width}}/process{{process}}/rounds.csv",
        sidecar=f"{MODEL_STEP}/{{width}}/process{{process}}/bench.json",
    wildcard_constraints:
        width="|".join(re.escape(w) for w in MODEL_STEP_WIDTHS),
        process=r"\d+",
    params:
        cfg=MODEL_STEP_CFG,
    resources:
        gpu_percent=100,
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/model_step_{{width}}_process{{process}}.log",
    script:
        "../scripts/bench_model_step.py"


rule model_step_combine:
    """The model-step table: speedups over the processes, and each width's step estimated at its real depth."""
    input:
        expand(f"{MODEL_STEP}/{{width}}/process{{process}}/{{f}}", width=MODEL_STEP_WIDTHS,
               process=MODEL_STEP_PROCESSES, f=["rows.csv", "rounds.csv", "bench.json"]),
    output:
        csv=f"{GPU_BENCH}/model_step.csv",
        rounds=f"{GPU_BENCH}/model_step_rounds.csv",
        sidecar=f"{GPU_BENCH}/model_step.json",
    params:
        cfg=MODEL_STEP_CFG,
        part_dirs={f"{w}/process{p}": f"{MODEL_STEP}/{w}/process{p}"
                   for w in MODEL_STEP_WIDTHS for p in MODEL_STEP_PROCESSES},
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/bench/model_step_combine.log",
    script:
        "../scripts/model_step_combine.py"


GPU_TABLES = ["gemm", "sparsify", "speedups", "stages", "sparsify_share", "split_speedups", "model_step"]


rule gpu_tables:
    input:
        gemm=rules.gpu_combine.output.gemm,
        sparsify=rules.gpu_combine.output.sparsify,
        speedups=rules.gpu_combine.output.speedups,
        stages=rules.gpu_combine.output.stages,
        sparsify_share=rules.gpu_combine.output.sparsify_share,
        split_speedups=rules.gpu_combine.output.split_speedups,
        model_step=rules.model_step_combine.output.csv,
    output:
        **{t: f"{TABLES}/gpu_{t}.md" for t in GPU_TABLES},
        speedups_tex=f"{TABLES}/gpu_speedups.tex",
        **{f"{t}_html": report(f"{TABLES}/gpu_{t}.html", caption=f"../report/gpu_{t}.rst", category="GPU benchmarks")
           for t in GPU_TABLES},
    conda:
        "../../environment.yml"
    log:
        f"{LOGS}/tables/gpu_tables.log",
    script:
        "../scripts/gpu_tables.py"
