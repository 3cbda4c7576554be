"""Recover cuSPARSELt's 2:4 metadata arrangement on this GPU (not part of the pipeline).

    python workflow/experiments/cslt_layout_probe.py OUT_DIR [negative-zero]

For each probed shape and value type, `torch._cslt_compress` is run on the probe matrices of
`layout_probe` (this folder); OUT_DIR/cslt_layout.npz gets, per shape, the group that owns each metadata bit
(-1: no probe flips it), and OUT_DIR/cslt_layout.json the buffer sizes, whether the values region equals
CUTLASS's sm90 values, the 4-bit code of every index pair, the map from a code's position to its row and group
(`layout_probe.basis`: the (row, group) of each power of two, and whether the whole map is their sum), and
whether `_cslt_sparse_mm` takes a per-row alpha vector (checked against fp32)."""

import json
import sys
from pathlib import Path

import numpy as np
import torch

import layout_probe as P  # this folder
from act24.kernels import sm90_layout as L

FP8, BF16 = torch.float8_e4m3fn, torch.bfloat16
SHAPES = {FP8: [(128, 128), (128, 256), (256, 128), (256, 256), (128, 512), (384, 256), (256, 1024)],
          BF16: [(128, 128), (128, 256), (256, 128), (256, 256), (128, 512)]}
PAIRS = [(0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3)]


def compress(a: torch.Tensor) -> torch.Tensor:
    return torch._cslt_compress(a.cuda()).view(torch.uint8).flatten().cpu()


def codes(m: int, k: int, dtype, start: int) -> dict:
    """The first metadata bytes when every group keeps the same index pair."""
    out = {}
    for pair in PAIRS:
        buf = compress(P.pattern_matrix(m, k, torch.zeros(m * k // 4, dtype=torch.long), (pair,), dtype))
        out[str(pair)] = buf[start:start + 4].tolist()
    return out


def alpha_vector(m: int = 256, k: int = 512, n: int = 384) -> dict:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(m, k, generator=g).clamp(min=0)
    mask = torch.zeros(m, k // 4, 4)
    mask.scatter_(-1, torch.topk(x.reshape(m, k // 4, 4), 2, dim=-1).indices, 1.0)
    a = (x * mask.reshape(m, k)).to(FP8).cuda()
    b = torch.randn(n, k, generator=g).to(FP8).cuda()
    alpha = torch.rand(m, generator=g).cuda() + 0.5
    ref = (a.float() @ b.float().t()) * alpha[:, None]
    out = {}
    for name, kwargs in {"alpha (M,) fp32": {"alpha": alpha}, "no alpha": {}}.items():
        try:
            y = torch._cslt_sparse_mm(torch._cslt_compress(a), b.t(), out_dtype=BF16, **kwargs).float()
            want = ref if kwargs else ref / alpha[:, None]
            out[name] = {"rel_error": float((y - want).norm() / want.norm()), "nan": bool(y.isnan().any())}
        except Exception as exc:  # noqa: BLE001 - a probe: record what cuSPARSELt says
            out[name] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
    return out


NZ, ONE, TWO = 0x80, 0x38, 0x40  # FP8 e4m3 bits of -0.0, 1.0 and 2.0
SIGNED_GROUPS = [(NZ, 0, 0, 0), (0, 0, 0, NZ), (NZ, NZ, 0, 0), (0, NZ, 0, NZ), (ONE, NZ, 0, 0), (NZ, 0, 0, ONE),
                 (0, NZ, ONE, 0), (ONE, 0, NZ, 0), (0, ONE, 0, NZ), (NZ, ONE, TWO, 0), (ONE, NZ, TWO, 0),
                 (ONE, TWO, NZ, 0), (NZ, NZ, NZ, ONE), (0, 0, 0, 0), (0, 0, 0, ONE)]


def negative_zeros(m: int = 64, k: int = 64) -> list[dict]:
    """What _cslt_compress keeps of FP8 groups holding -0.0 (bits 0x80): each group alone in row 0 of an
    otherwise zero matrix; its two stored value bytes and its 4-bit code (i0, i1)."""
    from act24.kernels import cslt_layout as C

    out = []
    for group in SIGNED_GROUPS:
        raw = torch.zeros(m, k, dtype=torch.uint8)
        raw[0, :4] = torch.tensor(group, dtype=torch.uint8)
        buf = compress(raw.view(FP8))
        code_pos = int(C.code_offset(torch.tensor(0), torch.tensor(0), k, 8))
        byte = int(buf[m * k // 2 + code_pos // 2])
        code = (byte >> 4) if code_pos % 2 else (byte & 15)
        out.append({"group": [hex(b) for b in group], "values": [hex(int(b)) for b in buf[:2]],
                    "code": [code & 3, code >> 2]})
    return out


def main(out_dir: str) -> None:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if sys.argv[2:] == ["negative-zero"]:  # only the signed-zero groups
        found = negative_zeros()
        print(*found, sep="\n")
        (out / "cslt_negative_zero.json").write_text(json.dumps(found, indent=1))
        return
    owners, summary = {}, {"torch": torch.__version__, "cusparselt": torch.backends.cusparselt.version(),
                           "gpu": torch.cuda.get_device_name(), "shapes": {}}
    for dtype, shapes in SHAPES.items():
        bits = 8 * torch.empty((), dtype=dtype).element_size()
        for m, k in shapes:
            key = f"{'fp8' if dtype == FP8 else 'bf16'}_{m}x{k}"
            start = m * k // 2 * bits // 8
            a = P.pattern_matrix(m, k, torch.zeros(m * k // 4, dtype=torch.long), ((0, 2),), dtype)
            try:
                buf = compress(a)
            except Exception as exc:  # noqa: BLE001 - a shape cuSPARSELt refuses: record why
                summary["shapes"][key] = {"error": f"{type(exc).__name__}: {exc}"[:300]}
                print(key, summary["shapes"][key], flush=True)
                continue
            values_equal = bool(torch.equal(buf[:start], L.compress(a)[0].contiguous().view(torch.uint8).flatten()))
            owner = P.run(compress, m, k, dtype, start)
            owners[key] = owner.numpy().astype(np.int32)
            summary["shapes"][key] = {"bytes": len(buf), "values_bytes": start, "meta_bytes": len(buf) - start,
                                      "values_equal_cutlass": values_equal,
                                      "unattributed_bits": int((owner < 0).sum()),
                                      "map": P.basis(owner, k),
                                      "codes": codes(m, k, dtype, start)}
            print(key, summary["shapes"][key], flush=True)
    summary["alpha_vector"] = alpha_vector()
    print(summary["alpha_vector"], flush=True)
    np.savez_compressed(out / "cslt_layout.npz", **owners)
    (out / "cslt_layout.json").write_text(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main(sys.argv[1])
