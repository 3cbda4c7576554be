"""Training loop: AdamW, linear warmup + cosine decay, gradient clipping, seeded data order; writes
metrics (JSONL), per-layer FFN activation statistics (CSV) and per-feature densities (NPZ)."""

from __future__ import annotations

import csv
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from .config import RunConfig, TrainConfig
from .data import TokenArray
from .distributed import init_world, shutdown
from .kernels.backends import select_backend
from .layout import CHECKPOINT, DENSITY, METRICS, RESUME, STATS, SUMMARY
from .model import Transformer, parameter_counts
from .sparsity.pattern import token_permutation
from .sparsity.stats import activation_stats, feature_density, record_activations



class NonFiniteLossError(RuntimeError):
    pass


def describe(summary: dict) -> str:
    """One line for logs: the final validation loss, or where the run diverged."""
    if "final_val_loss" not in summary:  # a data-parallel worker: the main process reports
        return f"{summary['name']}: process {summary['rank']} done"
    if summary["final_val_loss"] is None:
        return f"{summary['name']}: diverged at step {summary['diverged_at_step']}"
    return f"{summary['name']}: final validation loss {summary['final_val_loss']:.4f}"


def lr_at(step: int, t: TrainConfig) -> float:
    """Linear warmup to `lr`, then cosine decay to `lr * min_lr_ratio` at the last step."""
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    progress = (step - t.warmup_steps) / max(1, t.steps - t.warmup_steps)
    floor = t.lr * t.min_lr_ratio
    return floor + 0.5 * (t.lr - floor) * (1 + math.cos(math.pi * min(progress, 1.0)))


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only, not on norms' gains (nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


def resolve_device(t: TrainConfig, local_rank: int = 0) -> torch.device:
    if t.device == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("train.device is 'cuda' but no CUDA device is available (set train.device: cpu)")
    return torch.device("cuda", local_rank) if t.device == "cuda" else torch.device("cpu")


def autocast(device: torch.device, precision: str):
    return torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")


@torch.no_grad()
def evaluate(model: Transformer, batches: list[tuple[torch.Tensor, torch.Tensor]]) -> float:
    model.eval()
    losses = [model(x, y)[1].item() for x, y in batches]
    model.train()
    return sum(losses) / len(losses)


@torch.no_grad()
def layer_statistics(model: Transformer, x: torch.Tensor, perm: torch.Tensor,
                     dense_fraction: float) -> tuple[list[dict], np.ndarray]:
    """Per-layer activation statistics and per-feature densities (layers x features) on batch `x`;
    `dense_fraction`: the recipe's 95/5 split (sparse.dense_fraction)."""
    model.eval()
    with record_activations(model.ffn_modules()) as acts:
        model(x)
    model.train()
    rows = [{"layer": i, **activation_stats(a.float(), perm.to(a.device), dense_fraction)} for i, a in enumerate(acts)]
    return rows, torch.stack([feature_density(a) for a in acts]).cpu().numpy()


def save_resume(path: Path, state: dict) -> None:
    """Write a resumable checkpoint atomically: a crash mid-write leaves the previous one intact."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".partial")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_resume(path: Path, cfg: RunConfig) -> dict | None:
    """The resumable checkpoint at `path` if it belongs to this exact run config, else None (said why)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RuntimeError(f"{path}: unreadable resume checkpoint ({type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]}); delete it to train from the start") from exc
    if state.get("config") != cfg.to_dict():
        print(f"{cfg.name}: {path} was written with other settings: training from the start", flush=True)
        return None
    return state


def train(cfg: RunConfig, train_path: str, val_path: str, out_dir: str | Path, progress: bool = True,
          resume_dir: str | Path | None = None) -> dict:
    """Train one model; write its metrics, statistics, checkpoint and summary under `out_dir`.

    With `resume_dir`, every `train.checkpoint_every` steps the whole training state (model, optimizer, data
    order and RNG states, the logs written so far) is saved there atomically, and a later call with the same
    config continues from it: the result is bitwise the same as an uninterrupted run on the CPU. The logs are
    written in `resume_dir` and copied to `out_dir` at the end, so nothing that a workflow manager deletes
    after a failure is needed to resume. The checkpoint is removed once the run has finished."""
    m, t = cfg.model, cfg.train
    world = init_world(t.processes, t.device)
    out = Path(out_dir)
    work = Path(resume_dir) if resume_dir else out
    if world.main:
        out.mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
    resume_path = work / RESUME
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = resolve_device(t, world.local_rank)
    train_data, val_data = TokenArray(train_path, m.seq_len), TokenArray(val_path, m.seq_len)
    model = Transformer(m).to(device)
    stepper = DistributedDataParallel(model) if world.size > 1 else model  # runs the training steps
    optimizer = make_optimizer(model, t)
    data_gen = torch.Generator().manual_seed(t.seed)  # on the CPU: the data order is device-independent
    eval_batches = [(x.to(device), y.to(device)) for x, y in val_data.fixed_batches(t.eval_batches, t.batch_size)]
    stats_x = val_data.fixed_batches(1, t.stats_batch_size)[0][0].to(device)
    perm = token_permutation(stats_x.numel(), seed=t.seed)

    sparse_from, recipe, backend, backend_note = None, None, None, "dense run"
    if cfg.sparse.enabled:
        recipe = cfg.sparse.seeded_recipe(t.seed)
        backend, backend_note = select_backend(cfg.sparse.backend, device)
        sparse_from = cfg.sparse.warmup_steps(t.steps)
        print(f"{cfg.name}: 2:4 sparse FFN from step {sparse_from}; backend {backend_note}", flush=True)

    first_step, diverged_at, val_loss, elapsed = 0, None, math.nan, 0.0
    density_steps, densities, offsets = [], [], {METRICS: 0, STATS: 0}
    state = load_resume(resume_path, cfg) if resume_dir else None
    if state is not None:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        data_gen.set_state(state["data_rng"])
        torch.set_rng_state(state["torch_rng"])
        if device.type == "cuda" and state.get("cuda_rng") is not None:
            torch.cuda.set_rng_state(state["cuda_rng"], device)
        first_step, val_loss, elapsed = state["step"], state["val_loss"], state["elapsed"]
        density_steps, densities, offsets = state["density_steps"], state["densities"], state["offsets"]
        print(f"{cfg.name}: resuming at step {first_step} from {resume_path}", flush=True)
    if world.main:
        for name, size in offsets.items():  # drop whatever was logged after the checkpoint
            with open(work / name, "a+b") as f:
                f.truncate(size)

    start = time.perf_counter() - elapsed
    # Only the main process writes; the others log into the void.
    metrics_path, stats_path = (work / METRICS, work / STATS) if world.main else (os.devnull, os.devnull)
    with open(metrics_path, "a") as metrics_f, open(stats_path, "a", newline="") as stats_f:
        def log(row: dict) -> None:
            metrics_f.write(json.dumps(row) + "\n")
            metrics_f.flush()

        writer = None
        bar = tqdm(range(first_step, t.steps + 1), desc=cfg.name, disable=not (progress and world.main),
                   mininterval=2.0)
        for step in bar:
            tokens = step * t.batch_size * m.seq_len
            last = step == t.steps
            if (world.main and resume_dir and t.checkpoint_every and step % t.checkpoint_every == 0
                    and step > first_step):
                save_resume(resume_path, {
                    "config": cfg.to_dict(), "step": step, "model": model.state_dict(),
                    "optimizer": optimizer.state_dict(), "data_rng": data_gen.get_state(),
                    "torch_rng": torch.get_rng_state(),
                    "cuda_rng": torch.cuda.get_rng_state(device) if device.type == "cuda" else None,
                    "val_loss": val_loss, "elapsed": time.perf_counter() - start,
                    "density_steps": density_steps, "densities": densities,
                    "offsets": {METRICS: metrics_f.tell(), STATS: stats_f.tell()}})
            sparse_now = sparse_from is not None and step >= sparse_from
            if sparse_now and model.ffn_modules()[0].sparse is None:
                model.set_sparse(recipe, backend)
            if world.main and (step % t.stats_every == 0 or last):
                with autocast(device, t.precision):
                    rows, density = layer_statistics(model, stats_x, perm, cfg.sparse.recipe.dense_fraction)
                writer = writer or csv.DictWriter(stats_f, fieldnames=["step", "tokens", *rows[0].keys()])
                if stats_f.tell() == 0:
                    writer.writeheader()
                writer.writerows({"step": step, "tokens": tokens, **r} for r in rows)
                stats_f.flush()
                density_steps.append(step)
                densities.append(density)
            if world.main and (step % t.eval_every == 0 or last):
                with autocast(device, t.precision):
                    val_loss = evaluate(model, eval_batches)
                log({"split": "val", "step": step, "tokens": tokens, "loss": val_loss, "sparse": sparse_now,
                     "time": time.perf_counter() - start})
            if last:
                break
            lr = lr_at(step, t)
            for group in optimizer.param_groups:
                group["lr"] = lr
            x, y = (world.slice(b) for b in train_data.batch(t.batch_size, data_gen))  # same global batch everywhere
            with autocast(device, t.precision):
                _, loss = stepper(x.to(device), y.to(device))
            loss_value = world.mean(loss.item(), device)
            if not math.isfinite(loss_value):
                if t.on_nonfinite == "error":
                    kept = f"; the last good checkpoint is kept in {resume_path}" if resume_path.exists() else ""
                    raise NonFiniteLossError(f"{cfg.name}: loss is {loss_value} at step {step}{kept} "
                                             "(train.on_nonfinite: stop records such a run as diverged)")
                print(f"{cfg.name}: loss is {loss_value} at step {step}: stopped, recorded as diverged", flush=True)
                diverged_at, val_loss = step, math.nan
                log({"split": "train", "step": step, "tokens": tokens, "loss": None, "diverged": True,
                     "time": time.perf_counter() - start})
                break
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            grad_norm = torch.nn.utils.clip_grad_norm_(model.parameters(), t.grad_clip)
            optimizer.step()
            log({"split": "train", "step": step, "tokens": tokens + t.batch_size * m.seq_len,
                 "loss": loss_value, "lr": lr, "grad_norm": float(grad_norm), "sparse": sparse_now,
                 "time": time.perf_counter() - start})
            bar.set_postfix(loss=f"{loss_value:.3f}", refresh=False)

    shutdown(world)
    if not world.main:
        return {"name": cfg.name, "rank": world.rank}
    if work != out:
        for name in (METRICS, STATS):
            shutil.copyfile(work / name, out / name)
    np.savez_compressed(out / DENSITY, steps=np.asarray(density_steps), density=np.stack(densities))
    torch.save({"config": cfg.to_dict(), "model": model.state_dict()}, out / CHECKPOINT)
    summary = {
        "name": cfg.name,
        "final_val_loss": None if math.isnan(val_loss) else val_loss,  # null: diverged
        "diverged_at_step": diverged_at,
        "steps": t.steps,
        "tokens": t.steps * t.batch_size * m.seq_len,
        "train_seconds": time.perf_counter() - start,
        "resumed_from_step": first_step or None,
        "processes": world.size,
        **parameter_counts(m),
        "config": cfg.to_dict(),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "sparse_from_step": sparse_from,
        "sparse_backend": backend_note,
        "versions": {"torch": torch.__version__},
    }
    (out / SUMMARY).write_text(json.dumps(summary, indent=2))
    if resume_dir:
        resume_path.unlink(missing_ok=True)  # finished: a forced rerun starts from scratch
    return summary
