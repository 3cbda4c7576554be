import math
import sys

import pytest
import torch

from act24.kernels import backends as B
from act24.kernels import cuda12, fp8


def test_reference_backend_is_correct():
    status = B.check_backend(B.ReferenceBackend(), device="cpu")
    assert status.usable and status.verdict == "ok"
    assert status.rel_error < 1e-6


class WrongBackend(B.ReferenceBackend):
    name = "wrong"

    def mm24(self, a, b):
        return (a @ b) * 1.5


class RaisingBackend(B.ReferenceBackend):
    name = "raising"

    def mm24(self, a, b):
        raise RuntimeError("kernel exploded")


class NanBackend(B.ReferenceBackend):
    name = "nan"

    def mm24(self, a, b):
        out = a @ b
        out[0, 0] = float("nan")
        return out


@pytest.mark.parametrize("backend, message", [
    (WrongBackend(), "relative error 0.5 > 1e-05 at mm24"),
    (RaisingBackend(), "mm24 raised on (256, 512) @ (512, 128): RuntimeError: kernel exploded"),
    (NanBackend(), "relative error inf"),
])
def test_wrong_backends_are_reported_incorrect_never_ok(backend, message):
    status = B.check_backend(backend, device="cpu")
    assert status.available and not status.usable
    assert status.verdict.startswith("INCORRECT") and message in status.verdict


def test_check_uses_given_operands_too():
    a = torch.tensor([[1.0, 0, 2, 0]] * 4)
    status = B.check_backend(WrongBackend(), shapes=(), operands=[(a, torch.ones(4, 4))], device="cpu")
    assert status.rel_error == pytest.approx(0.5)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")
@pytest.mark.parametrize("name", ["cusparselt", "xformers_cutlass", "xformers_cusparselt", "xformers_fp8_sm90",
                                  "fused_fp8_cusparselt"])
def test_gpu_backends_say_why_they_are_unavailable_on_cpu(name, monkeypatch):
    monkeypatch.setitem(sys.modules, "triton", sys.modules.get("triton") or object())  # the fused ones ask first
    status = B.check_backend(B.get_backend(name))
    assert not status.available and status.verdict == "unavailable: no CUDA device"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")
def test_the_auto_fp8_backend_names_every_gemm_it_cannot_run():
    why = B.get_backend("fused_fp8_auto").probe()
    assert why.startswith("no 2:4 FP8 GEMM runs here: xformers: ")
    assert "; act24: no CUDA device; cusparselt: no CUDA device" in why


def test_cusparselt_search_tries_algorithm_ids_until_one_is_rejected(monkeypatch):
    """The search's wiring (the routine itself: the autotune test): algorithm ids from 0 until cuSPARSELt rejects
    one, checked against the dense GEMM; the choice is cached per shape and named in `choices`."""
    from act24.kernels import cusparselt as CS

    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 32, generator=g), torch.randn(16, 32, generator=g)
    ms, wrong, calls = {0: 3.0, 1: 0.1, 2: 2.0, 3: 0.5}, {1}, []

    def fake_sparse_mm(compressed, bt, out_dtype=None, alg_id=0):
        if alg_id not in ms:
            raise RuntimeError("CUSPARSE_STATUS_INVALID_VALUE")
        calls.append(alg_id)
        return compressed @ bt * (2 if alg_id in wrong else 1)

    monkeypatch.setattr(CS, "_CHOICES", {})
    monkeypatch.setattr(CS, "_operands", lambda m, k, n, dtype, seed: (a, b))
    monkeypatch.setattr(CS, "event_ms", lambda fn, **_: (fn(), ms[calls[-1]])[1])  # the time of the alg it ran
    monkeypatch.setattr(torch, "_cslt_compress", lambda x: x)
    monkeypatch.setattr(torch, "_cslt_sparse_mm", fake_sparse_mm)
    monkeypatch.setattr(CS, "gpu_name", lambda: "a GPU")
    choice = CS.search(64, 32, 16, torch.float32)
    assert choice.pick == 3 and choice.ms == 0.5
    assert [t.split(":")[0] for t in choice.tried] == ["alg 0", "alg 1", "alg 2", "alg 3", "alg 4"]
    assert "wrong" in choice.tried[1] and "rejected" in choice.tried[4]
    assert CS.search(64, 32, 16, torch.float32) is choice
    assert CS.choices() == {"64 x 32 x 16 float32": "alg 3 (0.500 ms; 5 tried, 1 wrong or failed)"}
    wrong.update(ms)
    with pytest.raises(RuntimeError, match="no algorithm gives correct results for 64 x 32 x 8"):
        CS.search(64, 32, 8, torch.float32)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answers")
def test_select_backend_on_cpu():
    backend, note = B.select_backend("auto", torch.device("cpu"))
    assert backend.name == "reference" and "not on a CUDA device" in note
    with pytest.raises(RuntimeError, match="'cusparselt' cannot be used here: unavailable: no CUDA device"):
        B.select_backend("cusparselt", torch.device("cpu"))
    with pytest.raises(ValueError, match="unknown 2:4 backend 'magic'"):
        B.select_backend("magic", torch.device("cpu"))


def test_shape_constraints_are_named():
    assert B.CuSparseLtBackend().shape_error(64, 64, 64) == ""
    assert "N % 8 == 0" in B.CuSparseLtBackend().shape_error(64, 64, 12)


def test_fp8_rowwise_quantization_round_trips_and_keeps_zeros():
    x = torch.tensor([[0.0, 1.0, -2.0, 0.5], [0.0, 0.0, 0.0, 0.0], [300.0, 0.0, -1e-3, 7.0]])
    q, scale = fp8.quantize_rowwise_fp8(x)
    assert q.dtype == torch.float8_e4m3fn and scale.shape == (3, 1)
    back = q.float() * scale
    assert bool((back[x == 0] == 0).all())
    assert torch.allclose(back, x, rtol=0.07, atol=1e-2)
    assert q.float().abs().amax() <= fp8.FP8_MAX


def test_cudart12_is_found_in_a_wheel_layout(tmp_path, monkeypatch):
    lib = tmp_path / "site" / "nvidia" / "cuda_runtime" / "lib"
    lib.mkdir(parents=True)
    (lib / cuda12.SONAME).write_bytes(b"")
    monkeypatch.setattr(sys, "path", [str(tmp_path / "site"), *sys.path])
    monkeypatch.setattr(cuda12.importlib.util, "find_spec", lambda name: None)
    assert cuda12.find_cudart12() == lib / cuda12.SONAME


def test_cudart12_not_needed_without_cuda13(monkeypatch):
    monkeypatch.setattr(torch.version, "cuda", None)
    cuda12.ensure_cudart12.cache_clear()
    try:
        assert cuda12.ensure_cudart12().startswith("not needed")
    finally:
        cuda12.ensure_cudart12.cache_clear()


def test_status_verdicts():
    s = B.BackendStatus("x", "", available=True, rel_error=math.nan, tolerance=1.0, reason="nan")
    assert s.verdict == "INCORRECT: nan" and not s.usable
    assert B.BackendStatus("x", "", available=False, reason="no GPU").verdict == "unavailable: no GPU"


class WrongDenseBackend(B.ReferenceBackend):
    name = "wrong-dense"

    def mm(self, a, b):
        return 2 * (a @ b)


def test_the_dense_mm_of_a_backend_is_checked_too():
    status = B.check_backend(WrongDenseBackend(), device="cpu")
    assert not status.usable and "at mm (256, 512) @ (512, 128)" in status.verdict


def test_autotune_checks_then_times_then_caches_the_fastest_correct_candidate():
    """Every per-shape search runs this routine. The fastest candidate is wrong and another raises: neither is
    chosen, both are lines of what was tried; an unavailable one is never run; `end_on` ends the list (the first
    candidate's error propagates); with `refine` the finalists' second timing decides; a cached key runs nothing;
    no correct candidate is an error naming every line."""
    from act24.kernels.autotune import Candidate, autotune

    ref, ran = torch.ones(4), []
    ms = {"fast-wrong": 0.1, "raises": 0.2, "a": 3.0, "b": 2.0, "c": 2.5}

    def call(pick, scale=1.0):
        def run():
            ran.append(pick)
            if pick == "raises":
                raise ValueError("bad launch")
            if pick == "end":
                raise RuntimeError("no such algorithm")
            return ref * (2 if pick == "fast-wrong" else scale)
        return run

    picks = ["fast-wrong", "raises", "a", "b", "c", "end", "after the end"]
    candidates = [Candidate("gone", "gone", None, "no GPU")] + [Candidate(p, f"<{p}>", call(p)) for p in picks]
    time = lambda fn: (fn(), ms[ran[-1]])[1]  # noqa: E731
    refined = {}
    cache = {}
    choice = autotune(cache, "shape", candidates, ref, 1e-3, time, what="none correct", end_on=RuntimeError,
                      finalists=2, refine=lambda calls: refined.update(calls) or {"b": 2.2, "c": 1.9},
                      annotate=lambda pick: f"note {pick}")
    assert (choice.pick, choice.label, choice.ms) == ("c", "<c>", 1.9) and set(refined) == {"b", "c"}
    assert choice.tried[0] == "gone: unavailable (no GPU)" and "gone" not in ran and "after the end" not in ran
    assert choice.tried[1] == "<fast-wrong>: wrong (relative error 1)"
    assert choice.tried[2] == "<raises>: failed (ValueError: bad launch)"
    assert choice.tried[3] == "<a>: 3.000 ms (relative error 0.0e+00), note a"
    assert choice.tried[5].endswith(", note c, 1.900 ms sustained")
    assert choice.tried[6].startswith("<end>: rejected, the end of the list (no such algorithm")
    assert choice.describe() == "<c> (1.900 ms; 7 tried, 2 wrong or failed)"
    n = len(ran)
    assert autotune(cache, "shape", candidates, ref, 1e-3, time, what="x") is choice and len(ran) == n
    with pytest.raises(RuntimeError, match="no such algorithm"):  # the first candidate's error is no end of a list
        autotune({}, "k", [Candidate("end", "<end>", call("end"))], ref, 1e-3, time, what="x", end_on=RuntimeError)
    with pytest.raises(RuntimeError, match=r"none correct: gone: unavailable \(no GPU\); <fast-wrong>: wrong"):
        autotune({}, "k", candidates[:3], ref, 1e-3, time, what="none correct")
