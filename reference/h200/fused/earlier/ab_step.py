"""One machine, interleaved: the fused FFN step with last session's backward (90c5146: dense dY1, Ỹ2) against this
session's (kept form), and the compiled dense FP8 step. Gradients are compared bit for bit first.
Made step_old_vs_kept_*.txt. Run from the repository root with 90c5146's kernels and FFN in scratch/:
    mkdir -p scratch && git show 90c5146:src/act24/kernels/fused.py | sed -e 's/^from \. import/from act24.kernels import/' \
        -e 's/^from \.sm90_layout/from act24.kernels.sm90_layout/' > scratch/fused_old.py
    git show 90c5146:src/act24/sparsity/fused_ffn.py | sed -e 's/^from \.\.kernels import fused$/import fused_old as fused/' \
        -e 's/^from \.\.kernels\.backends/from act24.kernels.backends/' -e 's/^from \.pattern/from act24.sparsity.pattern/' \
        -e 's/        from \.ffn import/        from act24.sparsity.ffn import/' > scratch/fused_ffn_old.py
    python3 reference/h200/fused/earlier/ab_step.py"""
import sys, statistics, torch
sys.path.insert(0, "scratch")
import fused_ffn_old
from act24.gpubench import ffn_inputs, bench_ms, GpuBenchConfig, COMPILED_DENSE_FP8_STEP
from act24.kernels.backends import FusedFp8Sm90Backend
from act24.sparsity.ffn import SparseRecipe
from act24.sparsity.fused_ffn import FusedSparseSqReluFFNFunction

cfg = GpuBenchConfig(rep_ms=100)
t, d, f = (int(v) for v in sys.argv[1:4]) if len(sys.argv) > 3 else (16384, 4096, 16512)
x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
recipe = SparseRecipe(dense_fraction=0.05, split_multiple=128)
backend = FusedFp8Sm90Backend()
params = [v.clone().requires_grad_() for v in (x, w1, w2)]

def step(fn):
    for p in params:
        p.grad = None
    fn.apply(*params, recipe, backend).backward(dy)
    return [p.grad for p in params]

old = step(fused_ffn_old.FusedSparseSqReluFFNFunction)
new = step(FusedSparseSqReluFFNFunction)
print(f"T={t} d={d} F={f}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
print("gradients identical (dx, dw1, dw2):", [torch.equal(a, b) for a, b in zip(old, new)], flush=True)
paths = {"fused, dense intermediates (90c5146)": lambda: step(fused_ffn_old.FusedSparseSqReluFFNFunction),
         "fused, kept form (this session)": lambda: step(FusedSparseSqReluFFNFunction),
         "dense FP8 (torch.compile)": lambda: COMPILED_DENSE_FP8_STEP(x, w1, w2, dy)}
times = {k: [] for k in paths}
for r in range(5):
    for k, fn in paths.items():
        times[k].append(bench_ms(fn, cfg, 60))
for k, v in times.items():
    print(f"{k}: median {statistics.median(v):.3f} ms over 5 rounds ({', '.join(f'{x:.3f}' for x in v)})")
dense = statistics.median(times["dense FP8 (torch.compile)"])
for k in list(paths)[:2]:
    print(f"speedup over dense, {k}: {dense / statistics.median(times[k]):.3f}x")
