"""Data-parallel training (DistributedDataParallel), one process per device, launched by torchrun.

Every process draws the same global batch (same seed, same data order) and trains on its own slice of it;
DDP averages the gradients, so one step equals a single-process step on the whole batch (up to floating-point
summation order). Only the main process evaluates and writes files.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist

from .io import SetupError, read_json
from .layout import SUMMARY


@dataclass(frozen=True)
class World:
    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        return self.rank == 0

    def slice(self, x: torch.Tensor) -> torch.Tensor:
        """This process's share of a global batch (rows rank*B/size ... (rank+1)*B/size)."""
        per = x.shape[0] // self.size
        return x[self.rank * per:(self.rank + 1) * per]

    def mean(self, value: float, device: torch.device) -> float:
        """The mean of `value` over all processes (the loss of the global batch)."""
        if self.size == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return float(t.item()) / self.size


def init_world(processes: int, device_type: str) -> World:
    """Join the process group torchrun set up; check that it has `processes` members."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    if size != processes:
        raise SetupError(f"train.processes is {processes} but this process is 1 of {size}: launch it with "
                           f"`{' '.join(launch_prefix(processes))} ...` (the workflow's train rule does)")
    if size == 1:
        return World()
    dist.init_process_group("nccl" if device_type == "cuda" else "gloo")
    return World(dist.get_rank(), size, int(os.environ.get("LOCAL_RANK", "0")))


def shutdown(world: World) -> None:
    if world.size > 1:
        dist.barrier()
        dist.destroy_process_group()


def launch_prefix(processes: int) -> list[str]:
    """The torchrun command (as a module of this interpreter) for `processes` processes on this machine."""
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]


def train_data_parallel(cfg, train_path: str, val_path: str, out_dir: str, resume_dir: str) -> dict:
    """Run act24.train.train in `cfg.train.processes` processes under torchrun (output to this process's
    stdout / stderr, e.g. a Snakemake log) and return the run's summary."""
    Path(resume_dir).mkdir(parents=True, exist_ok=True)
    run_json = Path(resume_dir) / "run.json"
    run_json.write_text(json.dumps(cfg.to_dict()))
    cmd = [*launch_prefix(cfg.train.processes), "-m", "act24.cli", "train", "--config", str(run_json),
           "--train-tokens", str(train_path), "--val-tokens", str(val_path), "--out", str(out_dir),
           "--resume-dir", str(resume_dir), "--keep-resume"]  # rank 0 reports progress
    print("launching:", " ".join(cmd), flush=True)
    proc = subprocess.run(cmd, stdout=sys.stdout, stderr=sys.stderr)
    if proc.returncode:
        raise RuntimeError(f"{cfg.name}: data-parallel training exited with {proc.returncode} (see the log above)")
    return read_json(Path(out_dir) / SUMMARY)
