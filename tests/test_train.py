import json
import os
import shutil

import numpy as np
import pandas as pd
import pytest
import torch

from act24.config import RunConfig, TrainConfig
from act24.train import NonFiniteLossError, lr_at, train

TINY = {"model": {"vocab_size": 300, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 16,
                  "ffn": "sqrelu", "ffn_multiple_of": 8},
        "train": {"steps": 12, "batch_size": 4, "lr": 3e-3, "warmup_steps": 3, "eval_every": 5,
                  "eval_batches": 2, "stats_every": 4, "stats_batch_size": 2}}


def run(tmp_path, name, token_files, **train_over):
    cfg = RunConfig.from_dict({"name": name, "model": TINY["model"], "train": {**TINY["train"], **train_over}})
    return train(cfg, *token_files, tmp_path / name, progress=False), tmp_path / name


def test_lr_schedule_warmup_then_cosine_to_floor():
    t = TrainConfig(steps=100, lr=1.0, warmup_steps=10, min_lr_ratio=0.1)
    assert lr_at(0, t) == pytest.approx(0.1)
    assert lr_at(9, t) == pytest.approx(1.0)
    assert lr_at(55, t) == pytest.approx(0.55)
    assert lr_at(100, t) == pytest.approx(0.1)
    assert all(lr_at(s, t) >= lr_at(s + 1, t) for s in range(10, 100))


def test_training_writes_metrics_stats_and_is_deterministic(tmp_path, token_files):
    s1, d1 = run(tmp_path, "a", token_files)
    s2, d2 = run(tmp_path, "b", token_files)
    m1 = pd.read_json(d1 / "metrics.jsonl", lines=True)
    m2 = pd.read_json(d2 / "metrics.jsonl", lines=True)
    pd.testing.assert_frame_equal(m1.drop(columns="time"), m2.drop(columns="time"))
    assert s1["final_val_loss"] == s2["final_val_loss"]

    train_rows = m1[m1["split"] == "train"]
    assert train_rows["step"].tolist() == list(range(12))
    assert train_rows["tokens"].iloc[-1] == 12 * 4 * 16
    assert m1[m1["split"] == "val"]["step"].tolist() == [0, 5, 10, 12]
    # It learns: the last training losses are below the first.
    assert train_rows["loss"].tail(3).mean() < train_rows["loss"].head(3).mean()

    stats = pd.read_csv(d1 / "activation_stats.csv")
    assert sorted(stats["step"].unique()) == [0, 4, 8, 12]
    assert sorted(stats["layer"].unique()) == [0, 1]
    # Squared-ReLU at init: about half of the activations are exactly zero.
    assert stats[stats["step"] == 0]["zero_frac"].between(0.35, 0.65).all()
    for col in ("drop24_features", "drop24_tokens", "drop24_tokens_permuted", "drop24_tokens_permuted_split"):
        assert stats[col].between(0, 1).all()

    with np.load(d1 / "feature_density.npz") as z:
        assert z["steps"].tolist() == [0, 4, 8, 12]
        assert z["density"].shape == (4, 2, s1["ffn_width"])
    summary = json.loads((d1 / "summary.json").read_text())
    assert summary["config"]["train"]["seed"] == 0 and summary["tokens"] == 12 * 4 * 16


def test_another_seed_gives_another_run(tmp_path, token_files):
    s1, _ = run(tmp_path, "a", token_files)
    s2, _ = run(tmp_path, "b", token_files, seed=1)
    assert s1["final_val_loss"] != s2["final_val_loss"]


def test_non_finite_loss_stops_with_the_step(tmp_path, token_files):
    with pytest.raises(NonFiniteLossError, match="at step"):
        run(tmp_path, "boom", token_files, lr=1e30, grad_clip=1e30, warmup_steps=1)


def test_on_nonfinite_stop_records_a_diverged_run(tmp_path, token_files):
    summary, out = run(tmp_path, "diverge", token_files, lr=1e30, grad_clip=1e30, warmup_steps=1,
                       on_nonfinite="stop")
    assert summary["final_val_loss"] is None and summary["diverged_at_step"] > 0
    m = pd.read_json(out / "metrics.jsonl", lines=True)
    last = m.iloc[-1]
    assert last["diverged"] and last["step"] == summary["diverged_at_step"] and pd.isna(last["loss"])
    assert (out / "model.pt").exists() and (out / "activation_stats.csv").exists()
    assert json.loads((out / "summary.json").read_text())["final_val_loss"] is None


def test_sparse_recipe_switches_on_after_the_dense_warmup(tmp_path, token_files):
    cfg = RunConfig.from_dict({"name": "s", "model": TINY["model"], "train": TINY["train"],
                               "sparse": {"enabled": True, "dense_warmup": 0.25, "split_multiple": 8}})
    summary = train(cfg, *token_files, tmp_path / "s", progress=False)
    assert summary["sparse_from_step"] == 3 and "reference" in summary["sparse_backend"]
    m = pd.read_json(tmp_path / "s" / "metrics.jsonl", lines=True)
    train_rows = m[m["split"] == "train"]
    assert train_rows["sparse"].tolist() == [False] * 3 + [True] * 9
    assert np.isfinite(train_rows["loss"]).all()
    dense, _ = run(tmp_path, "d", token_files)
    assert summary["final_val_loss"] != dense["final_val_loss"]


@pytest.mark.parametrize("dense_fraction", [0.0, 0.25])
def test_the_statistics_split_follows_the_recipe(tmp_path, token_files, dense_fraction):
    cfg = RunConfig.from_dict({"name": "s", "model": TINY["model"], "train": {**TINY["train"], "steps": 4},
                               "sparse": {"dense_fraction": dense_fraction}})
    train(cfg, *token_files, tmp_path / "s", progress=False)
    st = pd.read_csv(tmp_path / "s" / "activation_stats.csv")
    if dense_fraction == 0:  # no dense features: the split's drop is the permuted token-wise drop
        assert (st["dense_features_share"] == 0).all()
        assert np.allclose(st["drop24_tokens_permuted_split"], st["drop24_tokens_permuted"])
    else:  # the densest quarter of the features holds more than a quarter of the non-zeros
        assert (st["dense_features_share"] > 0.25).all()


def test_sparse_recipe_needs_a_sqrelu_model():
    from act24.config import ConfigError

    with pytest.raises(ConfigError, match="sparse.enabled.*needs model.ffn 'sqrelu'"):
        RunConfig.from_dict({"model": {"ffn": "relu"}, "sparse": {"enabled": True}})


RESUMABLE = {"name": "r", "model": {"vocab_size": 300, "d_model": 16, "n_layers": 1, "n_heads": 2, "seq_len": 8,
                                   "ffn": "sqrelu", "ffn_multiple_of": 8},
             "train": {"steps": 1500, "batch_size": 2, "lr": 3e-3, "warmup_steps": 10, "eval_every": 50,
                       "eval_batches": 1, "stats_every": 50, "stats_batch_size": 1, "checkpoint_every": 50},
             "sparse": {"enabled": True, "dense_warmup": 0.1, "split_multiple": 8}}


def logged_step(path) -> int:
    try:
        lines = path.read_text().splitlines()
        return json.loads(lines[-2])["step"] if len(lines) > 1 else -1
    except (OSError, ValueError):
        return -1


def test_sigkill_mid_run_then_rerun_gives_the_uninterrupted_result(tmp_path, token_files):
    import subprocess
    import sys
    import time

    import torch

    cfg_path = tmp_path / "run.json"
    cfg_path.write_text(json.dumps(RESUMABLE))
    resume, killed_out = tmp_path / "resume", tmp_path / "killed"
    cmd = [sys.executable, "-m", "act24.cli", "train", "--config", str(cfg_path), "--train-tokens",
           str(token_files[0]), "--val-tokens", str(token_files[1]), "--out", str(killed_out),
           "--resume-dir", str(resume), "--quiet"]
    proc = subprocess.Popen(cmd)
    deadline = time.time() + 120
    while logged_step(resume / "metrics.jsonl") < 420 and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.kill()  # SIGKILL: no chance to clean up
    assert proc.wait() == -9, "the run finished before it could be killed: make it longer"
    assert (resume / "resume.pt").exists() and not (killed_out / "summary.json").exists()

    cfg = RunConfig.from_dict(RESUMABLE)
    resumed = train(cfg, *token_files, killed_out, progress=False, resume_dir=resume)
    assert resumed["resumed_from_step"] >= 400 and not (resume / "resume.pt").exists()
    whole = train(cfg, *token_files, tmp_path / "whole", progress=False)
    assert resumed["final_val_loss"] == whole["final_val_loss"]
    for name in ("metrics.jsonl", "activation_stats.csv"):
        a = pd.read_json(killed_out / name, lines=True) if name.endswith("jsonl") else pd.read_csv(killed_out / name)
        b = pd.read_json(tmp_path / "whole" / name, lines=True) if name.endswith("jsonl") else pd.read_csv(
            tmp_path / "whole" / name)
        pd.testing.assert_frame_equal(a.drop(columns="time", errors="ignore"), b.drop(columns="time", errors="ignore"))
    with np.load(killed_out / "feature_density.npz") as za, np.load(tmp_path / "whole" / "feature_density.npz") as zb:
        assert np.array_equal(za["density"], zb["density"]) and np.array_equal(za["steps"], zb["steps"])
    wa = torch.load(killed_out / "model.pt", weights_only=True)["model"]
    wb = torch.load(tmp_path / "whole" / "model.pt", weights_only=True)["model"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)


def test_a_resume_checkpoint_of_other_settings_is_not_used(tmp_path, token_files, capsys):
    short = {**RESUMABLE, "train": {**RESUMABLE["train"], "steps": 60, "checkpoint_every": 20}}
    cfg = RunConfig.from_dict(short)
    resume = tmp_path / "resume"
    train(cfg, *token_files, tmp_path / "a", progress=False, resume_dir=resume)
    other = RunConfig.from_dict({**short, "train": {**short["train"], "lr": 1e-3}})
    from act24.train import save_resume

    save_resume(resume / "resume.pt", {"results_config": cfg.to_dict(neutral=False), "step": 40})
    summary = train(other, *token_files, tmp_path / "b", progress=False, resume_dir=resume)
    assert summary["resumed_from_step"] is None and "other settings: training from the start" in capsys.readouterr().out


SHORT = {**RESUMABLE, "train": {**RESUMABLE["train"], "steps": 60, "checkpoint_every": 20}}


def test_a_kill_after_the_last_step_loses_no_step(tmp_path, token_files):
    """The last checkpoint is taken after the last step and kept (keep_resume) until the workflow has recorded the
    outputs: if they are lost in between (Snakemake deletes a killed job's outputs), the rerun only finishes."""
    cfg, resume = RunConfig.from_dict(SHORT), tmp_path / "resume"
    first = train(cfg, *token_files, tmp_path / "out", progress=False, resume_dir=resume, keep_resume=True)
    assert torch.load(resume / "resume.pt", weights_only=False)["step"] == 60
    shutil.rmtree(tmp_path / "out")
    again = train(cfg, *token_files, tmp_path / "out", progress=False, resume_dir=resume, keep_resume=True)
    assert again["resumed_from_step"] == 60 and again["final_val_loss"] == first["final_val_loss"]
    metrics = pd.read_json(tmp_path / "out" / "metrics.jsonl", lines=True)
    assert metrics[metrics["split"] == "train"]["step"].tolist() == list(range(60))  # each step once
    assert metrics[metrics["split"] == "val"]["step"].tolist() == [0, 50, 60]


def test_settings_that_do_not_change_results_keep_the_checkpoint(tmp_path, token_files):
    resume = tmp_path / "resume"
    train(RunConfig.from_dict(SHORT), *token_files, tmp_path / "a", progress=False, resume_dir=resume,
          keep_resume=True)
    other = RunConfig.from_dict({**SHORT, "train": {**SHORT["train"], "threads": 2, "checkpoint_every": 30}})
    assert train(other, *token_files, tmp_path / "b", progress=False, resume_dir=resume)["resumed_from_step"] == 60
    assert not (resume / "resume.pt").exists()  # keep_resume=False: removed once finished


def test_a_full_disk_names_the_checkpoint_and_leaves_no_partial_file(tmp_path):
    from act24.train import save_resume

    path = tmp_path / "resume.pt"
    save_resume(path, {"step": 1})
    (tmp_path / "resume.pt.partial").symlink_to("/dev/full")  # every write to it fails with ENOSPC
    with pytest.raises(OSError, match=rf"cannot write the resume checkpoint {path} \(No space left on device"):
        save_resume(path, {"step": 2, "model": torch.zeros(1000)})
    assert not os.path.lexists(tmp_path / "resume.pt.partial")
    assert torch.load(path, weights_only=False)["step"] == 1  # the previous checkpoint is intact


def test_an_unwritable_folder_fails_before_training_by_name(tmp_path, token_files, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    real_access = os.access
    monkeypatch.setattr(os, "access", lambda p, mode: p != locked and real_access(p, mode))  # root may write anywhere
    with pytest.raises(PermissionError, match=rf"{locked}: cannot write here"):
        train(RunConfig.from_dict(SHORT), *token_files, tmp_path / "out", progress=False, resume_dir=locked)
    assert not (tmp_path / "out" / "metrics.jsonl").exists() and not list(locked.iterdir())


def test_token_ids_beyond_the_vocabulary_are_an_error_naming_the_file(tmp_path, token_files):
    from act24.data import DataError

    small = {**TINY["model"], "vocab_size": 100}
    cfg = RunConfig.from_dict({"name": "v", "model": small, "train": TINY["train"]})
    with pytest.raises(DataError, match=r"train\.npy: token id \d+ is beyond the model's vocabulary "
                                        r"\(model\.vocab_size = 100\)"):
        train(cfg, *token_files, tmp_path / "v", progress=False)


def test_an_unreadable_resume_checkpoint_names_the_file(tmp_path, token_files):
    resume = tmp_path / "resume"
    resume.mkdir()
    (resume / "resume.pt").write_bytes(b"garbage")
    with pytest.raises(RuntimeError, match=r"resume\.pt: unreadable resume checkpoint .*delete it"):
        train(RunConfig.from_dict(RESUMABLE), *token_files, tmp_path / "o", progress=False, resume_dir=resume)


def test_non_finite_loss_keeps_the_last_good_checkpoint(tmp_path, token_files):
    cfg = RunConfig.from_dict({"name": "boom", "model": TINY["model"],
                               "train": {**TINY["train"], "lr": 1e30, "grad_clip": 1e30, "warmup_steps": 1,
                                         "checkpoint_every": 1}})
    with pytest.raises(NonFiniteLossError, match=r"at step \d+; the last good checkpoint is kept in .*resume\.pt"):
        train(cfg, *token_files, tmp_path / "o", progress=False, resume_dir=tmp_path / "resume")
    assert (tmp_path / "resume" / "resume.pt").exists()


def test_two_gloo_processes_follow_the_single_process_trajectory(tmp_path, token_files, capfd):
    from act24.distributed import train_data_parallel

    spec = {**TINY, "name": "ddp", "train": {**TINY["train"], "steps": 10, "batch_size": 4}}
    single = train(RunConfig.from_dict(spec), *token_files, tmp_path / "one", progress=False)
    spec["train"]["processes"] = 2
    capfd.readouterr()
    ddp = train_data_parallel(RunConfig.from_dict(spec), *token_files, str(tmp_path / "two"), str(tmp_path / "ck"))
    assert ddp["processes"] == 2 and single["processes"] == 1
    log = capfd.readouterr().out.splitlines()  # what a Snakemake job log gets: the main process reports, once
    val = [ln.split(":")[0] for ln in log if ln.startswith("ddp step") and "validation" in ln]
    assert val == ["ddp step 0/10", "ddp step 5/10", "ddp step 10/10"]
    assert len([ln for ln in log if ln.startswith("ddp step 10/10 (100%)") and "tokens/s" in ln]) == 1
    a = pd.read_json(tmp_path / "one" / "metrics.jsonl", lines=True)
    b = pd.read_json(tmp_path / "two" / "metrics.jsonl", lines=True)
    assert a["step"].tolist() == b["step"].tolist()
    # Same global batches and mean gradients; only the floating-point summation order differs.
    np.testing.assert_allclose(b["loss"], a["loss"], rtol=0, atol=2e-4)
    assert ddp["final_val_loss"] == pytest.approx(single["final_val_loss"], abs=2e-4)


def test_processes_without_torchrun_is_a_clear_error(tmp_path, token_files):
    cfg = RunConfig.from_dict({**TINY, "train": {**TINY["train"], "processes": 2}})
    with pytest.raises(RuntimeError, match=r"train.processes is 2 but this process is 1 of 1: launch it with"):
        train(cfg, *token_files, tmp_path / "o", progress=False)


def test_processes_must_divide_the_batch():
    from act24.config import ConfigError

    with pytest.raises(ConfigError, match=r"train.processes.*divide train.batch_size=4"):
        RunConfig.from_dict({"train": {"batch_size": 4, "processes": 3}})


def test_only_finished_runs_lose_their_resume_folder(tmp_path):
    from act24.layout import remove_finished_resume_folders, resume_dir, run_dir

    for variant in ("done", "running"):
        resume_dir(tmp_path, variant, 0).mkdir(parents=True)
        (resume_dir(tmp_path, variant, 0) / "resume.pt").write_bytes(b"state")
    run_dir(tmp_path, "done", 0).mkdir(parents=True)
    (run_dir(tmp_path, "done", 0) / "summary.json").write_text("{}")
    assert remove_finished_resume_folders(tmp_path, [("done", 0), ("running", 0)]) == [resume_dir(tmp_path, "done", 0)]
    assert not (tmp_path / "checkpoints" / "done").exists()  # nor the emptied variant folder
    assert (resume_dir(tmp_path, "running", 0) / "resume.pt").exists()


def test_a_summary_older_than_the_invocation_keeps_its_resume_folder(tmp_path):
    """A summary written before this invocation began may be a job an earlier, killed invocation left incomplete:
    its rerun (--rerun-incomplete) needs the resume state."""
    import os

    from act24.layout import remove_finished_resume_folders, resume_dir, run_dir

    for variant in ("earlier", "now"):
        resume_dir(tmp_path, variant, 0).mkdir(parents=True)
        run_dir(tmp_path, variant, 0).mkdir(parents=True)
        (run_dir(tmp_path, variant, 0) / "summary.json").write_text("{}")
    os.utime(run_dir(tmp_path, "earlier", 0) / "summary.json", (1000.0, 1000.0))
    removed = remove_finished_resume_folders(tmp_path, [("earlier", 0), ("now", 0)], finished_since=2000.0)
    assert removed == [resume_dir(tmp_path, "now", 0)]
    assert resume_dir(tmp_path, "earlier", 0).is_dir()


def test_the_learning_rate_follows_the_schedule_step_by_step(tmp_path, token_files):
    _, out = run(tmp_path, "lr", token_files)
    rows = pd.read_json(out / "metrics.jsonl", lines=True).query("split == 'train'")
    t = TrainConfig(**TINY["train"])
    assert rows["lr"].to_numpy() == pytest.approx([lr_at(s, t) for s in rows["step"]], rel=1e-12)


def test_a_log_file_gets_progress_lines_with_validation_loss_and_throughput(tmp_path, token_files, capsys):
    cfg = RunConfig.from_dict({"name": "p", "model": TINY["model"], "train": {**TINY["train"], "log_every": 4}})
    summary = train(cfg, *token_files, tmp_path / "p", progress=True)  # stderr is not a terminal here
    out = capsys.readouterr()
    assert "\r" not in out.out + out.err  # no redrawn bar in a file
    lines = out.out.splitlines()
    steps = [ln for ln in lines if ln.startswith("p step ") and "tokens/s" in ln]
    assert [ln.split()[2] for ln in steps] == ["4/12", "8/12", "12/12"]
    throughput = float(steps[0].split(", ")[-2].split()[0].replace(",", ""))  # "12,345 tokens/s"
    assert "loss " in steps[0] and "eta " in steps[0] and throughput > 0
    val = [ln for ln in lines if "validation loss" in ln]
    assert [ln.split()[2].rstrip(":") for ln in val] == ["0/12", "5/12", "10/12", "12/12"]
    assert val[-1].endswith(f"validation loss {summary['final_val_loss']:.4f}")
    assert summary["tokens_per_second"] > 0


def test_tensorboard_scalars_when_switched_on(tmp_path, token_files):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    summary, out = run(tmp_path, "tb", token_files, tensorboard=True, log_every=6)
    events = EventAccumulator(str(out / "tensorboard"))
    events.Reload()
    tags = {"train/loss", "train/lr", "train/grad_norm", "train/tokens_per_s", "val/loss"}
    assert tags <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("train/loss")] == list(range(1, 13))
    assert [e.step for e in events.Scalars("val/loss")] == [0, 5, 10, 12]
    assert events.Scalars("val/loss")[-1].value == pytest.approx(summary["final_val_loss"], rel=1e-6)
    _, off = run(tmp_path, "no_tb", token_files)
    assert not (off / "tensorboard").exists()


def test_the_summary_records_the_code_version(tmp_path, token_files, monkeypatch):
    import subprocess

    from act24 import __version__

    summary, _ = run(tmp_path, "v", token_files)
    head = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, cwd=os.path.dirname(__file__))
    if head.returncode == 0:
        assert summary["versions"]["git_commit"].split("+")[0] == head.stdout.strip()
    assert summary["versions"]["act24"] == __version__
    monkeypatch.setenv("ACT24_GIT_COMMIT", "abc1234")
    assert run(tmp_path, "w", token_files)[0]["versions"]["git_commit"] == "abc1234"


def test_the_command_line_reports_what_the_machine_cannot_do_in_one_line(tmp_path, token_files, capsys):
    """No CUDA device, an unusable backend, an unwritable folder, a missing config: one line, exit 2; and a finished
    run's summary.json serves as the run config."""
    import json

    import torch

    from act24.cli import main
    from act24.config import RunConfig

    spec = RunConfig.from_dict({"name": "t", "model": {"ffn": "sqrelu", "vocab_size": 300, "d_model": 16,
                                                                         "n_layers": 1, "n_heads": 2, "seq_len": 16},
                                "train": {"steps": 2, "warmup_steps": 1, "batch_size": 2, "eval_batches": 1,
                                          "stats_batch_size": 2}}).to_dict()
    (tmp_path / "run.json").write_text(json.dumps(spec))
    train, val = map(str, token_files)
    common = ["train", "--train-tokens", train, "--val-tokens", val, "--quiet"]
    cases = [(["--config", str(tmp_path / "run.json"), "--set", "train.device=cuda"],
              "train.device is 'cuda' but no CUDA device is available"),
             (["--config", str(tmp_path / "run.json"), "--set", "sparse.enabled=true", "--set",
               "sparse.backend=cusparselt"], "2:4 backend 'cusparselt' cannot be used"),
             (["--config", str(tmp_path / "missing.json")], "missing.json: missing; give a RunConfig JSON, or a "
                                                            "finished run's summary.json")]
    if torch.cuda.is_available():
        cases = cases[2:]
    for extra, message in cases:
        assert main(common + ["--out", str(tmp_path / "out")] + extra) == 2
        err = capsys.readouterr().err
        assert message in err and len(err.strip().splitlines()) == 1, err
    assert main(common + ["--out", str(tmp_path / "ok"), "--config", str(tmp_path / "run.json")]) == 0
    summary = tmp_path / "ok" / "summary.json"
    assert main(common + ["--out", str(tmp_path / "again"), "--config", str(summary)]) == 0  # its "config"
    assert json.loads((tmp_path / "again" / "summary.json").read_text())["config"] == json.loads(
        summary.read_text())["config"]


def test_act24_train_takes_settings_by_dotted_key_over_the_workflow_config(tmp_path, token_files, monkeypatch):
    """`act24 train model.d_model=16 train.steps=2`: the workflow's config with these settings, validated as the
    workflow validates it, into a folder named by the settings (other settings, another folder)."""
    import json
    import shutil

    import yaml

    from act24.cli import main
    from conftest import REPO

    data = tmp_path / "results" / "data"
    data.mkdir(parents=True)
    for f in token_files:  # the corpus is there already: nothing to make
        shutil.copy(f, data / f.name)
    cfg = tmp_path / "mine.yaml"
    cfg.write_text(yaml.safe_dump({"results": str(tmp_path / "results"), "logs": str(tmp_path / "logs"),
                                   "data": {"vocab_size": 300}}))
    monkeypatch.chdir(REPO)
    small = ["model.d_model=16", "model.n_layers=1", "model.n_heads=2", "model.seq_len=16", "train.batch_size=4",
             "train.steps=2", "train.warmup_steps=1", "train.eval_batches=1", "train.stats_batch_size=4", "--quiet"]
    assert main(["train", "--configfile", str(cfg), *small]) == 0
    (first,) = (tmp_path / "results" / "cli").glob("sqrelu-*/seed0/summary.json")
    summary = json.loads(first.read_text())
    assert summary["config"]["model"]["d_model"] == 16 and summary["steps"] == 2
    assert main(["train", "--configfile", str(cfg), *small, "train.lr=1e-3", "--variant", "swiglu"]) == 0
    assert len(list((tmp_path / "results" / "cli").glob("*/seed0/summary.json"))) == 2
    # the same checks as the workflow's, one line each
    assert main(["train", "--configfile", str(cfg), "train.stpes=3"]) == 2
    assert main(["train", "--configfile", str(cfg), *small, "--variant", "nope"]) == 2
    assert main(["train", "--configfile", str(cfg), "data.vocab_size=100"]) == 2
