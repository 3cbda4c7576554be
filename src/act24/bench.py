"""Benchmarks (never timed tests). `step_cost`: the emulated 2:4 training step against the dense step, on
the same model, batch and device, interleaved, median of repetitions."""

from __future__ import annotations

import statistics
import time

import torch

from .config import RunConfig
from .kernels.backends import select_backend
from .model import Transformer
from .train import make_optimizer, resolve_device


def _step(model, optimizer, x, y, device) -> float:
    if device.type == "cuda":
        torch.cuda.synchronize()
    start = time.perf_counter()
    _, loss = model(x, y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - start


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
    times = {"dense": [], "sparse": []}
    for i in range(warmup + repeats):
        for mode in ("dense", "sparse"):  # interleaved, so drifts hit both alike
            model.set_sparse(recipe if mode == "sparse" else None, backend)
            dt = _step(model, optimizer, x, y, device)
            if i >= warmup:
                times[mode].append(dt)
    dense, sparse = statistics.median(times["dense"]), statistics.median(times["sparse"])
    return {"device": str(device), "threads": t.threads, "backend": note, "tokens_per_step": t.batch_size * m.seq_len,
            "d_model": m.d_model, "n_layers": m.n_layers, "ffn": m.ffn, "repeats": repeats,
            "dense_step_s": dense, "sparse_step_s": sparse, "ratio": sparse / dense,
            "torch": torch.__version__}
