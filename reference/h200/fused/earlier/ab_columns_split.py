"""The previous session's kernels (5d67ef9) against 14491d4's (both since reverted): column statistics in smaller
row chunks on small tensors, and a one-program radix select for the split; then the whole FFN forward and step.
Bits compared first, one machine, interleaved. Made columns_split_14491d4.txt, at 14491d4 with 5d67ef9's kernels
and FFN in scratch/:
    mkdir -p scratch && git show 5d67ef9:src/act24/kernels/fused.py | sed -e 's/^from \. import/from act24.kernels import/' \
        -e 's/^from \.sm90_layout/from act24.kernels.sm90_layout/' > scratch/fused_prev.py
    git show 5d67ef9:src/act24/sparsity/fused_ffn.py | sed -e 's/^from \.\.kernels import fused$/import fused_prev as fused/' \
        -e 's/^from \.\.kernels\.backends/from act24.kernels.backends/' -e 's/^from \.pattern/from act24.sparsity.pattern/' \
        -e 's/        from \.ffn import/        from act24.sparsity.ffn import/' > scratch/fused_ffn_prev.py
    python3 reference/h200/fused/earlier/ab_columns_split.py"""
import collections, statistics, sys
import torch
import triton
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
        print(f"  {k:44s} median {statistics.median(v) * unit:9.3f} {label}  rounds " + " ".join(f"{u * unit:.1f}" for u in v), flush=True)
    return {k: statistics.median(v) for k, v in times.items()}



perm = torch.randperm(t, device="cuda").to(torch.int32)
print("\ncolumn statistics and transposed quantizations (HEAD: 1024 rows per program):")
for name, shape in (("X (T x d)", (t, d)), ("W2 (d x F)", (d, f)), ("W1 (F x d)", (f, d))):
    a = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)
    p = perm if shape[0] == t else None
    ok = same(fused.column_stats(a), prev.column_stats(a)) and same(fused.quantize_transposed(a, p), prev.quantize_transposed(a, p))
    print(f"  {name}: same bits {ok}, chunk {fused.column_chunk(shape[0], triton.cdiv(shape[1], fused.COLUMNS_CONFIG.block_k), fused.COLUMNS_CONFIG.block_m)}")
    rounds({"HEAD column stats": lambda a=a: prev.column_stats(a), "new column stats": lambda a=a: fused.column_stats(a),
            "HEAD quantize_transposed": lambda a=a, p=p: prev.quantize_transposed(a, p),
            "new quantize_transposed": lambda a=a, p=p: fused.quantize_transposed(a, p)}, lambda k: 50)
    del a

y = torch.randn(t, f, device="cuda", dtype=torch.bfloat16) - 1.6
g = torch.randn(t, f, device="cuda", dtype=torch.bfloat16)
_, dy1, y2s = fused.sparsify24_rows(y, grad=g, write_kept=True)
del y, g
py2s, pdy1 = prev.Kept24(y2s.values, y2s.codes), prev.Kept24(dy1.values, dy1.codes)
print("\nkept column statistics of Ỹ2 and dY1, T x F:")
print("  same bits", same(fused.kept_column_stats(y2s, dy1), prev.kept_column_stats(py2s, pdy1)))
rounds({"HEAD kept stats": lambda: prev.kept_column_stats(py2s, pdy1), "new kept stats": lambda: fused.kept_column_stats(y2s, dy1)}, lambda k: 50)
counts = fused.kept_column_stats(y2s)[1]
n_sparse = n_sparse_features(f, 0.05, 128)
print("\nsplit destinations (95/5, from Ỹ2's counts):")
print("  same", torch.equal(fused.split_destinations(counts, n_sparse, t), prev.split_destinations(counts, n_sparse, t)))
rounds({"HEAD (kthvalue + kernel)": lambda: prev.split_destinations(counts, n_sparse, t),
        "new (one program)": lambda: fused.split_destinations(counts, n_sparse, t)}, lambda k: 100)
del dy1, y2s, py2s, pdy1

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
med = rounds(runs, lambda k: 20 if "fwd" in k else 8, n_rounds=9, unit=1, label="ms")
for p in ("fwd", "step"):
    for k in ("HEAD", "new"):
        print(f"  speedup over dense, {k} {p}: {med['dense ' + p] / med[k + ' ' + p]:.3f}")
