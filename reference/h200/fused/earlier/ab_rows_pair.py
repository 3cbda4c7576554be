"""The previous session's kernels (5d67ef9) against this session's first candidates, on one machine, interleaved,
bits compared first: the backward row kernel's write blocks (tail_block), both token-wise operands in one launch
(`tokens_split_pair`, since reverted), then the whole FFN forward and step. Made rows_pair_vs_5d67ef9.txt, on
5d67ef9 with pair_tokens_and_rows_on_5d67ef9.patch applied and 5d67ef9's kernels and FFN in scratch/:
    mkdir -p scratch && git show 5d67ef9:src/act24/kernels/fused.py | sed -e 's/^from \. import/from act24.kernels import/' \
        -e 's/^from \.sm90_layout/from act24.kernels.sm90_layout/' > scratch/fused_prev.py
    git show 5d67ef9:src/act24/sparsity/fused_ffn.py | sed -e 's/^from \.\.kernels import fused$/import fused_prev as fused/' \
        -e 's/^from \.\.kernels\.backends/from act24.kernels.backends/' -e 's/^from \.pattern/from act24.sparsity.pattern/' \
        -e 's/        from \.ffn import/        from act24.sparsity.ffn import/' > scratch/fused_ffn_prev.py
    python3 reference/h200/fused/earlier/ab_rows_pair.py
rows_tail_forward_vs_5d67ef9.txt came from the first run, on an earlier form of the patch that gave every whole-row
launch tail blocks (the forward at 4096-wide blocks, 4 warps, as its "new default"); it stopped before the
token-wise part. With the patch as committed, `--first-run` gives those settings (tail_block=True) and stops there:
    python3 reference/h200/fused/earlier/ab_rows_pair.py --first-run"""
import collections, statistics, sys
import torch
sys.path.insert(0, "scratch")
import fused_prev as prev
import fused_ffn_prev
from act24.gpubench import COMPILED_DENSE_FP8_FORWARD, COMPILED_DENSE_FP8_STEP, ffn_inputs
from act24.kernels import fused
from act24.kernels.backends import FusedFp8Sm90Backend
from act24.sparsity.ffn import SparseRecipe
from act24.sparsity.pattern import n_sparse_features
from act24.sparsity.fused_ffn import FusedSparseSqReluFFNFunction

print(torch.cuda.get_device_name(), torch.__version__, flush=True)
t, d, f = 16384, 4096, 16512
L = fused.LaunchConfig
cache = torch.empty(int(256e6 // 4), dtype=torch.int, device="cuda")


def same(a, b):
    if isinstance(a, (tuple, list)):
        return len(a) == len(b) and all(same(u, v) for u, v in zip(a, b))
    if a is None or b is None:
        return a is None and b is None
    if hasattr(a, "meta"):
        return same((a.values, a.meta, a.scale), (b.values, b.meta, b.scale))
    if hasattr(a, "codes"):
        return same((a.values, a.codes), (b.values, b.codes))
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8))


def timed(fn, n):
    torch.cuda.synchronize()
    ev = [(torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)) for _ in range(n)]
    for s, e in ev:
        cache.zero_()
        s.record()
        fn()
        e.record()
    torch.cuda.synchronize()
    return statistics.median(s.elapsed_time(e) for s, e in ev)


def rounds(runs, reps, n_rounds=5, unit=1e3, label="us"):
    for fn in runs.values():
        fn()
    times = collections.defaultdict(list)
    for _ in range(n_rounds):
        for k, fn in runs.items():
            times[k].append(timed(fn, reps(k)))
    for k, v in times.items():
        print(f"  {k:44s} median {statistics.median(v) * unit:9.1f} {label}  rounds " + " ".join(f"{u * unit:.1f}" for u in v), flush=True)
    return {k: statistics.median(v) for k, v in times.items()}


y = torch.randn(t, f, device="cuda", dtype=torch.bfloat16) - 1.6
g = torch.randn(t, f, device="cuda", dtype=torch.bfloat16)
print("\nforward sparsify (Y1 -> packed FP8):")
ref = prev.sparsify24_rows(y)
runs = {"HEAD": lambda: prev.sparsify24_rows(y)}
FIRST_RUN = "--first-run" in sys.argv
T = dict(whole_row_max=True, tail_block=True)
forward_settings = ((("new default", L(1, 4096, 4, **T)), ("new BK2048 w4", L(1, 2048, 4, **T))) if FIRST_RUN
                    else (("new default", None),))
for name, lc in forward_settings:
    print(f"  {name}: same bits {same(fused.sparsify24_rows(y, cfg=lc), ref)}")
    runs[name] = lambda lc=lc: fused.sparsify24_rows(y, cfg=lc)
rounds(runs, lambda k: 50)

print("\nbackward row kernel (dY1 packed + dY1, Ỹ2 kept):")
ref = prev.sparsify24_rows(y, grad=g, write_kept=True)
runs = {"HEAD": lambda: prev.sparsify24_rows(y, grad=g, write_kept=True)}
backward_settings = (("new default", None), ("BK4096 w8", L(1, 4096, 8, **T)))
if FIRST_RUN:
    backward_settings += (("BK1024 w8", L(1, 1024, 8, **T)), ("BK4096 w4", L(1, 4096, 4, **T)))
for name, lc in backward_settings:
    print(f"  {name}: same bits {same(fused.sparsify24_rows(y, grad=g, write_kept=True, cfg=lc), ref)}")
    runs[name] = lambda lc=lc: fused.sparsify24_rows(y, grad=g, write_kept=True, cfg=lc)
rounds(runs, lambda k: 30)
del ref
if FIRST_RUN:
    sys.exit()

print("\ntoken-wise, Ỹ2 and dY1 from the kept form (95/5 split):")
_, dy1, y2s = fused.sparsify24_rows(y, grad=g, write_kept=True)
del y, g
amax_y2, counts, amax_dy1 = fused.kept_column_stats(y2s, dy1)
n_sparse = n_sparse_features(f, 0.05, 128)
dest = fused.split_destinations(counts, n_sparse, t)
perm = torch.randperm(t, device="cuda").to(torch.int32)
py2s, pdy1 = prev.Kept24(y2s.values, y2s.codes), prev.Kept24(dy1.values, dy1.codes)
ref = (prev.tokens_split(py2s, perm, dest, n_sparse, amax=amax_y2), prev.tokens_split(pdy1, perm, dest, n_sparse, amax=amax_dy1))
runs = {"HEAD (two launches)": lambda: (prev.tokens_split(py2s, perm, dest, n_sparse, amax=amax_y2),
                                        prev.tokens_split(pdy1, perm, dest, n_sparse, amax=amax_dy1)),
        "new, two single launches": lambda: (fused.tokens_split(y2s, perm, dest, n_sparse, amax=amax_y2),
                                             fused.tokens_split(dy1, perm, dest, n_sparse, amax=amax_dy1))}
for name, lc in (("pair, default", None), ("pair 64x64 w2", L(64, 64, 2)), ("pair 32x64 w1", L(32, 64, 1)),
                 ("pair 32x64 w2", L(32, 64, 2)), ("pair 64x64 w4", L(64, 64, 4)), ("pair 32x128 w4", L(32, 128, 4))):
    out = fused.tokens_split_pair(y2s, dy1, perm, dest, n_sparse, a_amax=amax_y2, b_amax=amax_dy1, cfg=lc)
    print(f"  {name}: same bits {same(out, ref)}")
    runs[name] = lambda lc=lc: fused.tokens_split_pair(y2s, dy1, perm, dest, n_sparse, a_amax=amax_y2, b_amax=amax_dy1, cfg=lc)
rounds(runs, lambda k: 30)
del y2s, dy1, py2s, pdy1, ref, out

print("\nthe FFN: forward; forward + backward (7B-like, 16k tokens, 95% zeros):")
x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
recipe = SparseRecipe(dense_fraction=0.05, split_multiple=128)
backend = FusedFp8Sm90Backend()
params = [v.clone().requires_grad_() for v in (x, w1, w2)]


def step(fn):
    for p in params:
        p.grad = None
    fn.apply(*params, recipe, backend).backward(dy)
    return [p.grad for p in params]


def forward(fn):
    with torch.no_grad():
        return fn.apply(*params, recipe, backend)


old, new = step(fused_ffn_prev.FusedSparseSqReluFFNFunction), step(FusedSparseSqReluFFNFunction)
print("  gradients identical (dx, dw1, dw2):", [torch.equal(a, b) for a, b in zip(old, new)],
      "outputs identical:", torch.equal(forward(fused_ffn_prev.FusedSparseSqReluFFNFunction), forward(FusedSparseSqReluFFNFunction)))
runs = {"HEAD fwd": lambda: forward(fused_ffn_prev.FusedSparseSqReluFFNFunction),
        "new fwd": lambda: forward(FusedSparseSqReluFFNFunction),
        "dense fwd": lambda: COMPILED_DENSE_FP8_FORWARD(x, w1, w2),
        "HEAD step": lambda: step(fused_ffn_prev.FusedSparseSqReluFFNFunction),
        "new step": lambda: step(FusedSparseSqReluFFNFunction),
        "dense step": lambda: COMPILED_DENSE_FP8_STEP(x, w1, w2, dy)}
med = rounds(runs, lambda k: 20 if "fwd" in k else 8, n_rounds=7, unit=1, label="ms")
for p in ("fwd", "step"):
    for k in ("HEAD", "new"):
        print(f"  speedup over dense, {k} {p}: {med['dense ' + p] / med[k + ' ' + p]:.3f}")
