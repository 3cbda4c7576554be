import json

import numpy as np
import pandas as pd
import pytest

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


def test_sparse_recipe_needs_a_sqrelu_model():
    from act24.config import ConfigError

    with pytest.raises(ConfigError, match="sparse.enabled.*needs model.ffn 'sqrelu'"):
        RunConfig.from_dict({"model": {"ffn": "relu"}, "sparse": {"enabled": True}})
