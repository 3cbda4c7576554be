"""The backward's intermediates: dense (90c5146's kernels) against the kept form (new), side by side in one run.
Made kept_form_*.txt. Run from the repository root, with 90c5146's kernels as scratch/fused_old.py:
    mkdir -p scratch && git show 90c5146:src/act24/kernels/fused.py | sed -e 's/^from \. import/from act24.kernels import/' \
        -e 's/^from \.sm90_layout/from act24.kernels.sm90_layout/' > scratch/fused_old.py
    python3 reference/h200/fused/earlier/ab_kept.py
Bits are compared first; the times are interleaved (median of 3 do_bench medians). Then launch-setting sweeps
of the kept-form kernels."""
import sys, torch
sys.path.insert(0, "scratch")
import fused_old as old
from act24.kernels import fused as new
from act24.gpubench import ffn_inputs, bench_ms, GpuBenchConfig
from act24.sparsity.pattern import feature_split
from act24.sparsity.ffn import token_permutation

def same(a, b):
    if isinstance(a, (tuple, list)):
        return all(same(u, v) for u, v in zip(a, b))
    if hasattr(a, "meta"):
        return same((a.values, a.meta, a.scale), (b.values, b.meta, b.scale))
    if a is None or b is None:
        return a is None and b is None
    return torch.equal(a.view(torch.uint8), b.view(torch.uint8)) if a.dtype.itemsize == 1 else torch.equal(a, b)

cfg = GpuBenchConfig(rep_ms=100)
t, d, f = 16384, 4096, 16512
x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
y1 = x @ w1.t()
g = torch.randn_like(y1) * 0.01
perm = token_permutation(t, 0).cuda().to(torch.int32)
p_old, dy1_d, y2_d = old.sparsify24_rows(y1, grad=g, write_dense=True, write_y2=True)
p_new, dy1_k, y2_k = new.sparsify24_rows(y1, grad=g, write_kept=True)
print("rows: packed same", same(p_old, p_new), "dy1 same", torch.equal(dy1_k.dense(), dy1_d),
      "y2 same", torch.equal(y2_k.dense(), y2_d), flush=True)
amax, counts = old.column_stats(y2_d, count_nonzero=True)
dy1_amax = old.column_stats(dy1_d)[0]
ka, kc, kb = new.kept_column_stats(y2_k, dy1_k)
print("stats same", torch.equal(ka, amax), torch.equal(kc, counts), torch.equal(kb, dy1_amax), flush=True)
n_sparse = 16512 - 896
dest = new.split_destinations(counts, n_sparse, t)
cases = {  # name: (old fn, new fn)
    "backward rows (dense dY1, Y2 | kept)": (lambda: old.sparsify24_rows(y1, grad=g, write_dense=True, write_y2=True),
                                              lambda: new.sparsify24_rows(y1, grad=g, write_kept=True)),
    "column stats (2 dense reads | 1 kept read)": (
        lambda: (old.column_stats(y2_d, count_nonzero=True), old.column_stats(dy1_d)),
        lambda: new.kept_column_stats(y2_k, dy1_k)),
    "tokens Y2 (dense | kept)": (lambda: old.tokens_split(y2_d, perm, dest, n_sparse, amax=amax),
                                 lambda: new.tokens_split(y2_k, perm, dest, n_sparse, amax=amax)),
    "tokens dY1 (dense | kept)": (lambda: old.tokens_split(dy1_d, perm, dest, n_sparse, amax=dy1_amax),
                                  lambda: new.tokens_split(dy1_k, perm, dest, n_sparse, amax=dy1_amax)),
    "tokens Y2 (dense | dense, refactored)": (lambda: old.tokens_split(y2_d, perm, dest, n_sparse, amax=amax),
                                              lambda: new.tokens_split(y2_d, perm, dest, n_sparse, amax=amax)),
    "quantize_transposed x (old | new)": (lambda: old.quantize_transposed(x, perm), lambda: new.quantize_transposed(x, perm)),
}
total = [0.0, 0.0]
for name, (fo, fn) in cases.items():
    a, b = fo(), fn()
    if "rows" not in name and "stats" not in name and not same(a, b):
        print(f"{name}: DIFFERENT BITS", flush=True)
        continue
    times = {"old": [], "new": []}
    for _ in range(3):
        for k, fx in (("old", fo), ("new", fn)):
            times[k].append(bench_ms(fx, cfg))
    o, n = sorted(times["old"])[1], sorted(times["new"])[1]
    if "refactored" not in name and "quantize" not in name:
        total[0] += o * (1 if "tokens" in name or "stats" in name or "rows" in name else 0)
        total[1] += n
    print(f"{name}: old {o:.4f} ms, new {n:.4f} ms, {o / n:.2f}x", flush=True)
print(f"backward intermediates total: old {total[0]:.3f} ms, new {total[1]:.3f} ms", flush=True)

# launch settings of the kept-form kernels
ref = new.tokens_split(y2_k, perm, dest, n_sparse, amax=amax)
for bm, bk, w in [(64, 64, 2), (32, 64, 1), (32, 128, 1), (64, 64, 1), (32, 64, 2), (64, 128, 2), (128, 64, 4),
                  (32, 32, 1), (64, 32, 1), (128, 32, 2), (64, 128, 4), (128, 64, 2)]:
    lc = new.LaunchConfig(block_m=bm, block_k=bk, num_warps=w)
    try:
        ok = same(new.tokens_split(y2_k, perm, dest, n_sparse, amax=amax, cfg=lc), ref)
        ms = bench_ms(lambda: new.tokens_split(y2_k, perm, dest, n_sparse, amax=amax, cfg=lc), cfg) if ok else float("nan")
        print(f"tune tokens kept {bm}x{bk} w{w}: same {ok} {ms:.4f} ms", flush=True)
    except Exception as e:
        print(f"tune tokens kept {bm}x{bk} w{w}: {type(e).__name__} {str(e)[:100]}", flush=True)
for bm, bk, w in [(16, 128, 4), (8, 128, 2), (16, 64, 2), (8, 256, 4), (16, 256, 4), (32, 128, 4), (16, 128, 2),
                  (32, 64, 2), (8, 128, 1), (4, 256, 2)]:
    lc = new.LaunchConfig(block_m=bm, block_k=bk, num_warps=w)
    r = new.kept_column_stats(y2_k, dy1_k, cfg=lc)
    ok = same(r, (ka, kc, kb))
    ms = bench_ms(lambda: new.kept_column_stats(y2_k, dy1_k, cfg=lc), cfg)
    print(f"tune kept stats {bm}x{bk} w{w}: same {ok} {ms:.4f} ms", flush=True)
