"""act24's sm90a 2:4 FP8 GEMM on the GPU: every compiled configuration against fp32 and against xformers' GEMM on
the same FP8 operands, packed by the CPU reference (`sm90_layout`) and by the fused kernel; odd shapes; the search.

Run on an sm90 machine with `pytest -m gpu -rs -s tests/test_gpu_sm90_gemm.py` (the first run builds the library)."""

import pytest
import torch

from act24.kernels import sm90_gemm, sm90_layout
from act24.kernels.cuda12 import import_xformers_ops
from act24.kernels.fp8 import quantize_rowwise_fp8
from act24.kernels.sm90_gemm.gemm import Launch, launches
from act24.sparsity.pattern import mask24

pytestmark = pytest.mark.gpu
# (M, K, N): aligned, partial tiles in M and N (192, 72: no configuration's tile divides them), K one K tile, large
SHAPES = [(64, 128, 8), (192, 384, 72), (2048, 1536, 520), (4096, 4096, 1024)]


@pytest.fixture(scope="module", autouse=True)
def needs_the_gemm():
    if why := sm90_gemm.missing():
        pytest.skip(f"act24's sm90a GEMM unavailable here: {why}")


def fp8_operands(m, k, n, seed):
    """A random 2:4 (M x K) and (N x K), row-wise FP8, and their fp32 product from the dequantized values."""
    g = torch.Generator(device="cuda").manual_seed(seed)
    a = torch.randn(m, k, device="cuda", generator=g)
    a = (a * mask24(a)).bfloat16()
    a8, a_scale = quantize_rowwise_fp8(a)
    bt8, b_scale = quantize_rowwise_fp8(torch.randn(n, k, device="cuda", generator=g).bfloat16())
    ref = (a8.float() * a_scale) @ (bt8.float() * b_scale).t()
    return a, a8, a_scale, bt8, b_scale, ref


def rel(out, ref):
    assert not out.isnan().any()
    return float((out.float() - ref).norm() / ref.norm())


@pytest.mark.parametrize("m, k, n", SHAPES)
def test_every_configuration_matches_fp32_and_xformers(m, k, n):
    a, a8, a_scale, bt8, b_scale, ref = fp8_operands(m, k, n, seed=m + k + n)
    values, meta = sm90_layout.compress(a8.cpu())  # the CPU reference of the layout, no GPU packing involved
    args = (values.cuda(), meta.cuda().view(torch.uint8).reshape(-1), bt8.t(), a_scale.reshape(-1),
            b_scale.reshape(-1).contiguous())
    ops, why = import_xformers_ops()
    theirs = None
    if ops is not None and hasattr(ops, "_sparse24_fp8_sm90_cutlass_gemm") and n % 64 == 0:
        packed, meta8 = ops._sparse24_sm90_cutlass_compress(a8)
        theirs = ops._sparse24_fp8_sm90_cutlass_gemm(packed, meta8, bt8.t(), a_scale=a_scale,
                                                     b_scale=b_scale.t().contiguous())
    for launch in [Launch(c, r) for c in sm90_gemm.CONFIGS for r in (0, 1)]:
        out = sm90_gemm.run(launch, *args)
        assert out.shape == (m, n) and out.dtype == torch.bfloat16
        err = rel(out, ref)
        vs_xformers = rel(out, theirs.float()) if theirs is not None else float("nan")
        print(f"\n[{launch.describe()} {m}x{k}x{n}] vs fp32 {err:.1e}, vs xformers {vs_xformers:.1e}")
        assert err < 5e-3, launch.describe()  # bf16 output rounding: ~2e-3
        assert theirs is None or vs_xformers < 5e-3, launch.describe()


def test_the_fused_kernels_packing_gives_the_same_result_as_the_reference_packing():
    from act24.kernels.fused import PLAIN, sparsify24_rows

    m, k, n = 1024, 2048, 256
    a, a8, a_scale, bt8, b_scale, ref = fp8_operands(m, k, n, seed=3)
    p = sparsify24_rows(a, mode=PLAIN)[0]
    values, meta = sm90_layout.compress(a8.cpu())
    assert torch.equal(p.values.view(torch.uint8).cpu(), values.view(torch.uint8))
    assert torch.equal(p.meta.cpu(), meta.view(torch.uint8).reshape(-1)) and torch.equal(p.scale, a_scale)
    out = sm90_gemm.sparse_fp8_gemm(p.values, p.meta, bt8.t(), p.scale.reshape(-1), b_scale.reshape(-1))
    assert rel(out, ref) < 5e-3


def test_search_checks_every_launch_and_keeps_a_correct_one():
    choice = sm90_gemm.search(2048, 1536, 512)
    print(f"\n[search 2048 x 1536 x 512] {choice.describe()}")
    assert len(choice.tried) == len(launches()) and choice.ms > 0
    assert choice.pick in launches() and "wrong" not in " ".join(choice.tried)
    assert sm90_gemm.choices()["2048 x 1536 x 512"] == choice.describe()


def test_a_shape_the_kernel_cannot_run_is_refused_before_any_launch():
    _, a8, a_scale, bt8, b_scale, _ = fp8_operands(128, 256, 64, seed=0)
    values, meta = sm90_layout.compress(a8.cpu())
    with pytest.raises(ValueError, match="K % 128 == 0"):
        sm90_gemm.run(Launch(sm90_gemm.CONFIGS[0]), values[:, :96].cuda().contiguous(), meta.cuda(),
                      bt8[:, :192].t(), a_scale.reshape(-1), b_scale.reshape(-1))
