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
import statistics
from collections.abc import Callable

import torch

from ..config import ModelConfig
from ..model import Transformer, ffn_width
from ..intervals import paired_ratio_ci
from ..sparsity.recipe import SparseRecipe
from ..ffn.fused import fused_ffn_op, recipe_spec
from .config import ModelStepConfig
from .harness import event_ms

BF16, FP8_DENSE, FP8_24 = "bf16, dense FFN", "FP8 dense FFN (fused kernels)", "FP8 2:4 FFN (fused kernels)"


def variants(recipe: SparseRecipe) -> dict[str, Callable | None]:
    return {BF16: None, FP8_DENSE: fused_ffn_op, FP8_24: functools.partial(fused_ffn_op, spec=recipe_spec(recipe))}


def train_step(model: Transformer, opt: torch.optim.Optimizer, inputs: torch.Tensor, targets: torch.Tensor):
    with torch.autocast("cuda", dtype=torch.bfloat16):
        _, loss = model(inputs, targets)
    loss.backward()
    opt.step()
    opt.zero_grad(set_to_none=True)
    return loss


def model_step_rows(cfg: ModelStepConfig, progress: Callable[[str], None] = print) -> list[dict]:
    """One row per width and variant: the first step's loss (the check: finite, and within 2% of the bf16 model's
    on the same weights and batch), the median step time over the rounds, tokens/s, and the speedups with 95%
    paired intervals against the FP8 dense-FFN model (same precision) and the bf16 model (labelled as such)."""
    rows = []
    recipe = SparseRecipe(dense_fraction=cfg.dense_fraction, split_multiple=cfg.split_multiple)
    for width, (d, heads) in cfg.widths.items():
        mcfg = ModelConfig(vocab_size=cfg.vocab_size, d_model=d, n_layers=cfg.n_layers, n_heads=heads,
                           seq_len=cfg.seq_len, ffn="sqrelu", ffn_multiple_of=128)
        base = {"width": width, "d_model": d, "F": ffn_width(mcfg), "n_layers": cfg.n_layers, "seq_len": cfg.seq_len,
                "tokens": cfg.tokens, "compiled": cfg.compile}
        g = torch.Generator(device="cuda").manual_seed(0)
        batch = torch.randint(cfg.vocab_size, (cfg.tokens // cfg.seq_len, cfg.seq_len + 1), device="cuda", generator=g)
        inputs, targets = batch[:, :-1], batch[:, 1:]
        runs, results = {}, {}
        for name, kernel in variants(recipe).items():
            progress(f"model step {width}: {name}")
            torch.manual_seed(0)
            model = Transformer(mcfg).cuda().train()
            model.set_ffn_kernel(kernel)
            if cfg.compile:
                for block in model.blocks:
                    block.compile()
            opt = torch.optim.AdamW(model.parameters(), lr=1e-4, fused=True)
            try:
                losses = [float(train_step(model, opt, inputs, targets)) for _ in range(cfg.warmup_steps)]
            except Exception as exc:  # a failing variant is a row to report
                results[name] = {"status": f"failed: {type(exc).__name__}: {str(exc)[:200]}"}
                continue
            results[name] = {"status": "ok", "loss_step0": losses[0], "loss_last_warmup": losses[-1]}
            runs[name] = (model, opt)
        ref = results.get(BF16, {}).get("loss_step0")
        for name, r in results.items():
            if r["status"] == "ok" and not (math.isfinite(r["loss_step0"]) and ref is not None
                                            and abs(r["loss_step0"] - ref) <= 0.02 * ref):
                r["status"] = f"incorrect: first loss {r['loss_step0']:.4f} against the bf16 model's {ref}"
                runs.pop(name, None)
        times = {name: [] for name in runs}
        for _ in range(cfg.rounds):
            for name, (model, opt) in runs.items():
                times[name].append(event_ms(lambda: train_step(model, opt, inputs, targets), calls=cfg.steps_per_round))
        for name, r in results.items():
            row = {**base, "variant": name, **r}
            if name in times:
                ms = statistics.median(times[name])
                row.update(ms=ms, ms_min=min(times[name]), ms_max=max(times[name]), tokens_per_s=cfg.tokens / ms * 1e3)
                for col, other in (("vs_fp8_dense", FP8_DENSE), ("vs_bf16_change_of_precision", BF16)):
                    if other in times and other != name:
                        est, lo, hi = paired_ratio_ci(times[other], times[name])
                        row.update({f"speedup_{col}": est, f"speedup_{col}_lo": lo, f"speedup_{col}_hi": hi})
            rows.append(row)
        del runs
        torch.cuda.empty_cache()
    return rows


def write_model_step(out_csv, sidecar_json, cfg: ModelStepConfig, progress: Callable[[str], None] = print) -> None:
    """The model-step table (a 'skipped' record without CUDA) and its sidecar (settings, versions, date)."""
    import pandas as pd

    from ..io import write_json
    from .run import NO_CUDA, sidecar

    status = "ok" if torch.cuda.is_available() else NO_CUDA
    rows = model_step_rows(cfg, progress) if status == "ok" else [{"status": status}]
    pd.DataFrame(rows).to_csv(out_csv, index=False)
    write_json(sidecar_json, sidecar(cfg, status))
