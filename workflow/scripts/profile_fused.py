"""Profile the fused FFN step on this GPU (not part of the pipeline): where device and host time go.

    python workflow/scripts/profile_fused.py device [T d F]   # torch.profiler over 5 forward + backward steps
    python workflow/scripts/profile_fused.py host [T d F]     # host time per call, then cProfile of 20 steps

Defaults: the 7B-like FFN at 16k tokens (device), the 1.5B-like at 1k tokens (host: GPU work too small to hide
it). Outputs in reference/h200/fused/earlier/ came from this script."""

import cProfile
import pstats
import sys
import time

import torch

from act24.gpubench import ffn_inputs
from act24.kernels.backends import FusedFp8Sm90Backend
from act24.sparsity.ffn import SparseRecipe, sparse_sqrelu_ffn


def main(what: str, t: int | None = None, d: int | None = None, f: int | None = None) -> None:
    t, d, f = (t, d, f) if f else ((16384, 4096, 16512) if what == "device" else (1024, 2048, 8448))
    x, w1, w2, dy = ffn_inputs(t, d, f, 0.95)
    params = [v.clone().requires_grad_() for v in (x, w1, w2)]
    backend, recipe = FusedFp8Sm90Backend(), SparseRecipe(split_multiple=128)

    def step():
        for p in params:
            p.grad = None
        sparse_sqrelu_ffn(*params, recipe, backend).backward(dy)

    def forward():
        with torch.no_grad():
            sparse_sqrelu_ffn(*params, recipe, backend)

    for _ in range(5):
        step()
    torch.cuda.synchronize()
    print(f"T={t} d={d} F={f}, {torch.cuda.get_device_name()}, torch {torch.__version__}")
    if what == "device":
        with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CUDA,
                                                torch.profiler.ProfilerActivity.CPU]) as prof:
            for _ in range(5):
                step()
            torch.cuda.synchronize()
        print(prof.key_averages().table(sort_by="self_cuda_time_total", row_limit=40, max_name_column_width=70))
        return
    for name, fn in (("fwd", forward), ("step", step)):
        start = time.perf_counter()
        for _ in range(20):
            fn()
        host = (time.perf_counter() - start) / 20
        torch.cuda.synchronize()
        print(f"{name}: host {host * 1e3:.2f} ms per call (launch only), with sync "
              f"{(time.perf_counter() - start) / 20 * 1e3:.2f} ms")
    profiler = cProfile.Profile()
    profiler.enable()
    for _ in range(20):
        step()
    torch.cuda.synchronize()
    profiler.disable()
    pstats.Stats(profiler).sort_stats("tottime").print_stats(25)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)


if __name__ == "__main__":
    main(sys.argv[1], *map(int, sys.argv[2:]))
