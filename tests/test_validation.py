"""Every place a setting can appear (top level, a variant, the command line) is checked before any work, by
name: the workflow config against its schema and the run settings' own checks (act24.experiment.check_config),
the CLI through the same dataclasses."""

import copy
import json
import subprocess
import re
import sys

import pytest
import yaml

from act24.config import ConfigError
from act24.experiment import check_config

from conftest import REPO

SCHEMA = REPO / "workflow" / "schemas" / "config.schema.yaml"
DEFAULT = yaml.safe_load((REPO / "config" / "config.yaml").read_text())


def variant(**over) -> dict:
    """The default config with one more variant, `x`, a Squared-ReLU model with these overrides."""
    cfg = copy.deepcopy(DEFAULT)
    cfg["variants"]["x"] = {"ffn": "sqrelu", **over}
    return cfg


def top(**sections) -> dict:
    cfg = copy.deepcopy(DEFAULT)
    for name, values in sections.items():
        cfg[name] = {**cfg.get(name, {}), **values} if isinstance(values, dict) else values
    return cfg


SPARSE = {"enabled": True}
CASES = {
    # settings inside a variant get the same ranges as top-level ones
    "variant steps 0": (variant(train={"steps": 0}), "variants.x.train.steps': 0 is less than the minimum of 1"),
    "variant batch 0": (variant(train={"batch_size": 0}), "variants.x.train.batch_size'"),
    "variant eval_every 0": (variant(train={"eval_every": 0}), "variants.x.train.eval_every'"),
    "variant ffn_multiple_of 0": (variant(model={"ffn_multiple_of": 0}), "variants.x.model.ffn_multiple_of'"),
    "variant split_multiple 0": (variant(sparse={**SPARSE, "split_multiple": 0}), "variants.x.sparse.split_multiple'"),
    "variant n_layers 0": (variant(model={"n_layers": 0}), "variants.x.model.n_layers'"),
    "variant d_model -8": (variant(model={"d_model": -8}), "variants.x.model.d_model'"),
    "variant lr -1": (variant(train={"lr": -1}), "variants.x.train.lr'"),
    "variant beta1 1.5": (variant(train={"beta1": 1.5}), "variants.x.train.beta1'"),
    "variant backend bogus": (variant(sparse={**SPARSE, "backend": "bogus"}), "'bogus' is not one of"),
    "variant unknown key": (variant(train={"stpes": 3}), "unknown config key 'variants.x.train.stpes'"),
    # keys the workflow sets itself are errors, never silently overwritten
    "variant vocab_size": (variant(model={"vocab_size": 100}), "'variants.x.model.vocab_size': cannot be set here, "
                           "it comes from data.vocab_size"),
    "variant model.ffn": (variant(model={"ffn": "relu"}), "'variants.x.model.ffn': cannot be set here"),
    "variant seed": (variant(train={"seed": 3}), "'variants.x.train.seed': cannot be set here, it comes from seeds"),
    "top-level vocab_size": (top(model={"vocab_size": 100}), "'model.vocab_size': cannot be set here"),
    "permutation seed": (top(sparse={"permutation_seed": 1}), "'sparse.permutation_seed': cannot be set here, "
                         "it comes from train.seed"),
    # constraints across keys
    "2:4 tokens not a multiple of 4": (variant(model={"seq_len": 5}, train={"batch_size": 1, "stats_batch_size": 4},
                                               sparse=SPARSE), "variants.x: config key 'train.batch_size': the 2:4 "
                                       "recipe needs a multiple of 4 tokens per process"),
    "statistics tokens not a multiple of 4": (variant(model={"seq_len": 5}, train={"stats_batch_size": 1}),
                                              "'train.stats_batch_size': stats_batch_size x model.seq_len"),
    "warmup beyond the run": (variant(train={"steps": 100, "warmup_steps": 500}),
                              "'train.warmup_steps': must be at most train.steps=100"),
    "heads do not divide the width": (variant(model={"d_model": 30}), "variants.x: config key 'model.n_heads'"),
    "processes do not divide the batch": (top(train={"processes": 3}), "'train.processes': must divide"),
    "2:4 on a ReLU model": ({**variant(), "variants": {**DEFAULT["variants"], "r": {"ffn": "relu", "sparse": SPARSE}}},
                            "the 2:4 recipe needs model.ffn 'sqrelu'"),
    "recipe keys on a dense variant": (variant(sparse={"dense_fraction": 0.1}),
                                       "'variants.x.sparse.dense_fraction': has no effect"),
    # the top level
    "unknown top-level key": (top(trian={"steps": 3}), "unknown config key 'trian'"),
    "unknown section key": (top(train={"stpes": 3}), "unknown config key 'train.stpes'"),
    "top-level steps 0": (top(train={"steps": 0}), "config key 'train.steps': 0 is less than the minimum of 1"),
    "unknown data source": (top(data={"source": "wikipedia"}), "'wikipedia' is not one of"),
    "backward not a choice": (top(sparse={"backward": "dense"}),
                              "'dense' is not one of ['sparse', 'masked_dense', 'straight_through']"),
    "unknown backend": (top(sparse={"backend": "magic"}), "'magic' is not one of"),
    "wrong type": (top(train={"lr": "fast"}), "config key 'train.lr': 'fast' is not of type 'number'"),
    "analysis names no variant": (top(analysis={"sparsity_variant": "nope"}), "analysis.sparsity_variant: 'nope'"),
    # a CUDA-only 2:4 backend on a CPU run can run nowhere: rejected at planning, naming the key that set it
    "GPU backend on CPU, variant": (variant(sparse={"enabled": True, "backend": "fused_fp8_auto"}),
                                    "config key 'variants.x.sparse.backend': 'fused_fp8_auto' runs on CUDA only, "
                                    "and variant 'x' trains on train.device 'cpu'"),
    "GPU backend on CPU, top level": (top(sparse={"backend": "fused_fp8_tuned"}),
                                      "config key 'sparse.backend': 'fused_fp8_tuned' runs on CUDA only"),
    "separator not a regex": (top(data={"source": "local", "local": {"glob": "x/*.txt", "separator": "("}}),
                              "config key 'data.local.separator': '(' is not a regular expression"),
    "empty separator": (top(data={"source": "local", "local": {"glob": "x/*.txt", "separator": ""}}),
                        "config key 'data.local.separator': '' should be non-empty"),
}


@pytest.mark.parametrize("cfg, message", CASES.values(), ids=CASES.keys())
def test_every_bad_setting_fails_before_any_job_by_name(cfg, message):
    with pytest.raises(ConfigError) as info:
        check_config(copy.deepcopy(cfg), SCHEMA)
    assert message in str(info.value)
    assert "\n" not in str(info.value)  # one line, no schema dump


@pytest.mark.parametrize("text, message", [
    ("train:\n  steps: 10\n  steps: 20\n", "line 3, column 3: key 'steps' appears twice in one mapping"),
    ("seeds: [0, 1\n", "line 2, column 1: expected ',' or ']'"),
    ("model:\n  d_model: 64\n\td: 1\n", "line 3, column 1: found character '\\t'"),
])
def test_a_config_file_that_is_not_valid_yaml_is_named_with_its_line(tmp_path, text, message):
    from act24.experiment import read_yaml
    from act24.sweep import read_config

    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match=re.escape(f"{tmp_path / 'c.yaml'}, {message}")):
        read_yaml(tmp_path / "c.yaml")
    with pytest.raises(ConfigError, match=re.escape(message)):  # act24 sweep / train --configfile read it so
        read_config([str(tmp_path / "c.yaml")], base=str(REPO / "config" / "config.yaml"))


def test_the_default_config_passes_and_gets_the_schema_defaults():
    """(The shipped configs' dry runs are in test_workflow.py.)"""
    cfg = copy.deepcopy(DEFAULT)
    del cfg["train"]["eval_every"]
    runs = check_config(cfg, SCHEMA)
    assert cfg["train"]["eval_every"] == 50  # filled in from the schema's default
    assert set(runs) == {(v, s) for v in DEFAULT["variants"] for s in DEFAULT["seeds"]}


def test_a_dense_variant_does_not_depend_on_the_recipe():
    """Changing the 2:4 recipe must not change (and so rerun) the dense runs."""
    a, b = variant(), variant()
    b["sparse"] = {**b["sparse"], "dense_fraction": 0.2, "backward": "masked_dense"}
    runs_a, runs_b = check_config(a, SCHEMA), check_config(b, SCHEMA)
    assert runs_a[("x", 0)].to_dict() == runs_b[("x", 0)].to_dict()


CLI = [sys.executable, "-m", "act24.cli"]


@pytest.mark.parametrize("args, message", [
    (["params", "--d-model", "-64"], "config key 'model.d_model': must be ≥ 8, got -64"),
    (["params", "--multiple-of", "6"], "config key 'model.ffn_multiple_of': must be a multiple of 4, got 6"),
    (["train", "--config", "/nonexistent.json", "--train-tokens", "t", "--val-tokens", "v", "--out", "o"],
     "/nonexistent.json: missing"),
])
def test_the_cli_validates_like_the_config(args, message):
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True)
    assert proc.returncode == 2
    assert message in proc.stderr and "Traceback" not in proc.stderr


def test_the_cli_names_a_malformed_run_config(tmp_path):
    (tmp_path / "run.json").write_text('{"model": {"d_model": 64')
    proc = subprocess.run([*CLI, "train", "--config", str(tmp_path / "run.json"), "--train-tokens", "t",
                           "--val-tokens", "v", "--out", "o"], capture_output=True, text=True)
    assert proc.returncode == 2 and f"{tmp_path / 'run.json'}: not a readable run config" in proc.stderr


def test_the_cli_has_a_version():
    from act24 import __version__

    proc = subprocess.run([*CLI, "--version"], capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.strip() == f"act24 {__version__}"


def test_env_says_whether_xformers_compiled_kernels_load():
    xformers = pytest.importorskip("xformers")
    from act24.io import environment_info

    info = environment_info()
    assert info["xformers"] == xformers.__version__
    assert info["xformers_extensions"].startswith("loaded" if xformers._has_cpp_library else "not loaded: ")


def test_command_line_strings_are_read_as_yaml_where_the_schema_wants_another_type():
    """Snakemake's `--config train={steps: 10}` delivers {'steps': '10'}: read as YAML where a number is wanted,
    and only the values from the command line."""
    cfg = top(train={"steps": "10", "lr": "1e-3", "warmup_steps": "2"}, seeds=["1", "2"])
    cfg["variants"]["x"] = {"ffn": "sqrelu", "label": "42"}
    command_line = {"train": {"steps": "10", "lr": "1e-3", "warmup_steps": "2"}, "seeds": ["1", "2"],
                    "variants": {"x": {"label": "42"}}}
    runs = check_config(cfg, SCHEMA, command_line=command_line)
    assert runs[("x", 2)].train.steps == 10 and runs[("x", 2)].train.lr == 1e-3
    assert cfg["seeds"] == [1, 2] and cfg["variants"]["x"]["label"] == "42"  # a string where one is wanted
    with pytest.raises(ConfigError, match="config key 'train.steps': 'ten' is not of type 'integer'"):
        check_config(top(train={"steps": "ten"}), SCHEMA, command_line={"train": {"steps": "ten"}})
    with pytest.raises(ConfigError, match="'train.steps': '10' is not of type 'integer'"):
        check_config(top(train={"steps": "10"}), SCHEMA)  # a quoted number in a config file stays an error
    # YAML 1.1 (PyYAML, Snakemake's config files) leaves `lr: 3e-3` a string; YAML 1.2 and --config read a number
    cfg = yaml.safe_load("train: {lr: 3e-3}")
    assert cfg["train"]["lr"] == "3e-3"
    runs = check_config(top(train=cfg["train"]), SCHEMA)
    assert next(iter(runs.values())).train.lr == 3e-3


def test_null_from_the_command_line_is_null_where_a_string_would_also_do():
    """`--config 'data={local: {separator: null}}'` delivers the string 'null': it means null (split nothing),
    not a separator that splits a file at each "null"; where null is not allowed, the error names the key."""
    cfg = top(data={"source": "local", "local": {"glob": "x/*.txt", "separator": "null"}})
    check_config(cfg, SCHEMA, command_line={"data": {"local": {"separator": "null"}}})
    assert cfg["data"]["local"]["separator"] is None
    cfg = top(data={"source": "local", "local": {"glob": "x/*.txt", "separator": "null"}})
    check_config(cfg, SCHEMA)  # from a config file, a quoted 'null' is the string it says
    assert cfg["data"]["local"]["separator"] == "null"
    with pytest.raises(ConfigError, match="config key 'train.steps': None is not of type 'integer'"):
        check_config(top(train={"steps": "~"}), SCHEMA, command_line={"train": {"steps": "~"}})


@pytest.mark.workflow
def test_snakemake_config_overrides_from_the_command_line_need_a_results_folder_of_their_own(tmp_path):
    """Overrides that change results would retrain the default runs in place and rewrite their tables: refused
    unless the experiment names its own results folder; neutral ones (threads) need none."""
    def dry_run(*config):
        return subprocess.run([sys.executable, "-m", "snakemake", "-s", str(REPO / "Snakefile"), "-n", "--directory",
                               str(tmp_path), "--config", *config], capture_output=True, text=True)

    changes = ["train={steps: 10, warmup_steps: 2, lr: 1e-3}", "seeds=[3]"]
    proc = dry_run(*changes)
    assert proc.returncode != 0 and proc.stderr.strip().splitlines()[-1].startswith(
        "config error: --config changes seeds, train.lr, train.steps, train.warmup_steps, which would retrain runs")
    assert "give the experiment a folder of its own, e.g. add results=results/my_experiment" in proc.stderr
    proc = dry_run(*changes, "results=results/short", "logs=logs/short")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "seed=3" in proc.stdout and "seed=0" not in proc.stdout and "results/short/runs" in proc.stdout
    assert dry_run("train={threads: 2}").returncode == 0


def test_overrides_that_need_a_folder_are_the_ones_that_change_results():
    from act24.experiment import overrides_needing_a_folder

    assert overrides_needing_a_folder({"train": {"steps": "10", "threads": "2"}, "seeds": ["0"],
                                       "variants": {"x": {"train": {"lr": "1"}}}}) == ["seeds", "train.steps",
                                                                                       "variants.x"]
    assert overrides_needing_a_folder({"train": {"steps": "10"}, "results": "results/x"}) == []
    assert overrides_needing_a_folder({"analysis": {"finished_runs_only": "true"}, "logs": "l",
                                       "train": {"checkpoint_every": "5"}}) == []


def test_train_set_overrides_one_setting_by_dotted_key(tmp_path):
    from act24.experiment import apply_assignments

    base = {"model": {"d_model": 64}, "train": {"steps": 100}}
    out = apply_assignments(base, ["train.steps=10", "train.lr=1e-3", "sparse.enabled=true", "name=a=b"])
    assert out == {"model": {"d_model": 64}, "train": {"steps": 10, "lr": 1e-3}, "sparse": {"enabled": True},
                   "name": "a=b"}
    assert base["train"]["steps"] == 100
    for bad, message in [("train.steps", "expected dotted.key=value"), ("train..steps=1", "expected dotted"),
                         ("model.d_model.x=1", "'model.d_model' is not a section")]:
        with pytest.raises(ConfigError, match=message):
            apply_assignments(base, [bad])
    (tmp_path / "run.json").write_text('{"model": {"d_model": 64, "vocab_size": 256}}')
    proc = subprocess.run([*CLI, "train", "--config", str(tmp_path / "run.json"), "--set", "train.stepz=3",
                           "--train-tokens", "t", "--val-tokens", "v", "--out", "o"], capture_output=True, text=True)
    assert proc.returncode == 2 and "stepz" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.skipif(__import__("torch").cuda.is_available(), reason="checks the CPU-only answer")
def test_without_cuda_xformers_imports_quietly_and_the_environment_says_why_its_kernels_do_not_load():
    import subprocess
    import sys

    code = "import json; from act24.io import xformers_info; print(json.dumps(xformers_info()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0 and "Please reinstall xformers" not in done.stderr + done.stdout
    info = json.loads(done.stdout.strip().splitlines()[-1])
    if info["xformers_extensions"] != "loaded":
        assert info["xformers_extensions"].endswith("(expected without CUDA: xformers' wheels are CUDA builds, and "
                                                    "nothing on a CPU needs its kernels)")


def test_settings_only_jobs_read_are_checked_at_planning(tmp_path):
    import numpy as np

    from act24.experiment import check_bench_settings
    from act24.report.claims import ClaimThresholds

    with pytest.raises(ConfigError, match="'claims.speed_shape': '99B-like' is not a benchmarked shape of gpu_bench.shapes"):
        check_bench_settings(top(claims={"speed_shape": "99B-like"}), None)
    profile = tmp_path / "p.npz"
    np.savez(profile, density=np.array([[0.1, 0.2], [np.nan, np.nan]]))
    check_bench_settings(top(gpu_bench={"trained_layer": 0}), str(profile))
    with pytest.raises(ConfigError, match=r"'gpu_bench.trained_layer': 5, but .*p.npz holds 2 layers"):
        check_bench_settings(top(gpu_bench={"trained_layer": 5}), str(profile))
    with pytest.raises(ConfigError, match="p.npz: layer 1 holds non-finite densities"):
        check_bench_settings(top(gpu_bench={"trained_layer": 1}), str(profile))
    with pytest.raises(ConfigError, match="'gpu_bench.trained_profile': .*missing.npz: missing"):
        check_bench_settings(top(), str(tmp_path / "missing.npz"))
    with pytest.raises(ConfigError, match=r"'claims.c3_init_range': .* got \[0.6, 0.4\]"):
        ClaimThresholds.from_config({**DEFAULT["claims"], "c3_init_range": [0.6, 0.4]})
    # reference shapes are typed: numbers from the command line are read as numbers, words are an error
    shapes = {"x": {"d_model": "64", "n_layers": "2", "n_heads": "2"}}
    cfg = top(analysis={"reference_shapes": copy.deepcopy(shapes)})
    check_config(cfg, SCHEMA, command_line={"analysis": {"reference_shapes": shapes}})
    assert cfg["analysis"]["reference_shapes"]["x"] == {"d_model": 64, "n_layers": 2, "n_heads": 2}


def test_the_gpu_install_target_takes_torch_from_the_cuda_index_at_the_gpu_locks_version():
    lock = (REPO / "requirements-gpu-lock.txt").read_text()
    version = next(line.split("==")[1].split("+")[0] for line in lock.splitlines() if line.startswith("torch=="))
    proc = subprocess.run(["make", "-n", "-B", "setup-gpu"], cwd=REPO, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert f"--index-url https://download.pytorch.org/whl/cu130 torch=={version}" in out
    assert '-c requirements-gpu-lock.txt -e ".[workflow,test,gpu,cutlass]"' in out and "act24 env" in out


def test_env_has_a_line_for_each_gpu_tool():
    from act24.cli import toolchain

    lines = toolchain()
    assert list(lines) == ["nvcc", "CUTLASS headers", "cuSPARSELt", "xformers 2:4 kernels"]
    assert all(line.startswith(("ok, ", "missing: ", "not loaded: ")) for line in lines.values()), lines


def test_only_shapes_narrows_the_benchmark_and_names_an_unknown_shape():
    from act24.experiment import bench_settings, check_bench_settings
    from act24.gpubench.config import GpuBenchConfig

    cfg = top(gpu_bench={"only_shapes": ["7B-like"]})
    check_config(cfg, SCHEMA)
    check_bench_settings(cfg, None)
    bench, _ = bench_settings(cfg, None)
    assert GpuBenchConfig.from_dict(bench).shapes == {"7B-like": (4096, 16512)}
    bad = top(gpu_bench={"only_shapes": ["7B-lik"]})
    check_config(bad, SCHEMA)
    with pytest.raises(ConfigError, match=r"'gpu_bench.only_shapes': '7B-lik' is not a shape of gpu_bench.shapes"):
        check_bench_settings(bad, None)
    with pytest.raises(ConfigError, match=r"'gpu_bench.only_shapes': '7B-lik'"):
        GpuBenchConfig(only_shapes=("7B-lik",))
    elsewhere = top(gpu_bench={"only_shapes": ["13B-like"]})  # C7 / C8 read claims.speed_shape: it must run
    check_config(elsewhere, SCHEMA)
    with pytest.raises(ConfigError, match=r"'claims.speed_shape': '7B-like' is not a benchmarked shape"):
        check_bench_settings(elsewhere, None)
