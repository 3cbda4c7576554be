"""xformers' sm90 FP8 2:4 GEMM: its persistent scheduler's settings (sm_count, default 128 of the H200's 132 SMs;
swizzle size and axis) at the FFN's sparse GEMM shapes. Outputs compared bit for bit with the default first.
Made gemm_scheduler_08b200d.txt at 08b200d: python3 reference/h200/fused/earlier/gemm_scheduler.py"""
import collections, itertools, statistics, sys
import torch
from act24.kernels import fused
from act24.kernels.cuda12 import import_xformers_ops

ops, _ = import_xformers_ops()
props = torch.cuda.get_device_properties(0)
print(torch.cuda.get_device_name(), "SMs", props.multi_processor_count, torch.__version__, flush=True)
cache = torch.empty(int(256e6 // 4), dtype=torch.int, device="cuda")


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


t, d, f, fs = 16384, 4096, 16512, 15616
shapes = {"FW2 / BW3 (M=T, K=F, N=d)": (t, f, d), "BW2 / BW4 (M=F_sparse, K=T, N=d)": (fs, t, d)}
sms = props.multi_processor_count
settings = [(128, 8, "n")] + [(c, s, a) for c in (sms - sms % 2, 128) for s in (1, 2, 4, 8) for a in ("n", "m")
                              if (c, s, a) != (128, 8, "n")]
for name, (m, k, n) in shapes.items():
    y = torch.randn(m, k, device="cuda", dtype=torch.bfloat16)
    packed = fused.sparsify24_rows(y, mode=fused.PLAIN)[0]
    del y
    b8 = torch.randn(n, k, device="cuda", dtype=torch.bfloat16).to(torch.float8_e4m3fn)
    b_scale = torch.rand(1, n, device="cuda") + 0.5
    run = lambda c, s, a: ops._sparse24_fp8_sm90_cutlass_gemm(packed.values, packed.meta, b8.t(), a_scale=packed.scale,
                                                              b_scale=b_scale, sm_count=c, swizzle_size=s, swizzle_axis=a)
    ref = run(128, 8, "n")
    print(f"\n{name}: M={m} K={k} N={n}", flush=True)
    ok = {cfg: torch.equal(run(*cfg), ref) for cfg in settings}
    times = collections.defaultdict(list)
    for _ in range(3):
        for cfg in settings:
            times[cfg].append(timed(lambda: run(*cfg), 40))
    base = statistics.median(times[settings[0]])
    for cfg in sorted(settings, key=lambda c: statistics.median(times[c])):
        ms = statistics.median(times[cfg])
        print(f"  sm_count {cfg[0]:3d} swizzle {cfg[1]} {cfg[2]}: {ms:.4f} ms  {base / ms:.3f}x  same bits {ok[cfg]}  "
              + " ".join(f"{u:.4f}" for u in times[cfg]), flush=True)
