"""The fused sparsify kernels against the reference path (mask24 -> quantize -> CUTLASS's compress format),
bit for bit. On the CPU they run in Triton's interpreter (small shapes); tests/test_gpu.py repeats the checks on
the GPU against CUTLASS's own compressor."""

import pytest
import torch

pytest.importorskip("triton", reason="the fused kernels are Triton kernels (pip install triton)")

from act24.kernels import backends as B  # noqa: E402
from act24.kernels.fused_fp8 import FusedFp8Backend  # noqa: E402
from act24.kernels.sparse_fp8_gemms import SparseFp8Gemm, XformersGemm  # noqa: E402
from act24.kernels import fused  # noqa: E402
from act24.kernels.fused import bits as fused_bits  # noqa: E402
import triton  # noqa: E402
import triton.language as tl  # noqa: E402
from act24.kernels import cslt_layout as C  # noqa: E402
from act24.kernels import sm90_layout as L  # noqa: E402
from act24.kernels.fp8 import quantize_rowwise_fp8  # noqa: E402
from act24.ffn import sparse_sqrelu_ffn  # noqa: E402
from act24.sparsity.recipe import SparseRecipe  # noqa: E402
from act24.sparsity.pattern import feature_split, mask24, token_permutation  # noqa: E402

pytestmark = pytest.mark.kernels  # the Triton kernels through its interpreter on the CPU: minutes

DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
SMALL = fused.LaunchConfig(block_m=4, block_k=128)  # K = 256: two blocks
TAIL = fused.LaunchConfig(block_m=2, block_k=512)  # K = 384: one partial block
ON_CHIP = fused.LaunchConfig(block_m=4, on_chip_warps=4)  # FP8 rows read once: K = 384 is 256 + a 128-wide tail
WHOLE_MAX = fused.LaunchConfig(block_m=4, block_k=128, whole_row_max=True)  # FP8: max of the whole row, looped writes
TAIL_BLOCK = fused.LaunchConfig(block_m=4, block_k=128, whole_row_max=True, tail_block=True)  # + a tail block
ROW_CONFIGS = pytest.mark.parametrize("cfg", [SMALL, ON_CHIP, WHOLE_MAX, TAIL_BLOCK],
                                      ids=["loop", "on_chip", "whole_row_max", "tail_block"])


def activations(m, k, seed=0):
    """bf16 pre-activations: half of relu² is zero, some ties (values on a coarse grid), tiny rows whose values
    quantize to zero."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randn(m, k, generator=g)
    y = torch.where(torch.rand(m, k, generator=g) < 0.1, torch.round(y * 4) / 4, y)  # ties
    y[: m // 8] *= 1e-3
    return y.bfloat16().to(DEVICE)


def assert_packs(p: fused.Packed24, x_masked, fp8):
    """`p` is x_masked (a 2:4 bf16 tensor; FP8 rows if fp8) exactly as the reference compressor of p.layout packs
    it (`sm90_layout.compress`, or `cslt_layout.compress`: one buffer), with the reference row scales."""
    a, scale = quantize_rowwise_fp8(x_masked) if fp8 else (x_masked, None)
    if p.layout == fused.CUSPARSELT:
        assert torch.equal(p.buffer.cpu().view(torch.uint8).flatten(), C.compress(a.cpu()))
        assert p.values.data_ptr() == p.buffer.data_ptr()  # the values lead the buffer
    else:
        vals, meta = L.compress(a.cpu())
        raw = torch.uint8 if fp8 else torch.int16
        assert torch.equal(p.values.cpu().view(raw), vals.view(raw))
        assert torch.equal(p.meta.cpu(), meta)
    if fp8:
        assert torch.equal(p.scale.cpu(), scale.cpu())


LAYOUTS = pytest.mark.parametrize("fp8,layout", [(True, fused.CUTLASS), (False, fused.CUTLASS),
                                                 (True, fused.CUSPARSELT)], ids=["fp8", "bf16", "fp8-cusparselt"])


@ROW_CONFIGS
@LAYOUTS
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_kernel_matches_reference_bit_for_bit(fp8, layout, seed, cfg):
    y = activations(128, 256, seed)
    packed, kept, _ = fused.sparsify24_rows(y, fp8=fp8, write_kept=True, cfg=cfg, layout=layout)
    y2 = torch.relu(y).square()
    y2s = y2 * mask24(y2)
    assert torch.equal(kept.dense(), y2s)
    assert kept.values.shape == (128, 128) and kept.codes.shape == (128, 32)
    assert_packs(packed, y2s, fp8)


@pytest.mark.parametrize("cfg,k", [(TAIL, 384), (ON_CHIP, 384), (ON_CHIP, 896), (WHOLE_MAX, 896), (TAIL_BLOCK, 896)],
                         ids=["loop", "on_chip_tail", "on_chip_padded_tail", "whole_row_max", "tail_block"])
@LAYOUTS
def test_forward_kernel_handles_a_partial_last_block(fp8, layout, cfg, k):
    y = activations(64, k, 7)
    packed, _, _ = fused.sparsify24_rows(y, fp8=fp8, cfg=cfg, layout=layout)
    y2 = torch.relu(y).square()
    assert_packs(packed, y2 * mask24(y2), fp8)


def test_kept_form_stores_the_kept_values_and_one_code_per_index_pair():
    # Every group keeps indices (i0, i1): values 2 and 3 there, 1 and -1 elsewhere (relu² 1 and 0).
    pairs = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]
    codes = {(0, 1): 0b0000, (0, 2): 0b0101, (0, 3): 0b1001, (1, 2): 0b0110, (1, 3): 0b1010, (2, 3): 0b1111}
    groups = [pairs[g % 6] for g in range(64)]
    row = []
    for i0, i1 in groups:
        group = [1.0, -1.0, 1.0, -1.0]
        group[i0], group[i1] = 2.0, 3.0
        row += group
    y = torch.tensor([row] * 64).bfloat16().to(DEVICE)
    _, kept, _ = fused.sparsify24_rows(y, write_kept=True, cfg=SMALL)
    y2 = torch.relu(y).square()
    assert torch.equal(kept.dense(), y2 * mask24(y2))
    assert kept.values[0].tolist() == [4.0, 9.0] * 64
    nibbles = [codes[p] for p in groups]
    assert kept.codes[0].tolist() == [lo | (hi << 4) for lo, hi in zip(nibbles[0::2], nibbles[1::2])]


@ROW_CONFIGS
@pytest.mark.parametrize("layout", [fused.CUTLASS, fused.CUSPARSELT])
def test_backward_kernel_uses_the_forward_mask_on_the_gradient(cfg, layout):
    y, g = activations(64, 384, 2), activations(64, 384, 3)  # K: 256 + a 128-wide tail
    packed, dy1, y2s = fused.sparsify24_rows(y, grad=g, write_kept=True, cfg=cfg, layout=layout)
    relu = torch.relu(y)
    mask = mask24(relu.square())
    assert dy1.codes is y2s.codes  # one mask, one set of codes
    assert torch.equal(y2s.dense(), relu.square() * mask)
    assert torch.equal(dy1.dense(), g * (2 * relu) * mask)
    assert_packs(packed, dy1.dense(), True)


def test_plain_mode_packs_an_already_sparse_operand():
    x = activations(64, 256, 4).float()
    x = (x * mask24(x)).bfloat16()
    packed, _, _ = fused.sparsify24_rows(x, mode=fused.PLAIN, cfg=SMALL)
    assert_packs(packed, x, True)
    assert torch.equal(L.decompress(packed.values.cpu(), packed.meta.cpu()).float() * packed.scale.cpu(),
                       quantize_rowwise_fp8(x)[0].cpu().float() * packed.scale.cpu())


@ROW_CONFIGS
@pytest.mark.parametrize("mode", [fused.FORWARD, fused.PLAIN], ids=["relu2", "plain"])
def test_quantize_kernel_is_rowwise_fp8_bit_for_bit(mode, cfg):
    y = activations(64, 256, 5)
    out, scale = fused.quantize_rows(y, mode, cfg=cfg)
    ref, ref_scale = quantize_rowwise_fp8(torch.relu(y).square() if mode == fused.FORWARD else y)
    assert torch.equal(out.view(torch.uint8), ref.view(torch.uint8)) and torch.equal(scale, ref_scale)


@pytest.mark.parametrize("form", ["dense", "kept"])
@LAYOUTS
@pytest.mark.parametrize("dense_fraction", [0.0, 0.25])
def test_tokenwise_kernel_matches_the_split_reference(fp8, layout, dense_fraction, form):
    t, f = 256, 128
    y = activations(t, f, 6)
    y2 = torch.relu(y).square()
    a = y2 * mask24(y2)  # forward-masked, as in the backward
    kept = fused.sparsify24_rows(y, write_kept=True)[1]  # the same, in the kept form
    perm = token_permutation(t, seed=1).to(DEVICE)
    sparse_idx, dense_idx = feature_split(a, dense_fraction, 64)
    packed, dense, dense_scale = fused.sparsify24_tokens(a if form == "dense" else kept, perm, sparse_idx,
                                                         dense_idx, fp8=fp8, layout=layout,
                                                         cfg=fused.LaunchConfig(block_m=32, block_k=128))
    at = a[perm].t()
    sp = at[sparse_idx]
    sp = sp * mask24(sp, dim=1)
    assert_packs(packed, sp, fp8)
    if fp8:
        ref_dense, ref_scale = quantize_rowwise_fp8(at[dense_idx])
        assert torch.equal(dense.view(torch.uint8), ref_dense.view(torch.uint8))
        assert torch.equal(dense_scale, ref_scale)
    else:
        assert torch.equal(dense, at[dense_idx])


def test_layout_roundtrip_and_compressor_conventions():
    # One group of each kind in the first row: two non-zeros, one at index 1, one at index 3, none.
    a = torch.zeros(64, 128)
    a[0, 0:16] = torch.tensor([0, 5, 0, 7, 0, 3, 0, 0, 0, 0, 0, 2, 0, 0, 0, 0.0])
    vals, meta = L.compress(a.bfloat16())
    assert vals[0, :8].tolist() == [5, 7, 3, 0, 0, 2, 0, 0]
    # nibbles: (1,3) -> 0b1101, (1,3) -> 0b1101, (0,3) -> 0b1100, (0,0) -> 0
    first = L.meta_byte_offset(torch.tensor(0), torch.tensor([0, 8]), 64, 16)
    assert meta[first].tolist() == [0xDD, 0x0C]
    assert torch.equal(L.decompress(vals, meta), a.bfloat16())


def test_layout_rejects_unaligned_shapes_and_dense_groups():
    with pytest.raises(ValueError, match="multiple of 64 and columns of 128"):
        L.compress(torch.zeros(64, 64, dtype=torch.float8_e4m3fn))
    with pytest.raises(ValueError, match="more than 2 non-zeros"):
        L.compress(torch.ones(64, 64, dtype=torch.bfloat16))
    with pytest.raises(ValueError, match="reduction dimension a multiple of 128"):
        fused.sparsify24_rows(torch.zeros(64, 64, dtype=torch.bfloat16, device=DEVICE))


def emulated_scaled_mm(a8, b8, scale_a, scale_b, out_dtype=torch.bfloat16, use_fast_accum=True):
    return ((a8.float() * scale_a) @ (b8.float() * scale_b)).to(out_dtype)


def emulated_packed_gemm(a: fused.Packed24, b8, b_scale):
    """The FP8 sparse GEMM emulated in fp32 from the packed format of either layout (CPU)."""
    if a.layout == fused.CUSPARSELT:
        dense = C.decompress(a.buffer, a.values.shape[0], 2 * a.values.shape[1], a.values.dtype)
    else:
        dense = L.decompress(a.values.cpu(), a.meta.cpu())
    return ((dense.float().to(b8.device) * a.scale) @ (b8.float() * b_scale)).to(torch.bfloat16)


class EmulatedGemm(SparseFp8Gemm):
    """An FP8 sparse GEMM emulated on the CPU (`emulated_packed_gemm`), reading `layout`."""

    name = "emulated"

    def __init__(self, layout=fused.CUTLASS):
        self.layout = layout

    def probe(self):
        return ""

    def __call__(self, a, b8, b_scale):
        self.check_layout(a, a.values.shape[0], 2 * a.values.shape[1], b8.shape[1])
        return emulated_packed_gemm(a, b8, b_scale)


def emulated_fused_backend():
    """The fused backend with its FP8 sparse GEMM emulated."""
    return FusedFp8Backend(EmulatedGemm(), "emulated_fused", "")


def emulated_fused_cusparselt_backend():
    """The same, its kernels writing cuSPARSELt's layout."""
    return FusedFp8Backend(EmulatedGemm(fused.CUSPARSELT), "emulated_fused_cusparselt", "")


class EmulatedUnfusedBackend(B.XformersFp8Sm90Backend):
    """The stock FP8 path (mask24, quantize, compress, GEMM), its compressor and GEMM emulated the same way."""

    def probe(self):
        return ""

    def mm24(self, a, b):
        a8, a_scale = quantize_rowwise_fp8(a)
        bt8, b_scale = quantize_rowwise_fp8(b.t().contiguous())
        values, meta = L.compress(a8.cpu())
        return emulated_packed_gemm(fused.Packed24(values, meta, a_scale), bt8.t(), b_scale.t().contiguous())


@pytest.mark.parametrize("recipe", [SparseRecipe(split_multiple=64),
                                    SparseRecipe(split_multiple=64, token_permutation=False, dense_fraction=0.0)],
                         ids=["full", "no_perm_no_split"])
@pytest.mark.parametrize("fused_backend", [emulated_fused_backend, emulated_fused_cusparselt_backend],
                         ids=["cutlass", "cusparselt"])
def test_fused_ffn_equals_the_unfused_fp8_path(monkeypatch, recipe, fused_backend):
    """Same inputs, same quantization, same masks: the fused FFN's output and all gradients equal the unfused
    FP8 FFN's exactly (GEMMs emulated identically on the CPU; tests/test_gpu.py runs the real ones)."""
    if DEVICE == "cpu":
        monkeypatch.setattr(torch, "_scaled_mm", emulated_scaled_mm)
    t, d, f = 256, 64, 256
    g = torch.Generator().manual_seed(0)
    x = torch.randn(t, d, generator=g).bfloat16().to(DEVICE)
    w1 = (torch.randn(f, d, generator=g) / 8).bfloat16().to(DEVICE)
    w2 = (torch.randn(d, f, generator=g) / 16).bfloat16().to(DEVICE)
    dy = torch.randn(t, d, generator=g).bfloat16().to(DEVICE)
    results = []
    for backend in (fused_backend(), EmulatedUnfusedBackend()):
        params = [v.clone().requires_grad_() for v in (x, w1, w2)]
        y = sparse_sqrelu_ffn(*params, recipe, backend)
        y.backward(dy)
        results.append([y.detach()] + [p.grad for p in params])
    for name, fused_out, unfused_out in zip(("Y", "dX", "dW1", "dW2"), *results):
        assert torch.isfinite(fused_out).all(), name
        assert torch.equal(fused_out, unfused_out), name


def test_backend_dispatch_runs_the_fused_function_only_for_the_papers_recipe():
    from act24.ffn import runs_fused

    fused_backend = emulated_fused_backend()
    assert runs_fused(SparseRecipe(), fused_backend)
    assert not runs_fused(SparseRecipe(mask_dy1=False), fused_backend)
    assert not runs_fused(SparseRecipe(backward="masked_dense"), fused_backend)
    assert not runs_fused(SparseRecipe(), B.ReferenceBackend())


def test_quantize_transposed_is_the_rowwise_fp8_of_the_permuted_transpose():
    b = activations(256, 64, 8)
    perm = token_permutation(256, seed=2).to(DEVICE)
    q, scale = fused.quantize_transposed(b, perm, cfg=fused.LaunchConfig(block_m=32, block_k=128))
    ref, ref_scale = quantize_rowwise_fp8(b[perm].t().contiguous())
    assert torch.equal(q.view(torch.uint8), ref.view(torch.uint8)) and torch.equal(scale, ref_scale)


def test_fp8_encoding_rounds_like_torch_at_the_edges():
    """Ties, subnormals, the largest value and signed zeros: with a row maximum of 448 the scale is 1, so these
    are the values the kernel encodes."""
    edges = [448.0, 447.0, 440.0, 232.0, 248.0, 1.0625, 1.1875, 2**-6, 2**-6 - 2**-10, 2**-10, 3 * 2**-10,
             2**-11, 5 * 2**-11, 1e-7, 0.0, -0.0, -1e-7, -2**-10, -3 * 2**-10, -232.0, -448.0, 17.0, 19.0, 0.3]
    row = torch.tensor(edges + [0.0] * (128 - len(edges)))
    y = torch.stack([row, row * 0.5, -row, row.roll(7)] * 16).bfloat16().to(DEVICE)
    out, scale = fused.quantize_rows(y, fused.PLAIN, cfg=SMALL)
    ref, ref_scale = quantize_rowwise_fp8(y)
    assert torch.equal(out.view(torch.uint8), ref.view(torch.uint8)) and torch.equal(scale, ref_scale)


def test_kept_column_stats_equal_the_dense_forms_column_stats():
    y, g = activations(128, 256, 8), activations(128, 256, 9)
    _, dy1, y2s = fused.sparsify24_rows(y, grad=g, write_kept=True)
    amax, counts, dy1_amax = fused.kept_column_stats(y2s, dy1, cfg=fused.LaunchConfig(block_m=32, block_k=64))
    dense = y2s.dense()
    assert torch.equal(amax, dense.float().abs().amax(0)) and torch.equal(counts, (dense != 0).sum(0).int())
    assert torch.equal(dy1_amax, dy1.dense().float().abs().amax(0))
    assert fused.kept_column_stats(dy1)[2] is None
    with pytest.raises(ValueError, match="share a's shape and codes"):
        fused.kept_column_stats(y2s, fused.Kept24(dy1.values, dy1.codes.clone()))


def test_column_stats_are_the_column_maxima_and_non_zero_counts():
    a = activations(300, 200, 9)  # neither a multiple of the blocks: masked edges
    a = torch.where(a > 0.5, a, torch.zeros_like(a))
    a[:, 3] = 0  # an all-zero column
    amax, counts = fused.column_stats(a, count_nonzero=True, cfg=fused.LaunchConfig(block_m=64, block_k=128))
    assert torch.equal(amax, a.abs().amax(dim=0).float())
    assert torch.equal(counts, (a != 0).sum(0).int())
    assert fused.column_stats(a)[1] is None


@pytest.mark.parametrize("transpose", [False, True])
def test_gather_rows_puts_each_row_of_the_split_in_its_place(transpose):
    g = torch.Generator().manual_seed(10)
    sparse, dense = torch.randn(70, 40, generator=g).bfloat16(), torch.randn(30, 40, generator=g).bfloat16()
    order = torch.randperm(100, generator=g)
    sparse_idx, dense_idx = order[:70].to(DEVICE), order[70:].to(DEVICE)
    dest = fused.feature_destinations(100, sparse_idx, dense_idx)
    out = fused.gather_rows(sparse.to(DEVICE), dense.to(DEVICE), dest, transpose,
                            cfg=fused.LaunchConfig(block_m=32, block_k=32))
    ref = torch.empty(100, 40, dtype=torch.bfloat16, device=DEVICE)
    ref[sparse_idx], ref[dense_idx] = sparse.to(DEVICE), dense.to(DEVICE)
    assert torch.equal(out, ref.t() if transpose else ref)
    no_dense = fused.feature_destinations(70, torch.arange(70, device=DEVICE), dense_idx[:0])
    assert torch.equal(fused.gather_rows(sparse.to(DEVICE), dense[:0].to(DEVICE), no_dense), sparse.to(DEVICE))


@pytest.mark.parametrize("f, n_sparse, top", [(2500, 2375, 6), (2500, 1300, 70000), (300, 256, 6), (64, 64, 6),
                                               (40, 0, 6)])
def test_split_destinations_equal_the_sorted_split(f, n_sparse, top):
    """The fused backward's split (one selection and a running count) is pattern.feature_split's, as
    feature_destinations writes it; counts with many ties (ties go to the lower index), or large ones (keys with
    four significant bytes)."""
    g = torch.Generator().manual_seed(f)
    counts = torch.randint(0, top, (f,), generator=g).int()
    order = torch.argsort(-counts.double() + torch.arange(f) / f)  # by count, ties to the lower index
    dense_idx = order[: f - n_sparse].sort().values
    sparse_idx = order[f - n_sparse:].sort().values
    if top < 8:  # the same split from pattern.feature_split on a tensor with these counts
        a = (torch.arange(8)[:, None] < counts[None, :]).float()
        split = feature_split(a, 1 - n_sparse / f)
        assert torch.equal(split[0].cpu(), sparse_idx) and torch.equal(split[1].cpu(), dense_idx)
    ref = fused.feature_destinations(f, sparse_idx.to(DEVICE), dense_idx.to(DEVICE))
    counts = counts.to(DEVICE)
    assert torch.equal(fused.split_destinations(counts, n_sparse, max_count=top), ref)  # int32 keys
    assert torch.equal(fused.split_destinations(counts, n_sparse, max_count=2**31 // f), ref)  # int64 keys


def test_row_blocks_pick_the_variant_the_config_asks_for():
    loop, whole = fused.LaunchConfig(1, 4096, 4), fused.LaunchConfig(1, 4096, 4, whole_row_max=True)
    on_chip = fused.LaunchConfig(1, 4096, 4, on_chip_warps=8)
    assert fused.row_blocks(loop, 16512, True) == (  # F = 16512 = 16 x 1024 + 128: little waste
        dict(BK=1024, ROW_BK=0, ROW_TAIL=0, ON_CHIP=False, TAIL_BLOCK=False), 4)
    assert fused.row_blocks(whole, 16512, True) == (
        dict(BK=1024, ROW_BK=16384, ROW_TAIL=128, ON_CHIP=False, TAIL_BLOCK=False), 4)
    # with tail_block, the writes take 4096-wide blocks over 16384 columns, then the 128-wide tail
    tail = fused.LaunchConfig(1, 4096, 8, whole_row_max=True, tail_block=True)
    assert fused.row_blocks(tail, 16512, True) == (
        dict(BK=4096, ROW_BK=16384, ROW_TAIL=128, ON_CHIP=False, TAIL_BLOCK=True), 8)
    assert fused.row_blocks(tail, 2176, True)[0] == dict(BK=2048, ROW_BK=2048, ROW_TAIL=128, ON_CHIP=False,
                                                         TAIL_BLOCK=True)
    assert fused.row_blocks(on_chip, 8448, True) == (
        dict(BK=1024, ROW_BK=8192, ROW_TAIL=256, ON_CHIP=True, TAIL_BLOCK=False), 8)
    assert fused.row_blocks(on_chip, 16384, True)[0]["ROW_TAIL"] == 0
    # bf16 needs no row maximum, and rows beyond ON_CHIP_MAX_K always loop
    assert fused.row_blocks(on_chip, 16512, False)[0]["ROW_BK"] == 0
    assert fused.row_blocks(whole, fused.ON_CHIP_MAX_K + 128, True)[0]["ROW_BK"] == 0


@ROW_CONFIGS
def test_dense_backward_kernel_writes_dy1_in_fp8_rows_and_bf16_and_y2(cfg):
    y, g = activations(64, 384, 6), activations(64, 384, 7)  # K: 256 + a 128-wide tail
    dy1_8, scale, dy1, y2 = fused.dense_backward_rows(y, g, cfg=cfg)
    ref = g * (2 * torch.relu(y))
    ref8, ref_scale = quantize_rowwise_fp8(ref)
    assert torch.equal(dy1, ref) and torch.equal(y2, torch.relu(y).square())
    # Equal FP8 values; a zero's sign may differ (torch keeps relu(-0) = -0, so g ⊙ 2 relu(-0) has -g's sign).
    assert torch.equal(dy1_8.float(), ref8.float()) and torch.equal(scale, ref_scale)
    assert (dy1_8.view(torch.uint8) != ref8.view(torch.uint8)).sum() <= (y == 0).sum()


def ffn_operands(t=256, d=64, f=256, seed=0):
    g = torch.Generator().manual_seed(seed)
    return [(torch.randn(*shape, generator=g) * s).bfloat16().to(DEVICE)
            for shape, s in (((t, d), 1.0), ((f, d), 1 / 8), ((d, f), 1 / 16), ((t, d), 1.0))]


def test_dense_fused_ffn_equals_the_unfused_dense_fp8_ffn(monkeypatch):
    """The dense FP8 FFN on the fused kernels computes exactly what the eager dense FP8 FFN computes: the same
    quantized operands into the same GEMMs (emulated identically on the CPU)."""
    from act24.ffn import dense_sqrelu_ffn
    from act24.ffn.fused import dense_fused_fp8_ffn

    if DEVICE == "cpu":
        monkeypatch.setattr(torch, "_scaled_mm", emulated_scaled_mm)
    x, w1, w2, dy = ffn_operands()
    results = []
    for run in (lambda *p: dense_fused_fp8_ffn(*p, emulated_fused_backend()),
                lambda *p: dense_sqrelu_ffn(*p, EmulatedUnfusedBackend())):
        params = [v.clone().requires_grad_() for v in (x, w1, w2)]
        y = run(*params)
        y.backward(dy)
        results.append([y.detach()] + [p.grad for p in params])
    for name, fused_out, unfused_out in zip(("Y", "dX", "dW1", "dW2"), *results):
        assert torch.isfinite(fused_out).all() and fused_out.abs().sum() > 0, name
        assert torch.equal(fused_out, unfused_out), name


@pytest.mark.parametrize("sparse", [False, True], ids=["dense", "2:4"])
def test_custom_op_gives_the_autograd_functions_results_and_compiles_whole(monkeypatch, sparse):
    from act24.ffn.fused import dense_fused_fp8_ffn, fused_ffn_op, recipe_spec

    if DEVICE == "cpu":
        monkeypatch.setattr(torch, "_scaled_mm", emulated_scaled_mm)
        monkeypatch.setattr(XformersGemm, "__call__", lambda self, a, b8, b_scale: emulated_packed_gemm(a, b8, b_scale))
    recipe = SparseRecipe(split_multiple=64) if sparse else None
    spec = recipe_spec(recipe)
    x, w1, w2, dy = ffn_operands(seed=1)
    results = []
    for run in (lambda *p: fused_ffn_op(*p, spec),
                lambda *p: (sparse_sqrelu_ffn(*p, recipe, B.get_backend("fused_fp8_sm90")) if sparse
                            else dense_fused_fp8_ffn(*p))):
        params = [v.clone().requires_grad_() for v in (x, w1, w2)]
        y = run(*params)
        y.backward(dy)
        results.append([y.detach()] + [p.grad for p in params])
    for name, op_out, ref_out in zip(("Y", "dX", "dW1", "dW2"), *results):
        assert torch.equal(op_out, ref_out), name
    # The op traces as one node: a compiled caller has no graph break around it.
    explanation = torch._dynamo.explain(lambda a, b, c: fused_ffn_op(a, b, c, spec) * 2)(x, w1, w2)
    assert explanation.graph_break_count == 0 and explanation.graph_count == 1
    with pytest.raises(ValueError, match="only the paper's recipe"):
        recipe_spec(SparseRecipe(mask_dy1=False))


@triton.jit
def _meta_offsets_kernel(rows_ptr, cols_ptr, out_ptr, M, K, N: tl.constexpr, LAYOUT: tl.constexpr):
    i = tl.arange(0, N)
    tl.store(out_ptr + i, fused_bits._meta_offset(tl.load(rows_ptr + i), tl.load(cols_ptr + i), M, K, LAYOUT))


@LAYOUTS
def test_metadata_offsets_stay_exact_past_two_to_the_31_elements(fp8, layout):
    """The 70B-like FFN at 64k tokens has 65536 x 43008 > 2^31 activations: the kernels' metadata offsets must not
    wrap (they did in int32: the 2:4 FFN's output was wrong there). No large tensor is needed to check the math."""
    m, k = 65536, 43008
    rows = torch.tensor([0, 1, 4095, 65535, 65535, 12345, 65472, 7], dtype=torch.int32, device=DEVICE)
    cols = torch.tensor([0, 42992, 42880, 42992, 128, 21504, 40960, 33000], dtype=torch.int32, device=DEVICE)
    out = torch.empty(8, dtype=torch.int64, device=DEVICE)
    _meta_offsets_kernel[(1,)](rows, cols, out, m, k, N=8, LAYOUT=fused.formats.layout_code(layout, fp8))
    r, c = rows.long().cpu(), cols.long().cpu()
    if layout == fused.CUSPARSELT:  # the byte of the pair's even group (its code is the byte's low half)
        codes = C.code_offset(r, c // 4, k, 8)
        assert (codes % 2 == 0).all() and torch.equal(C.code_offset(r, c // 4 + 1, k, 8), codes + 1)
        ref = codes // 2
    else:
        ref = L.meta_byte_offset(r, c, m, 8 if fp8 else 16)
    assert ref.max() > 2**31 // 8 and torch.equal(out.cpu(), ref)


def test_scaling_pass_applies_row_and_column_scales_once():
    g = torch.Generator().manual_seed(9)
    out = torch.randn(70, 150, generator=g).bfloat16().to(DEVICE)  # partial tiles both ways
    a, b = torch.rand(70, 1, generator=g).to(DEVICE) + 0.5, torch.rand(1, 150, generator=g).to(DEVICE) + 0.5
    want = (out.float() * a * b).bfloat16()
    assert fused.scale_rows_cols_(out, a, b) is out and torch.equal(out, want)
    with pytest.raises(ValueError, match="scale_rows_cols_: a contiguous"):
        fused.scale_rows_cols_(out.t(), a, b)
