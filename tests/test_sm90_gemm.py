"""act24's sm90a 2:4 FP8 GEMM on the CPU: what it refuses and why, the build's failures as reasons, the cache, and
the per-shape search. The kernels themselves run in tests/test_gpu_sm90_gemm.py."""

import shutil

import pytest
import torch

from act24.kernels import sm90_gemm
from act24.kernels.sm90_gemm import build, gemm

FP8 = torch.float8_e4m3fn


def operands(m=128, k=256, n=64):
    values = torch.zeros(m, k // 2, dtype=FP8)
    meta = torch.zeros(m * k // 8, dtype=torch.uint8)
    b8 = torch.zeros(n, k, dtype=FP8).t()
    return values, meta, b8, torch.ones(m), torch.ones(n)


@pytest.mark.parametrize("m, k, n, what", [(100, 256, 64, "M % 64"), (128, 200, 64, "K % 128"),
                                           (128, 256, 60, "N % 8"), (0, 256, 64, "all positive")])
def test_shapes_the_kernel_cannot_run_are_refused_by_name(m, k, n, what):
    assert what in sm90_gemm.shape_error(m, k, n)
    values, meta, b8, sa, sb = operands(max(m, 64), max(k, 128), n)
    values, b8 = values[:m, : k // 2], b8[:k] if k <= b8.shape[0] else b8
    with pytest.raises(ValueError, match="needs M % 64 == 0, K % 128 == 0 and N % 8 == 0"):
        gemm._check(values.contiguous(), meta, b8, sa, sb)


def test_operands_of_the_wrong_kind_are_refused_by_name():
    values, meta, b8, sa, sb = operands()
    assert gemm._check(values, meta, b8, sa, sb) == (128, 256, 64)
    with pytest.raises(ValueError, match="float8_e4m3fn"):
        gemm._check(values.float(), meta, b8, sa, sb)
    with pytest.raises(ValueError, match="column-major"):
        gemm._check(values, meta, b8.contiguous(), sa, sb)
    with pytest.raises(ValueError, match="meta must be 4096 contiguous bytes"):
        gemm._check(values, meta[:-1], b8, sa, sb)
    with pytest.raises(ValueError, match="a_scale must be 128 contiguous float32"):
        gemm._check(values, meta, b8, sa.double(), sb)
    with pytest.raises(ValueError, match="b_scale must be 64"):
        gemm._check(values, meta, b8, sa, sb[:32])


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the CPU-only answer")
def test_without_a_gpu_the_gemm_says_so(monkeypatch):
    assert sm90_gemm.missing() == "no CUDA device"
    monkeypatch.setenv("ACT24_SM90_GEMM", "0")
    assert sm90_gemm.missing() == "disabled by ACT24_SM90_GEMM=0"


def test_a_failing_build_is_tried_once_per_process(monkeypatch):
    calls = []

    def failing_load():
        calls.append(1)
        raise build.Sm90GemmUnavailable("build failed (x); full log: y")

    monkeypatch.setattr(gemm, "load", failing_load)
    gemm._load_error.cache_clear()
    assert gemm._load_error() == gemm._load_error() == "build failed (x); full log: y" and len(calls) == 1
    gemm._load_error.cache_clear()


def test_configurations_keep_the_metadata_layout_and_have_distinct_names():
    names = [c.name for c in sm90_gemm.CONFIGS]
    assert len(set(names)) == len(names)
    assert all(c.tile_k >= 128 and c.tile_m % 64 == 0 for c in sm90_gemm.CONFIGS)
    assert "-DTILE_N=256" in sm90_gemm.CONFIGS[0].defines()


def test_a_cached_library_is_used_without_nvcc(tmp_path, monkeypatch):
    monkeypatch.setenv("ACT24_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setattr(build, "find_nvcc", lambda: pytest.fail("nvcc asked for although the build is cached"))
    lib = build.library_path()
    lib.write_bytes(b"")
    assert build.build() == lib and lib.parent == tmp_path


def test_missing_tools_are_reasons_that_name_the_fix(tmp_path, monkeypatch):
    monkeypatch.setenv("ACT24_KERNEL_CACHE", str(tmp_path))
    monkeypatch.setenv("CUDA_HOME", str(tmp_path / "no-cuda"))
    monkeypatch.setattr(build, "DEFAULT_NVCC", str(tmp_path / "no-nvcc"))
    monkeypatch.setattr(build.shutil, "which", lambda _: None)
    with pytest.raises(build.Sm90GemmUnavailable, match="nvcc not found .* no cached build at"):
        build.build()
    monkeypatch.setenv("CUTLASS_PATH", str(tmp_path))
    with pytest.raises(build.Sm90GemmUnavailable, match="CUTLASS headers not found under .*nvidia-cutlass"):
        build.cutlass_includes()


@pytest.mark.skipif(shutil.which("nvcc") is None, reason="needs nvcc (fails at the preprocessor: no GPU needed)")
def test_a_failing_build_is_a_reason_with_the_error_and_the_log(tmp_path, monkeypatch):
    cutlass = tmp_path / "cutlass"
    for header in ("cutlass/cutlass.h", "cute/tensor.hpp"):  # the first header the source includes fails
        (cutlass / "include" / header).parent.mkdir(parents=True, exist_ok=True)
        (cutlass / "include" / header).write_text('#error "a broken CUTLASS"\n')
    monkeypatch.setenv("CUTLASS_PATH", str(cutlass))
    monkeypatch.setenv("ACT24_KERNEL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(build.Sm90GemmUnavailable, match="build failed .*a broken CUTLASS.*full log: "):
        build.build(progress=False)
    assert not build.library_path().exists()  # nothing half-built is left to be loaded


def test_search_tries_every_launch_and_times_the_fastest_again_sustained(monkeypatch):
    """The search's wiring (the routine itself: the autotune test in test_backends.py): every launch checked against
    cuBLAS on the same operands, the FINALISTS fastest correct ones timed again; the choice cached per shape; a
    shape the GEMM cannot take is a ValueError before anything runs."""
    launches = gemm.launches()
    ms = {launch: 1.0 + i for i, launch in enumerate(launches)}
    fastest_wrong, failing, best = launches[0], launches[1], launches[2]
    ran, broken = [], set()
    ref = torch.ones(4, 4)

    def fake_run(launch, *args):
        if launch == failing:
            raise RuntimeError("can_implement: Error Invalid Problem")
        ran.append(launch)
        return ref * (2 if launch == fastest_wrong or launch in broken else 1)

    monkeypatch.setattr(gemm, "_CHOICES", {})
    monkeypatch.setattr(gemm, "run", fake_run)
    monkeypatch.setattr(gemm, "random_operands", lambda *a, **k: {
        "packed": type("P", (), {"values": 0, "meta": 0, "scale": torch.ones(1)})(), "b8": 0,
        "b_scale": 0, "dense": ref})
    monkeypatch.setattr(gemm, "event_ms", lambda fn, **_: (fn(), ms[ran[-1]])[1])
    monkeypatch.setattr(gemm, "gpu_name", lambda: "a GPU")
    choice = gemm.search(128, 256, 64)
    assert choice.pick == best and choice.ms == ms[best] and len(choice.tried) == len(launches)
    finalists = [t for t in choice.tried if "sustained" in t]
    assert len(finalists) == gemm.FINALISTS and f"{ms[best]:.3f} ms sustained" in choice.tried[2]
    assert "wrong" in choice.tried[0] and "failed (sm90a" not in choice.tried[1] and "Invalid Problem" in choice.tried[1]
    assert gemm.search(128, 256, 64) is choice and list(gemm.choices()) == ["128 x 256 x 64"]
    broken.update(launches)
    with pytest.raises(RuntimeError, match="no launch gives correct results for 128 x 256 x 128"):
        gemm.search(128, 256, 128)
    with pytest.raises(ValueError, match="M % 64"):
        gemm.search(100, 256, 64)
