"""Benchmarks (never timed tests). `step_cost`: the emulated 2:4 training step against the dense step, on
the same model, batch and device, interleaved, median of repetitions."""

from __future__ import annotations

import statistics

import torch
import torch.utils.benchmark as benchmark

from .config import RunConfig
from .kernels.backends import select_backend
from .model import Transformer
from .train import make_optimizer, resolve_device


def _step(model, optimizer, x, y) -> None:
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def step_cost(cfg: RunConfig, repeats: int = 20, warmup: int = 3) -> dict:
    """Median seconds of a full training step (forward, backward, AdamW) dense and with the 2:4 recipe."""
    m, t, s = cfg.model, cfg.train, cfg.sparse
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = resolve_device(t)
    model = Transformer(m).to(device)
    optimizer = make_optimizer(model, t)
    recipe = s.seeded_recipe(t.seed)
    backend, note = select_backend(s.backend, device)
    gen = torch.Generator().manual_seed(t.seed)
    x = torch.randint(0, m.vocab_size, (t.batch_size, m.seq_len), generator=gen).to(device)
    y = torch.randint(0, m.vocab_size, (t.batch_size, m.seq_len), generator=gen).to(device)
    # torch.utils.benchmark's Timer (it synchronizes CUDA and sets the thread count), one step per measurement,
    # so that dense and sparse rounds interleave and drifts hit both alike (blocked_autorange would not).
    timer = benchmark.Timer("step(model, optimizer, x, y)", num_threads=t.threads,
                            globals={"step": _step, "model": model, "optimizer": optimizer, "x": x, "y": y})
    times = {"dense": [], "sparse": []}
    for i in range(warmup + repeats):
        for mode in ("dense", "sparse"):
            model.set_sparse(recipe if mode == "sparse" else None, backend)
            dt = timer.timeit(1).median
            if i >= warmup:
                times[mode].append(dt)
    dense, sparse = statistics.median(times["dense"]), statistics.median(times["sparse"])
    return {"device": str(device), "threads": t.threads, "backend": note, "tokens_per_step": t.batch_size * m.seq_len,
            "d_model": m.d_model, "n_layers": m.n_layers, "ffn": m.ffn, "repeats": repeats,
            "dense_step_s": dense, "sparse_step_s": sparse, "ratio": sparse / dense,
            "torch": torch.__version__}
