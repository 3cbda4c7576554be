"""A whole-model training step (forward, backward, AdamW step) of this project's Transformer at a model family's
width, with the FFNs dense or 2:4 and the rest of the model unchanged: the speedup a training run would see.

Variants, each a fresh model from the same seed on the same batch, timed in interleaved rounds:
- `bf16, dense FFN`: the whole model in bf16 autocast (a change of precision against the others, not of sparsity);
- `FP8 dense FFN`: the FFNs dense in FP8 on the fused kernels (custom ops), everything else bf16;
- `FP8 2:4 FFN`: the FFNs with the paper's 2:4 recipe on the fused kernels (custom ops), everything else bf16.
With `compile`, every block is compiled (torch.compile); the FFN custom ops stay whole inside the graph.
"""

from __future__ import annotations

import functools
import math
import random
import statistics
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import torch

from ..config import ModelConfig, ffn_width
from ..ffn.fused import fused_ffn_op, recipe_spec
from ..intervals import nested_ratio_ci
from ..model import Transformer
from ..sparsity.recipe import SparseRecipe
from .config import ModelStepConfig
from .harness import event_ms, gpu_state
from .tables import FUSED_PATHS, by_process

BF16, FP8_DENSE = "bf16, dense FFN", "FP8 dense FFN (fused kernels)"
FP8_24 = {name: "FP8 2:4 FFN " + label.removeprefix("2:4 ") for name, label in FUSED_PATHS.items()}  # per fused GEMM
RATIOS = {"vs_fp8_dense": FP8_DENSE, "vs_bf16_change_of_precision": BF16}  # column -> the variant it divides


def variants(recipe: SparseRecipe) -> dict[str, Callable | None]:
    """Variant name -> the FFN kernel of its model (None: the model's own bf16 FFN): the dense FP8 FFN and one
    2:4 FFN per fused backend (its sparse GEMM)."""
    spec = recipe_spec(recipe)
    return {BF16: None, FP8_DENSE: fused_ffn_op,
            **{label: functools.partial(fused_ffn_op, spec=spec, backend=name) for name, label in FP8_24.items()}}


def train_step(model: Transformer, opt: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = model(inputs, targets)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def _build(cfg: ModelStepConfig, mcfg: ModelConfig, kernel, inputs, targets):
    """A fresh model from seed 0 with the FFN `kernel`, compiled per block, and its warm-up losses."""
    torch.manual_seed(0)
    model = Transformer(mcfg).cuda().train()
    model.set_ffn_kernel(kernel)
    if cfg.compile:
        for block in model.blocks:
            block.compile()
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
    losses = [float(train_step(model, opt, inputs, targets)) for _ in range(cfg.warmup_steps)]
    return model, opt, losses


def _time_depth(cfg: ModelStepConfig, width: str, d: int, heads: int, layers: int, process: int,
                progress: Callable[[str], None]) -> tuple[list[dict], list[dict]]:
    """Every variant at one width and depth: status rows (the check: the first step's loss finite and within 2% of
    the bf16 model's on the same weights and batch) and one record per variant and round."""
    recipe = SparseRecipe(dense_fraction=cfg.dense_fraction, split_multiple=cfg.split_multiple)
    mcfg = ModelConfig(vocab_size=cfg.vocab_size, d_model=d, n_layers=layers, n_heads=heads, seq_len=cfg.seq_len,
                       ffn="sqrelu", ffn_multiple_of=128)
    base = {"width": width, "d_model": d, "F": ffn_width(mcfg), "n_layers": layers, "seq_len": cfg.seq_len,
            "tokens": cfg.tokens, "compiled": cfg.compile, "process": process}
    g = torch.Generator(device="cuda").manual_seed(process)
    batch = torch.randint(cfg.vocab_size, (cfg.tokens // cfg.seq_len, cfg.seq_len + 1), device="cuda", generator=g)
    inputs, targets = batch[:, :-1], batch[:, 1:]
    rows, runs = {}, {}
    for name, kernel in variants(recipe).items():
        progress(f"model step {width}, {layers} layers: {name}")
        try:
            model, opt, losses = _build(cfg, mcfg, kernel, inputs, targets)
        except Exception as exc:  # noqa: BLE001 - a failing variant is a row to report
            rows[name] = {**base, "variant": name, "status": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
            continue
        rows[name] = {**base, "variant": name, "status": "ok", "loss_step0": losses[0], "loss_last_warmup": losses[-1]}
        runs[name] = (model, opt)
    ref = rows.get(BF16, {}).get("loss_step0")
    for name, r in rows.items():
        if r["status"] == "ok" and not (math.isfinite(r["loss_step0"]) and ref is not None
                                        and abs(r["loss_step0"] - ref) <= 0.02 * ref):
            r["status"] = f"incorrect: first loss {r['loss_step0']:.4f} against the bf16 model's {ref}"
            runs.pop(name, None)
    order = random.Random(process)
    records = []
    for rnd in range(cfg.rounds):
        for position, name in enumerate(order.sample(list(runs), len(runs))):
            model, opt = runs[name]
            ms = event_ms(lambda: train_step(model, opt, inputs, targets), calls=cfg.steps_per_round)
            records.append({**base, "variant": name, "round": rnd, "position": position, "ms": ms, **gpu_state()})
    del runs
    torch.cuda.empty_cache()
    return list(rows.values()), records


def full_depth_ms(short: float, long: float, short_layers: int, long_layers: int, depth: int) -> tuple[float, ...]:
    """(per layer, fixed, at `depth`) ms of a step timed at two depths: the cost grows by the same amount per layer,
    and the rest (embedding, head, loss, optimizer for those) is fixed."""
    per_layer = (long - short) / (long_layers - short_layers)
    fixed = short - short_layers * per_layer
    return per_layer, fixed, fixed + depth * per_layer


def model_step_table(rows: list[dict], records: list[dict], cfg: ModelStepConfig) -> list[dict]:
    """One row per width, depth and variant: status, the median step time over every process's rounds, tokens/s
    and the speedups against the FP8 dense-FFN model (same precision) and the bf16 model (labelled as such), with
    95% intervals over the processes (rounds nested). Then, per width with a `full_depth`, the same at that depth,
    estimated round by round (`full_depth_ms`) from the two timed depths."""
    status = pd.DataFrame(rows)
    times = pd.DataFrame(records)
    ok = status[status["status"] == "ok"].groupby(["width", "n_layers", "variant"])["status"].count()
    every = status.groupby(["width", "n_layers", "variant"])["status"].count()
    passed = {k for k in ok.index if ok[k] == every[k]}  # ok in every process
    out = []
    for (width, layers), g in status.groupby(["width", "n_layers"], sort=False):
        sel = times[(times["width"] == width) & (times["n_layers"] == layers)] if len(times) else times
        first = g.drop_duplicates("variant").set_index("variant")
        series = {v: by_process(sel, "variant", v) for v in first.index if (width, layers, v) in passed}
        for v, r in first.iterrows():
            out.append(_step_row(r.to_dict() | {"variant": v}, series, cfg.tokens))
    for width, depth in cfg.full_depth.items():
        full = _full_depth_series(times, width, cfg, depth, passed) if len(times) else {}
        if full:
            base = {"width": width, "n_layers": depth, "tokens": cfg.tokens, "status": "ok",
                    "estimate": f"from {cfg.short_layers} and {cfg.n_layers} layers, round by round"}
            out += [_step_row(base | {"variant": v}, full, cfg.tokens) for v in full]
    return out


def _step_row(row: dict, series: dict[str, dict], tokens: int) -> dict:
    """A variant's row: median ms, tokens/s, and its speedups with their intervals (when it and the other ran)."""
    row = {k: v for k, v in row.items() if k not in ("process",)}
    mine = series.get(row["variant"])
    if not mine:
        return row
    values = [ms for v in mine.values() for ms in v]
    row.update(ms=statistics.median(values), ms_min=min(values), ms_max=max(values),
               tokens_per_s=tokens / statistics.median(values) * 1e3)
    for col, other in RATIOS.items():
        if other in series and other != row["variant"]:
            ci = nested_ratio_ci(series[other], mine)
            row.update({f"speedup_{col}": ci.estimate, f"speedup_{col}_lo": ci.low, f"speedup_{col}_hi": ci.high,
                        f"interval_{col}": ci.method})
    return row


def _full_depth_series(times: pd.DataFrame, width: str, cfg: ModelStepConfig, depth: int,
                       passed: set) -> dict[str, dict]:
    """variant -> process -> the step ms estimated at `depth` for each round (the two depths' rounds paired by
    their index), for the variants that passed at both depths."""
    out = {}
    for v in dict.fromkeys(times["variant"]):
        if not {(width, cfg.short_layers, v), (width, cfg.n_layers, v)} <= passed:
            continue
        at = {n: by_process(times[(times["width"] == width) & (times["n_layers"] == n)], "variant", v)
              for n in (cfg.short_layers, cfg.n_layers)}
        out[v] = {p: [full_depth_ms(s, l, cfg.short_layers, cfg.n_layers, depth)[2]
                      for s, l in zip(at[cfg.short_layers][p], at[cfg.n_layers].get(p, []))]
                  for p in at[cfg.short_layers]}
    return out


def write_model_step_part(out_dir, cfg: ModelStepConfig, width: str, process: int = 0) -> None:
    """One benchmark process of one width, at both depths (short_layers, n_layers): `rows.csv` (each variant's
    check), `rounds.csv` (its step times) and `bench.json`. The workflow runs each (width, process) as a job of its
    own. Without a CUDA device both tables are one row saying so."""
    from ..io import write_json
    from .run import NO_CUDA, sidecar

    if width not in cfg.widths:
        raise ValueError(f"model_step.widths has no width {width!r}; configured: {list(cfg.widths)}")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    status = "ok" if torch.cuda.is_available() else NO_CUDA
    rows, records = [{"status": status}], [{"status": status}]
    if status == "ok":
        rows, records = [], []
        d, heads = cfg.widths[width]
        for layers in (cfg.short_layers, cfg.n_layers):
            r, t = _time_depth(cfg, width, d, heads, layers, process, print)
            rows, records = rows + r, records + t
    pd.DataFrame(rows).to_csv(out / "rows.csv", index=False)
    pd.DataFrame(records).to_csv(out / "rounds.csv", index=False)
    write_json(out / "bench.json", {**sidecar(cfg, status), "width": width, "process": process})


def combine_model_step(part_dirs: dict[str, str | Path], out_csv, rounds_csv, sidecar_json,
                       cfg: ModelStepConfig) -> None:
    """The model-step table (`model_step_table`) from every (width, process) job's folder (`part_dirs`: label ->
    folder), their rounds in one CSV, and one sidecar: status "ok" when any job ran, else the jobs' own."""
    from ..io import read_csv, read_json, write_json

    sides = {label: read_json(Path(d) / "bench.json") for label, d in part_dirs.items()}
    ran = [label for label, side in sides.items() if side["status"] == "ok"]
    if ran:
        rows = pd.concat([read_csv(Path(part_dirs[k]) / "rows.csv") for k in ran], ignore_index=True)
        records = pd.concat([read_csv(Path(part_dirs[k]) / "rounds.csv") for k in ran], ignore_index=True)
        table = pd.DataFrame(model_step_table(rows.to_dict("records"), records.to_dict("records"), cfg))
        side = {**sides[ran[0]], "status": "ok"}
    else:
        status = next(iter(sides.values()))["status"] if sides else "skipped: no benchmark job"
        table = records = pd.DataFrame([{"status": status}])
        side = {**(next(iter(sides.values())) if sides else {}), "status": status}
    side.pop("width", None)
    side.pop("process", None)
    side["jobs"] = {k: {"status": v["status"], "date": v.get("date")} for k, v in sides.items()}
    table.to_csv(out_csv, index=False)
    records.to_csv(rounds_csv, index=False)
    write_json(sidecar_json, side)
