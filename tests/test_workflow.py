"""The Snakemake workflow: dry runs and lint of the shipped configs, config errors, and a tiny end-to-end
run (local synthetic corpus, tiny models) whose outputs, report and notebook are checked."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO, write_corpus

pytestmark = pytest.mark.workflow  # every test here runs Snakemake (planning, the tiny pipeline, kills)

SNAKEMAKE = [sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile")]
SHIPPED = sorted(p.name for p in (REPO / "config").glob("*.yaml") if p.name != "config.yaml")


def snakemake(workdir: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([*SNAKEMAKE, "--directory", str(workdir), *args], capture_output=True, text=True)
    if check and proc.returncode:
        raise AssertionError(f"snakemake {' '.join(args)} failed:\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


def planned_jobs(output: str) -> dict[str, int]:
    """The 'Job stats' table of a dry run as {rule: count}."""
    lines = output.split("Job stats:")[1].strip().splitlines()[2:]
    rows = [line.split() for line in lines]
    return {r[0]: int(r[1]) for r in rows[: next((i for i, r in enumerate(rows) if not r), len(rows))]}


def write_config(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def test_every_shipped_config_is_planned_by_a_documented_command():
    """test_every_readme_command_plans dry-runs each command of the README and docs/: together they plan every
    config file that ships."""
    planned = {c.split("--configfile ")[1].split()[0] for c in readme_snakemake_commands() if "--configfile " in c}
    assert [f"config/{name}" for name in SHIPPED if f"config/{name}" not in planned] == []


def readme_snakemake_commands() -> list[str]:
    """Every `snakemake ...` command of the README and docs/ (code blocks and inline code), without placeholders."""
    import re

    text = "\n".join(p.read_text() for p in [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))])
    commands = re.findall(r"^snakemake [^#\n]*", text, flags=re.M) + re.findall(r"`(snakemake [^`]*)`", text)
    return sorted({c.strip() for c in commands if "<" not in c})


# Not dry runs: `--report` is test_report_builds, `--unlock` the kill tests below.
NOT_PLANNING = ("--report", "--unlock")


@pytest.mark.parametrize("command", [c for c in readme_snakemake_commands() if not c.startswith(
    tuple(f"snakemake {flag}" for flag in NOT_PLANNING))])
def test_every_readme_command_plans(tmp_path, command):
    """Each command as written (from the repository root; GPU configs too), as a dry run in an empty folder."""
    import shlex

    args = shlex.split(command)[1:]
    proc = subprocess.run([*SNAKEMAKE, *args, "-n", "--directory", str(tmp_path)], cwd=REPO, capture_output=True,
                          text=True)
    assert proc.returncode == 0, f"{command}:\n{proc.stdout[-2000:]}\n{proc.stderr[-2000:]}"
    assert "Job stats:" in proc.stdout + proc.stderr


def test_readme_commands_that_do_not_plan_are_tested_elsewhere():
    others = {c.split()[1] for c in readme_snakemake_commands() if c.split()[1:2] and c.split()[1] in NOT_PLANNING}
    assert others == set(NOT_PLANNING)


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the planning of a CUDA config without CUDA")
def test_a_gpu_config_on_a_cpu_machine_warns_at_planning_and_names_files_relative(tmp_path):
    proc = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "gpu.yaml"))
    assert "warning: 3 variant(s) train on train.device 'cuda' (sqrelu, sqrelu_24, swiglu)" in proc.stderr
    assert "this machine has no CUDA device" in proc.stderr
    assert "warning" not in snakemake(tmp_path, "-n").stderr.lower()  # a CPU config plans without it
    # The trained profile is named relative to the working folder: a moved checkout does not rerun the benchmark.
    inputs = [line.split(":", 1)[1].strip() for block in (proc.stdout + proc.stderr).split("rule bench_gpu:")[1:]
              for line in block.splitlines()[:3] if line.strip().startswith("input:")]
    assert inputs and all(p.endswith("resources/trained_sqrelu_feature_density.npz") and not os.path.isabs(p)
                          for p in inputs)


def test_lint_is_clean(tmp_path):
    proc = snakemake(tmp_path, "--lint")
    assert "Congratulations" in proc.stdout + proc.stderr


# The Snakemake layer only (the schema's error, a variant's): every bad setting is a case of test_validation.py,
# checked in-process by the same check_config the workflow calls.
@pytest.mark.parametrize(
    "bad, message",
    [
        ({"trian": {"steps": 3}}, "unknown config key 'trian'"),
        ({"variants": {"odd": {"ffn": "sqrelu", "model": {"d_model": 30}}}}, "variants.odd: config key 'model.n_heads'"),
    ],
)
def test_config_errors_fail_before_any_job_and_name_the_key(tmp_path, bad, message):
    proc = snakemake(tmp_path, "-n", "--configfile", str(write_config(tmp_path / "bad.yaml", bad)), check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert message in out
    assert len(out.strip().splitlines()) <= 3, out  # the error, not a dump of the schema
    assert not (tmp_path / "results").exists()


def test_a_key_given_twice_in_a_config_file_is_named_with_its_file_and_line(tmp_path):
    bad = tmp_path / "twice.yaml"
    bad.write_text("train:\n  steps: 10\n  lr: 1.0e-3\n  steps: 20\n")
    proc = snakemake(tmp_path, "-n", "--configfile", str(bad), check=False)
    assert proc.returncode != 0
    assert f"config error: {bad}, line 4, column 3: key 'steps' appears twice" in proc.stderr


def test_a_failed_job_log_ends_with_the_traceback(tmp_path):
    cfg = write_config(tmp_path / "c.yaml", {"data": {"source": "local", "local": {"glob": "nothing/*.txt"}}})
    proc = snakemake(tmp_path, "results/data/documents.jsonl", "--cores", "1", "--configfile", str(cfg), check=False)
    assert proc.returncode != 0
    log = (tmp_path / "logs" / "data" / "documents.log").read_text()
    assert "Traceback" in log and log.rstrip().endswith("DataError: data.local.glob: no files match 'nothing/*.txt'")


def test_the_readme_says_how_to_rerun_after_a_kill():
    """A killed Snakemake leaves its lock: the next run stops with a LockException until `--unlock`."""
    crashes = (REPO / "README.md").read_text().split("**Resume.**")[1].split("**")[0]
    assert "snakemake --unlock" in crashes and "--rerun-incomplete" in crashes


@pytest.mark.slow
def test_a_kill_during_the_data_step_keeps_the_finished_data_steps(tmp_path):
    import signal
    import time

    write_corpus(tmp_path / "corpus", n_docs=40, words_per_doc=20000)
    cfg = write_config(tmp_path / "c.yaml", {"data": {**TINY["data"], "vocab_size": 4000}})
    data = tmp_path / "results" / "data"
    proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(tmp_path), "results/data/train.npy", "--cores", "1",
                             "--configfile", str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    deadline = time.time() + 120
    tokenizer_log = tmp_path / "logs" / "data" / "tokenizer.log"  # written from the tokenizer job's start
    while not tokenizer_log.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (data / "train.npy").exists(), "the data step finished before it could be killed: make it longer"
    documents = (data / "documents.jsonl").stat().st_mtime_ns
    snakemake(tmp_path, "--unlock", "--configfile", str(cfg))
    proc = snakemake(tmp_path, "results/data/train.npy", "--cores", "1", "--rerun-incomplete", "--configfile",
                     str(cfg))
    assert (data / "documents.jsonl").stat().st_mtime_ns == documents  # the finished step is not redone
    assert (data / "train.npy").exists()


# The shipped ablation config (every Table 1 variant), shrunk: tiny models, a local synthetic corpus.
TINY = {
    "results": "results", "logs": "logs",
    "data": {"source": "local", "local": {"glob": "corpus/*.txt"}, "val_fraction": 0.34, "vocab_size": 300},
    "model": {"d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 16, "ffn_multiple_of": 8},
    "train": {"steps": 16, "batch_size": 4, "warmup_steps": 4, "eval_every": 8, "eval_batches": 2,
              "stats_every": 4, "stats_batch_size": 2},
    # F = 144: with the default multiple (32) the 95/5 split and the naive backward round to the same 128 features
    "sparse": {"split_multiple": 8},
    "seeds": [0, 1],
    "analysis": {"inference_eval_batches": 2},
}
ABLATION = str(REPO / "config" / "ablation.yaml")
VARIANTS = sorted(["swiglu", "sqrelu", "relu", "gelu", "sqrelu_24", "sqrelu_24_no_warmup", "sqrelu_24_naive_bwd",
                   "sqrelu_24_no_perm", "sqrelu_24_no_dy1_mask"])


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    work = tmp_path_factory.mktemp("pipeline")
    write_corpus(work / "corpus")
    cfg = write_config(work / "tiny.yaml", TINY)
    snakemake(work, "--cores", "2", "--configfile", ABLATION, str(cfg))
    return work, cfg


@pytest.mark.slow
def test_tiny_pipeline_outputs(tiny_run):
    work, _ = tiny_run
    res = work / "results"
    for fig in ("fig1_sparsity", "drop24", "feature_density", "loss_curves", "fig5_ffn_speedup", "fig6_split_gemm",
                "table1_ablation", "table1_gaps"):
        assert (res / "figures" / f"{fig}.png").stat().st_size > 10_000
    quality = pd.read_csv(res / "tables" / "quality.csv")
    assert sorted(quality["variant"]) == VARIANTS
    assert (quality["seeds"] == 2).all() and quality["non_embedding_params"].nunique() == 1
    claims = pd.read_csv(res / "tables" / "claims.csv")
    assert list(claims["id"]) == ["C1", "C2", "C3", "C4", "C5", "C6a", "C6b", "C7", "C8", "C9", "C10"]
    assert claims["verdict"].str.match(
        r"^((partly )?reproduced|not reproduced|not observed at [^:]+)( \(borderline: .+\)|: .+)?$"
        r"|^inconclusive: .+$|^not measured: .+$").all(), claims["verdict"].tolist()
    assert claims.set_index("id").loc["C7", "verdict"] == "not measured: no CUDA device"
    gpu = json.loads((res / "bench" / "gpu" / "bench.json").read_text())
    assert gpu["status"] == "skipped: no CUDA device"
    assert pd.read_csv(res / "bench" / "gpu" / "speedups.csv")["status"].tolist() == ["skipped: no CUDA device"]
    assert "skipped: no CUDA device" in (res / "tables" / "gpu_speedups.md").read_text()
    sparsity = pd.read_csv(res / "tables" / "sparsity.csv")
    assert set(sparsity["variant"]) == set(VARIANTS) - {"swiglu"} and (sparsity["step"] == 16).all()
    assert claims.set_index("id").loc["C5", "ours"].count("seeds") == 1
    step_cost = json.loads((res / "bench" / "step_cost.json").read_text())
    assert step_cost["ratio"] > 0 and "reference" in step_cost["backend"]
    sparse_run = json.loads((res / "runs" / "sqrelu_24" / "seed0" / "summary.json").read_text())
    assert sparse_run["sparse_from_step"] == 2  # dense_warmup 0.1 of 16 steps
    params = pd.read_csv(res / "tables" / "params.csv")
    assert set(params["shape"]) == {"this config", "1.5B-like", "7B-like"}
    split = json.loads((res / "data" / "summary.json").read_text())
    assert len(split["val"]["documents"]) == 2 and len(split["train"]["documents"]) == 4
    assert (work / "logs" / "train" / "sqrelu" / "seed1.log").exists()
    table1 = pd.read_csv(res / "tables" / "table1.csv")
    assert table1["row"].tolist()[:7] == ["dense_swiglu", "dense_sqrelu", "full_recipe", "no_dense_warmup",
                                          "naive_backward", "no_token_permutation", "no_dy1_mask"]
    assert (table1["seeds"] == 2).all() and set(table1["variant"]) == set(VARIANTS)
    c6a, c6b = (claims.set_index("id").loc[c] for c in ("C6a", "C6b"))
    assert "exact permutation p = " in c6a["ours"] and not c6a["verdict"].startswith("not measured")
    assert "vs paper +1.083, diverged 0 of 2" in c6b["ours"] and not c6b["verdict"].startswith("not measured")
    gaps = pd.read_csv(res / "tables" / "table1_gaps.csv")  # every ablation at every evaluation, paired over 2 seeds
    assert sorted(gaps["row"].unique()) == sorted(["no_dense_warmup", "naive_backward", "no_token_permutation",
                                                   "no_dy1_mask"])
    assert sorted(gaps["step"].unique()) == [0, 8, 16] and (gaps["seeds"] == 2).all()
    # Every interval in the tables is a paired t interval (the variants share seeds).
    assert set(table1.loc[table1["interval"] != "", "interval"].dropna()) == {"paired t, 2 seeds"}
    inference = pd.read_csv(res / "tables" / "sparse_inference.csv").set_index("variant")
    assert set(inference.index) == set(VARIANTS) and (inference["seeds"] == 2).all()
    assert inference.loc["swiglu", "drop24_features"] == pytest.approx(0.5)
    assert (inference["eval_tokens"] == 2 * 4 * 16).all()
    fidelity = pd.read_csv(res / "tables" / "gradient_fidelity.csv")
    fidelity = fidelity.set_index(["recipe", "layer", "weight"]).sort_index()
    assert set(fidelity.index.get_level_values("recipe")) == {v for v in VARIANTS if v.startswith("sqrelu_24")}
    # The dense warmup only schedules the recipe: its gradients are the full recipe's, bit for bit. Each other
    # ablation changes them.
    full = fidelity.loc["sqrelu_24"]
    assert fidelity.loc["sqrelu_24_no_warmup"].equals(full)
    for ablated in ("sqrelu_24_naive_bwd", "sqrelu_24_no_perm", "sqrelu_24_no_dy1_mask"):
        assert (fidelity.loc[ablated, "rel_error"] != full["rel_error"]).any(), ablated
    # Without the dY1 mask, W1's gradient moves away from the exact one in every layer.
    assert (fidelity.loc["sqrelu_24_no_dy1_mask"].xs("w1", level="weight")["rel_error"]
            > full.xs("w1", level="weight")["rel_error"]).all()


def changed(work: Path, cfg: Path, change: dict) -> dict[str, int]:
    """The jobs a dry run plans after `change` to the tiny run's config."""
    extra = write_config(work / "change.yaml", change)
    proc = snakemake(work, "-n", "--configfile", ABLATION, str(cfg), str(extra))
    out = proc.stdout + proc.stderr
    return planned_jobs(out) if "Job stats:" in out else {}


@pytest.mark.slow
@pytest.mark.parametrize("change, planned", [
    ({"claims": {"c4_max_drop": 0.05}}, {"claims", "all"}),
    ({"claims": {"c2_min_zero_frac": 0.5}}, {"claims", "fig_sparsity", "all"}),  # Fig. 1 draws the paper's value
    ({"variants": {"relu": {"ffn": "relu", "label": "ReLU (renamed)"}}},
     {"quality_table", "inference_table", "table1", "gradient_fidelity", "fig_loss_curves", "fig_table1", "claims",
      "all"}),
    # no result changes (but a timing's): no training reruns
    ({"train": {"threads": 2, "checkpoint_every": 7}}, {"bench_cpu_step", "all"}),
    ({"train": {"log_every": 7, "tensorboard": True}}, set()),
])
def test_a_changed_setting_reruns_exactly_what_it_changes(tiny_run, change, planned):
    work, cfg = tiny_run
    assert set(changed(work, cfg, change)) - {"total"} == planned


@pytest.mark.slow
def test_a_changed_recipe_retrains_the_sparse_runs_only(tiny_run):
    work, cfg = tiny_run
    jobs = changed(work, cfg, {"sparse": {"dense_fraction": 0.1}})
    # the 2:4 variants but the naive backward, which sets its own dense_fraction (0), each with 2 seeds
    assert jobs["train"] == 2 * len([v for v in VARIANTS if v.startswith("sqrelu_24") and v != "sqrelu_24_naive_bwd"])


@pytest.mark.slow
def test_finished_runs_leave_no_resume_checkpoint(tiny_run):
    work, _ = tiny_run
    assert not (work / "results" / "checkpoints").exists()  # nor the folders that held them


@pytest.mark.slow
def test_single_output_rebuilds_alone(tiny_run):
    work, cfg = tiny_run
    target = work / "results" / "figures" / "fig1_sparsity.png"
    target.unlink()
    # Targets go before --configfile, which takes several values.
    proc = snakemake(work, "results/figures/fig1_sparsity.png", "-n", "--configfile", ABLATION, str(cfg))
    assert planned_jobs(proc.stdout + proc.stderr) == {"fig_sparsity": 1, "total": 1}
    snakemake(work, "results/figures/fig1_sparsity.png", "--cores", "1", "--configfile", ABLATION, str(cfg))
    assert target.exists()


@pytest.mark.slow
def test_report_builds(tiny_run):
    work, cfg = tiny_run
    snakemake(work, "--configfile", ABLATION, str(cfg), "--report", "report.html")
    html = (work / "report.html").read_text(errors="replace")
    items = json.loads("{" + html.split("var results = {", 1)[1].split(";\n", 1)[0])  # the report's item index
    tables = {name for name, item in items.items() if item["mime_type"] == "text/html"}
    # every table inline (HTML, not a download), every figure an image, each with a caption of its own
    assert {item["mime_type"] for item in items.values()} == {"text/html", "image/png"}
    assert {"results/tables/claims.html", "results/tables/table1.html", "results/tables/gpu_speedups.html"} <= tables
    captions = [item["caption"] for item in items.values()]
    assert len(set(captions)) == len(captions) and all(captions)
    desc = html.split("var workflow_desc = ", 1)[1].split("\n", 1)[0]  # names the corpus, not the key
    assert "data.source" not in desc and 'literal\\">local</tt> corpus' in desc and "{{" not in desc


@pytest.mark.slow
@pytest.mark.parametrize("notebook, expected, figures", [
    ("sparsity.ipynb", ["18 finished runs", "density recorded at steps [0, "], 4),
    ("ablation.ipynb", ["18 finished runs", "C6a: Ablation order", "C6b: Ablation effects",
                        # the comparison cell: both committed machines beside the paper
                        "committed reference runs compared: cpu, h200", "paper_diff", "no_dy1_mask"], 1),
    ("kernels.ipynb", ["round trip: True", "7B-like, T = 16384, fp8 forward: 2:4 (fused kernels, auto)"], 0)])
def test_notebooks_run_on_the_tiny_results(tiny_run, monkeypatch, notebook, expected, figures):
    import nbformat
    from nbclient import NotebookClient

    work, _ = tiny_run
    nb = nbformat.read(REPO / "notebooks" / notebook, as_version=4)
    assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), "commit notebooks without outputs"
    monkeypatch.setenv("ACT24_RESULTS", str(work / "results"))
    monkeypatch.setenv("ACT24_REFERENCE", str(REPO / "reference"))
    NotebookClient(nb, timeout=300, kernel_name="python3", resources={"metadata": {"path": str(work)}}).execute()
    outputs = [o for c in nb.cells for o in c.get("outputs", [])]
    text = "".join(o.get("text", "") + o.get("data", {}).get("text/plain", "") for o in outputs)
    assert [e for e in expected if e not in text] == []
    if notebook == "ablation.ipynb":  # the comparison table has a column group per machine
        header = outputs[-1]["data"]["text/html"].split("</thead>")[0]
        assert all(f">{m}</th>" in header for m in ("paper", "cpu", "h200"))
    assert sum("image/png" in o.get("data", {}) for o in outputs) == figures
    assert not [o for o in outputs if o.get("name") == "stderr"], "a notebook cell warned (e.g. IProgress)"


def test_cpu_and_gpu_ablation_configs_run_the_same_variants():
    cpu, gpu = (yaml.safe_load((REPO / "config" / f).read_text()) for f in ("ablation.yaml", "gpu_ablation.yaml"))
    assert cpu["variants"] == gpu["variants"] and cpu["analysis"]["table1"] == gpu["analysis"]["table1"]
    assert cpu["seeds"] == gpu["seeds"] and len(cpu["seeds"]) >= 3
    assert cpu["train"]["on_nonfinite"] == gpu["train"]["on_nonfinite"] == "stop"


def job_resources(output: str, rule: str) -> list[str]:
    """The `resources:` lines of every job of `rule` in a dry run's output."""
    blocks = output.split("\nrule ")[1:] + output.split("\nlocalrule ")[1:]
    return [line.strip() for b in blocks if b.startswith(f"{rule}:") for line in b.splitlines()
            if line.strip().startswith("resources:")]


def test_default_profile_keeps_gpu_jobs_within_one_gpu(tmp_path):
    proc = snakemake(tmp_path, "-n", "--configfile", str(REPO / "config" / "gpu_ablation.yaml"))
    out = proc.stdout + proc.stderr
    assert "workflow specific profile" in out and "profiles/default" in out
    assert all("gpu_percent=6" in r for r in job_resources(out, "train")) and len(job_resources(out, "train")) == 27
    assert all("gpu_percent=100" in r for r in job_resources(out, "bench_gpu"))
    cpu = snakemake(tmp_path, "-n")  # CPU runs take no GPU share
    assert all("gpu_percent=0" in r for r in job_resources(cpu.stdout + cpu.stderr, "train"))


def test_slurm_profile_dry_run_requests_gpus_for_gpu_rules(tmp_path):
    proc = snakemake(tmp_path, "-n", "--workflow-profile", str(REPO / "profiles" / "slurm"),
                     "--configfile", str(REPO / "config" / "gpu.yaml"))
    out = proc.stdout + proc.stderr
    train = job_resources(out, "train")
    default, gpu = (yaml.safe_load((REPO / "config" / f).read_text()) for f in ("config.yaml", "gpu.yaml"))
    assert len(train) == len(default["variants"]) * len(gpu["seeds"])  # every run, each on a GPU
    assert all("gres=gpu:1" in r and "slurm_partition=gpu" in r for r in train)
    assert all("gres" not in r and "slurm_partition=cpu" in r for r in job_resources(out, "tokenize"))


@pytest.mark.slow
def test_a_killed_training_job_resumes_when_the_workflow_reruns(tmp_path):
    import signal
    import time

    write_corpus(tmp_path / "corpus")
    cfg = write_config(tmp_path / "long.yaml", {
        **{k: TINY[k] for k in ("data", "seeds")},
        "model": {"d_model": 16, "n_layers": 1, "n_heads": 2, "seq_len": 8, "ffn_multiple_of": 8},
        "train": {"steps": 1500, "batch_size": 2, "warmup_steps": 10, "eval_every": 100, "eval_batches": 1,
                  "stats_every": 100, "stats_batch_size": 1, "checkpoint_every": 50}})
    target = "results/runs/sqrelu/seed0/summary.json"
    snakemake(tmp_path, "results/data/train.npy", "--cores", "1", "--configfile", str(cfg))
    proc = subprocess.Popen([*SNAKEMAKE, "--directory", str(tmp_path), target, "--cores", "1", "--configfile",
                             str(cfg)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    metrics = tmp_path / "results" / "checkpoints" / "sqrelu" / "seed0" / "metrics.jsonl"
    deadline = time.time() + 180
    while proc.poll() is None and time.time() < deadline:
        lines = metrics.read_text().splitlines() if metrics.exists() else []
        if len(lines) > 1 and json.loads(lines[-2])["step"] >= 400:
            break
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the whole job: Snakemake and the training process
    proc.wait()
    assert not (tmp_path / target).exists(), "the job finished before it could be killed: make it longer"
    snakemake(tmp_path, "--unlock", "--configfile", str(cfg))
    snakemake(tmp_path, target, "--cores", "1", "--rerun-incomplete", "--configfile", str(cfg))
    summary = json.loads((tmp_path / target).read_text())
    assert summary["resumed_from_step"] >= 400
    m = pd.read_json(tmp_path / "results" / "runs" / "sqrelu" / "seed0" / "metrics.jsonl", lines=True)
    assert m[m["split"] == "train"]["step"].tolist() == list(range(1500))  # each step logged once
    assert "resuming at step" in (tmp_path / "logs" / "train" / "sqrelu" / "seed0.log").read_text()
