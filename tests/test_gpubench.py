"""The GPU benchmark's pure parts (run anywhere); the timings themselves need a CUDA device."""

import math

import pandas as pd
import pytest
import torch

from act24 import gpubench as G


def ffn_row(path, ms, precision="bf16", ps="forward", status="ok"):
    return {"shape": "7B-like", "T": 16384, "activations": "synthetic", "zero_frac": 0.95, "precision": precision,
            "pass": ps,
            "path": path, "status": status, "ms": ms}


def test_speedup_uses_the_best_dense_path_and_skips_failed_rows():
    rows = [ffn_row("dense", 10.0), ffn_row("dense (torch.compile)", 8.0), ffn_row("2:4", 5.0),
            ffn_row("dense", 4.0, precision="fp8"), ffn_row("2:4", math.nan, precision="fp8", status="incorrect: x"),
            ffn_row("2:4 fused", 2.0, precision="fp8")]
    out = G.speedups(rows)
    common = {"shape": "7B-like", "T": 16384, "activations": "synthetic", "zero_frac": 0.95, "pass": "forward"}
    assert out == [{**common, "precision": "bf16", "sparse_path": "2:4", "dense_path": "dense (torch.compile)",
                    "dense_ms": 8.0, "sparse_ms": 5.0, "speedup": 1.6},
                   {**common, "precision": "fp8", "sparse_path": "2:4 fused", "dense_path": "dense",
                    "dense_ms": 4.0, "sparse_ms": 2.0, "speedup": 2.0}]


def test_sparsify_share_matches_steps_to_the_ffn_forward_of_their_precision():
    sparsify = [{"shape": "7B-like", "T": 16384, "activations": "synthetic", "zero_frac": 0.95, "status": "ok", "ms": 2.0,
                 "step": "as in act24's sparse FFN (fp8): eager relu² + mask24 + pack"},
                {"shape": "7B-like", "T": 16384, "activations": "synthetic", "zero_frac": 0.95, "status": "ok", "ms": 1.0,
                 "step": "relu² + 2:4 mask, dense output (torch.compile)"}]
    sparsify.append({**sparsify[0], "ms": 0.5, "step": G.FUSED_FORWARD_STEP})
    out = G.sparsify_share(sparsify, [ffn_row("2:4", 8.0, precision="fp8"), ffn_row("2:4", 9.0),
                                      ffn_row("2:4 fused", 5.0, precision="fp8")])
    assert [(r["precision"], r["sparse_path"], r["sparsify_share"]) for r in out] == [
        ("fp8", "2:4", 0.25), ("fp8", "2:4 fused", 0.1)]


def test_gate_times_only_correct_paths():
    rows = []
    G.gated(rows, {"name": "good"}, lambda: 0.01, 0.1, lambda: 1.5)
    G.gated(rows, {"name": "wrong"}, lambda: 1.07, 0.1, lambda: pytest.fail("a wrong path must not be timed"))
    G.gated(rows, {"name": "broken"}, lambda: 1 / 0, 0.1, lambda: pytest.fail("must not be timed"))
    assert rows[0] == {"name": "good", "status": "ok", "rel_error": 0.01, "ms": 1.5}
    assert rows[1]["status"] == "incorrect: relative error 1.07 > 0.1" and math.isnan(rows[1]["ms"])
    assert rows[2]["status"].startswith("failed: ZeroDivisionError")


def test_rounds_time_correct_paths_round_robin_and_keep_the_median():
    calls = []

    def timer(name, times):
        def time_it(rep_ms):
            calls.append((name, rep_ms))
            return times[sum(c[0] == name for c in calls) - 1]
        return time_it

    rows, pending = [], []
    G.gated(rows, {"name": "dense"}, lambda: 0.0, 0.1, timer("dense", [9.0, 1.0, 5.0]), pending)
    G.gated(rows, {"name": "wrong"}, lambda: 1.0, 0.1, lambda rep: pytest.fail("must not be timed"), pending)
    G.gated(rows, {"name": "sparse"}, lambda: 0.0, 0.1, timer("sparse", [2.0, 4.0, 3.0]), pending)
    assert math.isnan(rows[0]["ms"]) and calls == []  # nothing timed before the rounds
    G.time_rounds(pending, G.GpuBenchConfig(rep_ms=90, rounds=3))
    assert calls == [("dense", 30.0), ("sparse", 30.0)] * 3  # alternating, each round a third of rep_ms
    assert [r["ms"] for r in rows if r["status"] == "ok"] == [5.0, 3.0] and pending == []


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_without_cuda_every_table_is_a_skipped_record(tmp_path):
    G.write_results(tmp_path, G.GpuBenchConfig())
    for name in G.TABLES:
        assert pd.read_csv(tmp_path / f"{name}.csv")["status"].tolist() == ["skipped: no CUDA device"]
    assert '"status": "skipped: no CUDA device"' in (tmp_path / "bench.json").read_text()


def test_trained_profile_is_resampled_to_the_ffn_width(tmp_path):
    import numpy as np

    density = np.array([[0.0] * 4, [0.9, 0.5, 0.1, 0.1]])  # layer 1: one dense feature, three sparse
    np.savez(tmp_path / "d.npz", density=density)
    cfg = G.GpuBenchConfig(trained_profile=str(tmp_path / "d.npz"), trained_layer=1)
    z = G.trained_zero_fracs(cfg, 16)
    assert z.shape == (16,) and float(z.min()) == pytest.approx(0.1) and float(z.max()) == pytest.approx(0.9)
    assert G.label(z) == {"activations": "trained profile", "zero_frac": round(float(z.mean()), 4)}
    assert G.label(0.95) == {"activations": "synthetic", "zero_frac": 0.95}
