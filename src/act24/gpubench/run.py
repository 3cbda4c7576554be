"""Run the benchmarks of one FFN shape and write its tables; combine the shapes' tables into the derived ones."""

from __future__ import annotations

import concurrent.futures as cf
import dataclasses
import datetime
import multiprocessing
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ..io import environment_info, read_json, reading, write_json
from ..layout import GPU_DERIVED_TABLES, GPU_SHAPE_TABLES
from . import tables
from .config import GpuBenchConfig
from .ffn import ffn_rows
from .gemm import gemm_rows, split_gemm_rows
from .harness import ceilings, is_gemm, label, nvml_status, trained_zero_fracs
from .sparsify import sparsify_rows

SHAPE_TABLES, DERIVED_TABLES = GPU_SHAPE_TABLES, GPU_DERIVED_TABLES
TABLES = SHAPE_TABLES + DERIVED_TABLES
NO_CUDA = "skipped: no CUDA device"


def run_shape(cfg: GpuBenchConfig, shape: str, process: int = 0,
              progress: Callable[[str], None] = print) -> dict[str, list[dict]]:
    """Every table of one FFN shape over the token sweep (and the extra sparsity levels at extra_tokens), as one
    benchmark process: `process` seeds its inputs and its rounds' orders, and every row carries it."""
    if not torch.cuda.is_available():
        raise RuntimeError("no CUDA device")
    from tqdm import tqdm

    d, f = cfg.shapes[shape]
    ceil = ceilings(cfg)
    progress(f"process {process}: ceilings {ceil}")
    out: dict[str, list[dict]] = {name: [] for name in SHAPE_TABLES}
    out["ceilings"] = [ceil]
    points = [(t, cfg.sweep_zero_frac) for t in cfg.tokens] + [(cfg.extra_tokens, z) for z in cfg.extra_zero_fracs]
    if cfg.trained_profile:
        points.append((cfg.extra_tokens, trained_zero_fracs(cfg, f)))
    for t, z in tqdm(points, desc=f"{shape} (d={d}, F={f}), process {process}", unit="point"):
        progress(f"{shape} T={t} {label(z)}")
        for name, rows in ffn_rows(cfg, t, d, f, z, shape, seed=process).items():
            out[name] += rows
        split, split_rounds = split_gemm_rows(cfg, t, d, f, z, shape, seed=process)
        out["split_gemm"] += split
        out["split_gemm_rounds"] += split_rounds
        if t == cfg.extra_tokens:
            out["gemm"] += gemm_rows(cfg, t, d, f, z, shape, seed=process)
            out["sparsify"] += [{**r, "shape": shape} for r in sparsify_rows(cfg, t, d, f, z, ceil["copy_GBps"])]
        torch.cuda.empty_cache()
    return {name: [{**row, "process": process} for row in rows] for name, rows in out.items()}


def in_fresh_process(fn: Callable, *args):
    """`fn(*args)` in a new Python process (spawned: CUDA cannot be forked), for callers that run several benchmark
    processes in a row without a workflow manager: each re-decides every per-process choice (cuSPARSELt's
    algorithm search, `auto`'s GEMM, compilation, the allocator's state)."""
    with cf.ProcessPoolExecutor(1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(fn, *args).result()


def sidecar(cfg, status: str) -> dict:
    """What a benchmark writes beside its tables: date, settings (a config dataclass), versions, status."""
    side = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
            "config": dataclasses.asdict(cfg), "environment": environment_info(), "status": status}
    if status == "ok":
        side["environment"]["nvml"] = nvml_status()  # whether the rounds carry the GPU's clock, power, temperature
        side["environment"]["cusparselt"] = torch.backends.cusparselt.version()
        side["environment"]["triton"] = __import__("triton").__version__
    return side


def write_shape(out_dir, cfg: GpuBenchConfig, shape: str, process: int = 0) -> None:
    """One benchmark process's tables of one shape as CSVs (every row with its process) plus `bench.json`
    (settings, versions, date). The workflow runs each (shape, process) as a job of its own: independent
    processes, each fitting a time limit. Without a CUDA device every table is one row saying so, and the sidecar
    records why."""
    if shape not in cfg.shapes:
        raise ValueError(f"gpu_bench.shapes has no shape {shape!r}; configured: {list(cfg.shapes)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    if torch.cuda.is_available():
        results, status = run_shape(cfg, shape, process), "ok"
    else:
        results, status = {name: [{"status": NO_CUDA}] for name in SHAPE_TABLES}, NO_CUDA
    for name in SHAPE_TABLES:
        pd.DataFrame(results[name]).to_csv(out / f"{name}.csv", index=False)
    write_json(out / "bench.json", {**sidecar(cfg, status), "shape": shape, "process": process})


def _read_table(path: Path) -> pd.DataFrame:
    """A table as written by `write_shape`; an empty one (e.g. no GEMM rows when no point has extra_tokens tokens) has
    no columns at all."""
    with reading(path, "benchmark table"):
        try:
            return pd.read_csv(path)
        except pd.errors.EmptyDataError:
            return pd.DataFrame()


def combine(shape_dirs: dict[str, str | Path], out_dir) -> None:
    """All benchmark jobs' tables (`shape_dirs`: a label per job, e.g. "7B-like/process0" -> its folder) in one CSV
    each, plus the derived tables (speedups with intervals and bounds, stages, sparsify share, split speedups) and
    one sidecar: status "ok" when any job ran, else the jobs' own status."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sides = {shape: read_json(Path(p) / "bench.json") for shape, p in shape_dirs.items()}
    ran = [s for s, side in sides.items() if side["status"] == "ok"]
    frames = {}
    for name in SHAPE_TABLES:
        parts = [_read_table(Path(shape_dirs[s]) / f"{name}.csv") for s in ran]
        parts = [p for p in parts if not p.empty]
        frames[name] = pd.concat(parts, ignore_index=True) if parts else pd.DataFrame()
    if ran:
        if not frames["breakdown"].empty:  # the classification the tables use, beside each kernel
            frames["breakdown"]["gemm"] = frames["breakdown"]["kernel"].map(is_gemm)
        records = {name: frames[name].to_dict("records") for name in SHAPE_TABLES}
        derived = {"speedups": tables.speedups(records["ffn"], records["ffn_rounds"], records["breakdown"]),
                   "stages": tables.stages(records["ffn"], records["breakdown"]),
                   "sparsify_share": tables.sparsify_share(records["sparsify"], records["ffn"]),
                   "split_speedups": tables.split_speedups(records["split_gemm"], records["split_gemm_rounds"])}
        side = {**sides[ran[0]], "status": "ok"}
    else:
        status = next(iter(sides.values()))["status"] if sides else NO_CUDA
        frames = {name: pd.DataFrame([{"status": status}]) for name in SHAPE_TABLES}
        derived = {name: [{"status": status}] for name in DERIVED_TABLES}
        side = {**(next(iter(sides.values())) if sides else {}), "status": status}
    side.pop("shape", None)
    side.pop("process", None)
    side["jobs"] = {s: {"status": sides[s]["status"], "date": sides[s].get("date")} for s in sides}
    for name in SHAPE_TABLES:
        frames[name].to_csv(out / f"{name}.csv", index=False)
    for name in DERIVED_TABLES:
        pd.DataFrame(derived[name]).to_csv(out / f"{name}.csv", index=False)
    write_json(out / "bench.json", side)
