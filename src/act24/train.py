"""Training loop: AdamW, linear warmup + cosine decay, gradient clipping, seeded data order; writes
metrics (JSONL), per-layer FFN activation statistics (CSV) and per-feature densities (NPZ)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch.nn.parallel import DistributedDataParallel

from . import __version__
from .config import RunConfig, TrainConfig, parameter_counts
from .data import TokenArray
from .distributed import World, init_world, shutdown
from .io import SetupError, git_commit, write_atomic, write_json
from .kernels.backends import Backend, select_backend
from .layout import CHECKPOINT, DENSITY, METRICS, RESUME, STATS, SUMMARY
from .model import Transformer
from .progress import TrainingLog
from .sparsity.pattern import token_permutation
from .sparsity.recipe import SparseRecipe
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


def make_scheduler(optimizer: torch.optim.Optimizer, t: TrainConfig) -> torch.optim.lr_scheduler.LambdaLR:
    """The schedule of `lr_at` as a torch scheduler (its state travels in the resume checkpoint).
    SequentialLR(LinearLR, CosineAnnealingLR) gives the same rates to 1e-13 (measured, 20k steps) but updates them
    recursively and needs a special case for a warmup as long as the run; LambdaLR keeps the closed form."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: lr_at(step, t) / t.lr)


def make_optimizer(model: torch.nn.Module, t: TrainConfig) -> torch.optim.AdamW:
    # Weight decay on matrices only, not on norms' gains (nanoGPT).
    params = [p for p in model.parameters() if p.requires_grad]
    decay = [p for p in params if p.dim() >= 2]
    no_decay = [p for p in params if p.dim() < 2]
    groups = [{"params": decay, "weight_decay": t.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=t.lr, betas=(t.beta1, t.beta2))


def resolve_device(t: TrainConfig, local_rank: int = 0) -> torch.device:
    if t.device == "cuda" and not torch.cuda.is_available():
        raise SetupError("train.device is 'cuda' but no CUDA device is available (set train.device: cpu)")
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
    # Eagerly: forward hooks on modules inside a compiled block are not seen by its graph.
    with record_activations(model.ffn_modules()) as acts, torch.compiler.set_stance("force_eager"):
        model(x)
    model.train()
    rows = [{"layer": i, **activation_stats(a.float(), perm.to(a.device), dense_fraction)} for i, a in enumerate(acts)]
    return rows, torch.stack([feature_density(a) for a in acts]).cpu().numpy()


def serialized(write) -> bytes:
    """What `write(file)` writes, in memory: io.write_atomic then writes it, so that a full disk fails as the OS says
    it (torch.save to a file reports a position mismatch instead)."""
    buffer = io.BytesIO()
    write(buffer)
    return buffer.getvalue()


def save_resume(path: Path, state: dict) -> None:
    """Write a resumable checkpoint atomically (io.write_atomic: a failure names the path and the cause)."""
    write_atomic(path, serialized(lambda f: torch.save(state, f)), "the resume checkpoint")


def load_resume(path: Path, cfg: RunConfig) -> dict | None:
    """The resumable checkpoint at `path` if it belongs to this run config (up to settings that do not change
    results), else None (said why)."""
    if not path.exists():
        return None
    try:
        state = torch.load(path, map_location="cpu", weights_only=False)
    except Exception as exc:  # noqa: BLE001 - any unreadable file gets the same clear message
        raise RuntimeError(f"{path}: unreadable resume checkpoint ({type(exc).__name__}: "
                           f"{(str(exc).splitlines() or [''])[0]}); delete it to train from the start") from exc
    if state.get("results_config") != cfg.to_dict(neutral=False):  # threads, say, need not match
        print(f"{cfg.name}: {path} was written with other settings: training from the start", flush=True)
        return None
    return state


@dataclass
class Run:
    """One training run's objects and progress (what a resumable checkpoint restores)."""

    cfg: RunConfig
    world: World
    device: torch.device
    model: Transformer
    stepper: torch.nn.Module  # the model, wrapped for data parallelism when there are several processes
    optimizer: torch.optim.AdamW
    scheduler: torch.optim.lr_scheduler.LambdaLR
    data_gen: torch.Generator
    train_data: TokenArray
    eval_batches: list
    stats_x: torch.Tensor
    perm: torch.Tensor
    out: Path
    work: Path  # where the logs are written while training (the resume folder, if any)
    resume_path: Path | None
    recipe: SparseRecipe | None = None
    backend: Backend | None = None
    backend_note: str = "dense run"
    sparse_from: int | None = None
    first_step: int = 0
    diverged_at: int | None = None
    val_loss: float = math.nan
    elapsed: float = 0.0
    density_steps: list = field(default_factory=list)
    densities: list = field(default_factory=list)
    offsets: dict = field(default_factory=lambda: {METRICS: 0, STATS: 0})


def start_run(cfg: RunConfig, train_path: str, val_path: str, out_dir: str | Path,
              resume_dir: str | Path | None) -> Run:
    """Seed, build the model, optimizer, data and the sparse backend (in this order: it fixes the RNG streams)."""
    m, t = cfg.model, cfg.train
    world = init_world(t.processes, t.device)
    out = Path(out_dir)
    work = Path(resume_dir) if resume_dir else out
    if world.main:
        for folder in (out, work):  # before any training: a folder it cannot write fails now, by name
            folder.mkdir(parents=True, exist_ok=True)
            if not os.access(folder, os.W_OK):
                raise PermissionError(f"{folder}: cannot write here (the run's outputs and checkpoints go there)")
    torch.set_num_threads(t.threads)
    torch.manual_seed(t.seed)
    device = resolve_device(t, world.local_rank)
    train_data, val_data = (TokenArray(p, m.seq_len, m.vocab_size) for p in (train_path, val_path))
    model = Transformer(m).to(device)
    if t.compile:
        model.compile_blocks()
    optimizer = make_optimizer(model, t)
    eval_batches = [(x.to(device), y.to(device)) for x, y in val_data.fixed_batches(t.eval_batches, t.batch_size)]
    stats_x = val_data.fixed_batches(1, t.stats_batch_size)[0][0].to(device)
    run = Run(cfg=cfg, world=world, device=device, model=model,
              stepper=DistributedDataParallel(model) if world.size > 1 else model, optimizer=optimizer,
              scheduler=make_scheduler(optimizer, t),
              data_gen=torch.Generator().manual_seed(t.seed),  # on the CPU: the data order is device-independent
              train_data=train_data, eval_batches=eval_batches, stats_x=stats_x,
              perm=token_permutation(stats_x.numel(), seed=t.seed), out=out, work=work,
              resume_path=work / RESUME if resume_dir else None)
    if cfg.sparse.enabled:
        run.recipe = cfg.sparse.seeded_recipe(t.seed)
        run.backend, run.backend_note = select_backend(cfg.sparse.backend, device)
        run.sparse_from = cfg.sparse.warmup_steps(t.steps)
        print(f"{cfg.name}: 2:4 sparse FFN from step {run.sparse_from}; backend {run.backend_note}", flush=True)
    if run.resume_path and (state := load_resume(run.resume_path, cfg)) is not None:
        restore(run, state)
    if world.main:
        for name, size in run.offsets.items():  # drop whatever was logged after the checkpoint
            with open(work / name, "a+b") as f:
                f.truncate(size)
    return run


def restore(run: Run, state: dict) -> None:
    run.model.load_state_dict(state["model"])
    run.optimizer.load_state_dict(state["optimizer"])
    run.scheduler.load_state_dict(state["scheduler"])
    run.data_gen.set_state(state["data_rng"])
    torch.set_rng_state(state["torch_rng"])
    if run.device.type == "cuda" and state.get("cuda_rng") is not None:
        torch.cuda.set_rng_state(state["cuda_rng"], run.device)
    run.first_step, run.val_loss, run.elapsed = state["step"], state["val_loss"], state["elapsed"]
    run.density_steps, run.densities, run.offsets = state["density_steps"], state["densities"], state["offsets"]
    print(f"{run.cfg.name}: resuming at step {run.first_step} from {run.resume_path}", flush=True)


def checkpoint(run: Run, step: int, elapsed: float, offsets: dict) -> None:
    """The whole training state at the start of `step`, with the logs' sizes so far (`offsets`)."""
    save_resume(run.resume_path, {
        "results_config": run.cfg.to_dict(neutral=False), "step": step, "model": run.model.state_dict(),
        "optimizer": run.optimizer.state_dict(), "scheduler": run.scheduler.state_dict(),
        "data_rng": run.data_gen.get_state(),
        "torch_rng": torch.get_rng_state(),
        "cuda_rng": torch.cuda.get_rng_state(run.device) if run.device.type == "cuda" else None,
        "val_loss": run.val_loss, "elapsed": elapsed, "density_steps": run.density_steps,
        "densities": run.densities, "offsets": offsets})


def record_statistics(run: Run, step: int, tokens: int, stats_f) -> None:
    """Per-layer activation statistics (a CSV row per layer) and per-feature densities on the fixed batch."""
    with autocast(run.device, run.cfg.train.precision):
        rows, density = layer_statistics(run.model, run.stats_x, run.perm, run.cfg.sparse.recipe.dense_fraction)
    writer = csv.DictWriter(stats_f, fieldnames=["step", "tokens", *rows[0].keys()])
    if stats_f.tell() == 0:
        writer.writeheader()
    writer.writerows({"step": step, "tokens": tokens, **r} for r in rows)
    stats_f.flush()
    run.density_steps.append(step)
    run.densities.append(density)


def optimizer_step(run: Run, step: int) -> tuple[float, float, float]:
    """One step at the scheduled learning rate: (loss, lr, gradient norm); the loss is non-finite when it is
    (nothing is updated then)."""
    t = run.cfg.train
    lr = run.scheduler.get_last_lr()[0]
    x, y = (run.world.slice(b) for b in run.train_data.batch(t.batch_size, run.data_gen))  # same global batch
    with autocast(run.device, t.precision):
        _, loss = run.stepper(x.to(run.device), y.to(run.device))
    loss_value = run.world.mean(loss.item(), run.device)
    if not math.isfinite(loss_value):
        return loss_value, lr, math.nan
    run.optimizer.zero_grad(set_to_none=True)
    loss.backward()
    grad_norm = torch.nn.utils.clip_grad_norm_(run.model.parameters(), t.grad_clip)
    run.optimizer.step()
    run.scheduler.step()
    return loss_value, lr, float(grad_norm)


def stop_on_nonfinite(run: Run, step: int, loss_value: float) -> None:
    """Raise (train.on_nonfinite: error), or record the run as diverged at `step` (stop)."""
    if run.cfg.train.on_nonfinite == "error":
        kept = (f"; the last good checkpoint is kept in {run.resume_path}"
                if run.resume_path and run.resume_path.exists() else "")
        raise NonFiniteLossError(f"{run.cfg.name}: loss is {loss_value} at step {step}{kept} "
                                 "(train.on_nonfinite: stop records such a run as diverged)")
    print(f"{run.cfg.name}: loss is {loss_value} at step {step}: stopped, recorded as diverged", flush=True)
    run.diverged_at, run.val_loss = step, math.nan


def train(cfg: RunConfig, train_path: str, val_path: str, out_dir: str | Path, progress: bool = True,
          resume_dir: str | Path | None = None, keep_resume: bool = False) -> dict:
    """Train one model; write its metrics, statistics, checkpoint and summary under `out_dir`.

    With `resume_dir`, every `train.checkpoint_every` steps the whole training state (model, optimizer, data
    order and RNG states, the logs written so far) is saved there atomically, and a later call with the same
    config continues from it: the result is bitwise the same as an uninterrupted run on the CPU. The logs are
    written in `resume_dir` and copied to `out_dir` at the end, so nothing that a workflow manager deletes
    after a failure is needed to resume. A last checkpoint is taken after the last step; it is removed once the
    run has finished unless `keep_resume` (a workflow manager that records the outputs only after this returns
    removes it itself, so that a kill in between loses nothing)."""
    run = start_run(cfg, train_path, val_path, out_dir, resume_dir)
    m, t, main = cfg.model, cfg.train, run.world.main
    start = time.perf_counter() - run.elapsed
    # Only the main process writes; the others log into the void.
    metrics_path, stats_path = (run.work / METRICS, run.work / STATS) if main else (os.devnull, os.devnull)
    with open(metrics_path, "a") as metrics_f, open(stats_path, "a", newline="") as stats_f:
        def log(row: dict) -> None:
            metrics_f.write(json.dumps({**row, "time": time.perf_counter() - start}) + "\n")
            metrics_f.flush()

        tensorboard_dir = run.out / "tensorboard" if t.tensorboard and main else None
        report = TrainingLog(cfg.name, run.first_step, t.steps, t.batch_size * m.seq_len, t.log_every,
                             enabled=progress and main, tensorboard_dir=tensorboard_dir)
        for step in range(run.first_step, t.steps + 1):
            tokens, last = step * t.batch_size * m.seq_len, step == t.steps
            # The last checkpoint is taken after the last step: a kill before the outputs are in place loses nothing.
            if main and run.resume_path and t.checkpoint_every and (step % t.checkpoint_every == 0 or last) \
                    and step > run.first_step:
                checkpoint(run, step, time.perf_counter() - start, {METRICS: metrics_f.tell(), STATS: stats_f.tell()})
            sparse_now = run.sparse_from is not None and step >= run.sparse_from
            if sparse_now and run.model.ffn_modules()[0].sparse is None:
                run.model.set_sparse(run.recipe, run.backend)
            if main and (step % t.stats_every == 0 or last):
                record_statistics(run, step, tokens, stats_f)
            if main and (step % t.eval_every == 0 or last):
                with autocast(run.device, t.precision):
                    run.val_loss = evaluate(run.model, run.eval_batches)
                log({"split": "val", "step": step, "tokens": tokens, "loss": run.val_loss, "sparse": sparse_now})
                report.validation(step, run.val_loss)
            if last:
                break
            loss_value, lr, grad_norm = optimizer_step(run, step)
            if not math.isfinite(loss_value):
                stop_on_nonfinite(run, step, loss_value)
                log({"split": "train", "step": step, "tokens": tokens, "loss": None, "diverged": True})
                break
            log({"split": "train", "step": step, "tokens": tokens + t.batch_size * m.seq_len, "loss": loss_value,
                 "lr": lr, "grad_norm": grad_norm, "sparse": sparse_now})
            report.train_step(step, loss_value, lr, grad_norm)
        report.close()
    shutdown(run.world)
    if not main:
        return {"name": cfg.name, "rank": run.world.rank}
    summary = finish(run, time.perf_counter() - start)
    if run.resume_path and not keep_resume:
        run.resume_path.unlink(missing_ok=True)  # finished: a rerun starts from scratch
    return summary


def finish(run: Run, seconds: float) -> dict:
    """Copy the logs to the run folder, write the densities, the model and the summary (last: it marks the run
    finished)."""
    cfg, m, out = run.cfg, run.cfg.model, run.out
    if run.work != out:
        for name in (METRICS, STATS):
            shutil.copyfile(run.work / name, out / name)
    density = {"steps": np.asarray(run.density_steps), "density": np.stack(run.densities)}
    write_atomic(out / DENSITY, serialized(lambda f: np.savez_compressed(f, **density)), "the feature densities")
    model = {"config": cfg.to_dict(), "model": run.model.state_dict()}
    write_atomic(out / CHECKPOINT, serialized(lambda f: torch.save(model, f)), "the model")
    summary = {
        "name": cfg.name,
        "final_val_loss": None if math.isnan(run.val_loss) else run.val_loss,  # null: diverged
        "diverged_at_step": run.diverged_at,
        "steps": cfg.train.steps,
        "tokens": cfg.train.steps * cfg.train.batch_size * m.seq_len,
        "train_seconds": seconds,
        "tokens_per_second": (run.diverged_at if run.diverged_at is not None else cfg.train.steps)
        * cfg.train.batch_size * m.seq_len / seconds if seconds > 0 else None,
        "resumed_from_step": run.first_step or None,
        "processes": run.world.size,
        **parameter_counts(m),
        "config": cfg.to_dict(),
        "device": torch.cuda.get_device_name(run.device) if run.device.type == "cuda" else "cpu",
        # this process's peak (runs sharing a GPU each report their own): what sizes how many fit together
        "peak_gpu_memory_gib": torch.cuda.max_memory_allocated(run.device) / 2**30 if run.device.type == "cuda"
        else None,
        "sparse_from_step": run.sparse_from,
        "sparse_backend": run.backend_note,
        "sparse_gemms": run.backend.gemm_choices() if run.backend is not None else {},  # per-shape kernel choices
        "versions": {"torch": torch.__version__, "act24": __version__, "git_commit": git_commit()},
    }
    write_json(out / SUMMARY, summary)
    return summary
