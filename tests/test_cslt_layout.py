"""cuSPARSELt's sm90 2:4 format (act24.kernels.cslt_layout) against the maps the layout probe recovered on an H200,
and the probe itself against a layout it must recover (CUTLASS's)."""

import json

import pytest
import torch

import sys

from act24.kernels import cslt_layout as C
from act24.kernels import sm90_layout as L
from act24.sparsity.pattern import mask24

from conftest import REPO

sys.path.insert(0, str(REPO / "workflow" / "experiments"))
import layout_probe as P  # noqa: E402 - an experiment's module, not the package's

PROBED = REPO / "reference" / "h200" / "cslt_layout" / "bench" / "cslt_layout.json"
FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16


def sparse24(m: int, k: int, dtype, seed: int = 0) -> torch.Tensor:
    x = torch.randn(m, k, generator=torch.Generator().manual_seed(seed))
    x = x * mask24(x.abs())
    x[0, :8] = 0  # groups with no non-zero and one non-zero, as the compressor handles them
    x[1, 3] = 0.5
    x[1, :3] = 0
    return x.to(dtype)


def test_the_layout_reproduces_every_map_probed_on_the_h200():
    """The probe found each map to be the sum of its bits' (row, group): the layout must give the same."""
    probed = json.loads(PROBED.read_text())["shapes"]
    assert len(probed) == 12
    for key, shape in probed.items():
        dtype, size = key.split("_")
        m, k = map(int, size.split("x"))
        found = shape["map"]
        assert found["codes_of_4_bits"] and found["linear"] and shape["unattributed_bits"] == 0, key
        n = torch.arange(m * k // 4)
        bits = torch.arange(len(found["row_of_bit"]))
        row = (((n.unsqueeze(1) >> bits) & 1) * torch.tensor(found["row_of_bit"])).sum(1)
        group = (((n.unsqueeze(1) >> bits) & 1) * torch.tensor(found["group_of_bit"])).sum(1)
        assert torch.equal(C.code_offset(row, group, k, 8 if dtype == "fp8" else 16), n), key


@pytest.mark.parametrize("dtype, m, k", [(FP8, 128, 256), (FP8, 192, 320), (BF16, 64, 192), (BF16, 128, 512)])
def test_compress_round_trips_and_keeps_cutlass_values(dtype, m, k):
    a = sparse24(m, k, dtype)
    buf = C.compress(a)
    n_values = m * k // 2 * a.element_size()
    assert buf.numel() == n_values + m * k // 8
    assert torch.equal(buf[:n_values], L.kept(a)[0].contiguous().view(torch.uint8).flatten())
    assert torch.equal(C.decompress(buf, m, k, dtype).float(), a.float())


def test_the_codes_are_arranged_unlike_cutlass_and_pad_with_the_highest_indices():
    a = sparse24(128, 128, FP8)
    assert not torch.equal(C.compress(a)[128 * 64:], L.compress(a)[1])
    a = torch.zeros(64, 64, dtype=FP8)
    for group, kept_at in enumerate([(), (0,), (1,), (2,), (3,), (0, 3), (1, 2)]):
        for i in kept_at:
            a[0, 4 * group + i] = 1.0
    buf = C.compress(a)
    meta = buf[64 * 32:]
    codes = torch.stack([meta & 0xF, meta >> 4], -1).flatten()
    found = [int(codes[C.code_offset(torch.tensor(0), torch.tensor(g), 64, 8)]) for g in range(7)]
    assert found == [0xE, 0xC, 0xD, 0xE, 0xE, 0xC, 0x9]  # (2,3) (0,3) (1,3) (2,3) (2,3) (0,3) (1,2)


def test_shapes_outside_the_atoms_are_refused():
    with pytest.raises(ValueError, match="rows must be a multiple of 64 and columns of 64 for 8-bit"):
        C.compress(sparse24(64, 96, FP8))
    with pytest.raises(ValueError, match="columns of 64 for 16-bit"):
        C.compress(sparse24(64, 96, BF16))  # cuSPARSELt pads such a K
    with pytest.raises(ValueError, match="8- or 16-bit values only"):
        C.code_offset(torch.tensor(0), torch.tensor(0), 64, 32)


def test_the_probe_recovers_a_known_layout():
    """Run on CUTLASS's compressor, the probe finds exactly CUTLASS's arrangement."""
    m, k = 64, 256
    owner = P.run(lambda a: torch.cat([L.compress(a)[0].contiguous().view(torch.uint8).flatten(), L.compress(a)[1]]),
                  m, k, FP8, start=m * k // 2)
    assert (owner >= 0).all() and (owner.reshape(-1, 4) == owner.reshape(-1, 4)[:, :1]).all()
    group = owner.reshape(-1, 4)[:, 0]
    row, col = group // (k // 4), 4 * (group % (k // 4))
    byte = L.meta_byte_offset(row, col, m, 8)
    assert torch.equal(2 * byte + (col // 4) % 2, torch.arange(m * k // 4))


def test_groups_holding_negative_zero_are_stored_as_cusparselt_stores_them():
    """-0.0 counts as zero when the indices are chosen, and the bytes at the chosen indices are stored as they are
    (CUTLASS stores +0 there): every group probed on the H200 (`cslt_layout_probe.py OUT negative-zero`)."""
    probed = json.loads((PROBED.parent / "cslt_negative_zero.json").read_text())
    assert len(probed) >= 10
    for case in probed:
        raw = torch.zeros(64, 64, dtype=torch.uint8)
        raw[0, :4] = torch.tensor([int(b, 16) for b in case["group"]], dtype=torch.uint8)
        buf = C.compress(raw.view(FP8))
        pos = int(C.code_offset(torch.tensor(0), torch.tensor(0), 64, 8))
        code = int(buf[64 * 32 + pos // 2]) >> (4 * (pos % 2)) & 15
        assert [hex(int(b)) for b in buf[:2]] == case["values"], case
        assert [code & 3, code >> 2] == case["code"], case
