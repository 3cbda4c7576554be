"""Sparse inference: the validation loss of a trained model with its FFNs dense and with 2:4 forced on every
FFN activation Y2 (the 2 largest of every 4 along features kept, the paper's inference forward).

For a Squared-ReLU model this is the paper's sparse inference; for SwiGLU / ReLU / GELU models it is context
(their activations are not sparse, so 2:4 drops much more). Both losses use the same validation windows, so
their difference is paired: it measures the mask, not the data.
"""

from __future__ import annotations

import pickle
from pathlib import Path

import torch

from .config import RunConfig
from .data import TokenArray
from .kernels.backends import select_backend
from .model import Transformer
from .sparsity.pattern import token_permutation
from .sparsity.recipe import SparseRecipe
from .train import autocast, evaluate, layer_statistics, resolve_device


def load_model(checkpoint: str | Path, device: torch.device | None = None) -> tuple[Transformer, RunConfig]:
    """The model and run config saved by act24.train (a missing or unreadable file names itself)."""
    try:
        saved = torch.load(checkpoint, map_location="cpu", weights_only=True)
        cfg = RunConfig.from_dict(saved["config"])
        model = Transformer(cfg.model)
        model.load_state_dict(saved["model"])
    except (OSError, RuntimeError, KeyError, EOFError, pickle.UnpicklingError) as exc:
        first_line = (str(exc).splitlines() or [""])[0]
        raise RuntimeError(f"{checkpoint}: not a readable act24 checkpoint ({type(exc).__name__}: {first_line}); "
                           "rerun its train rule") from exc
    return model.to(device or resolve_device(cfg.train)).eval(), cfg


@torch.no_grad()
def sparse_inference(checkpoint: str | Path, val_path: str | Path, n_batches: int) -> dict:
    """Validation loss dense and with 2:4 forward sparsity, and what the mask drops, for one checkpoint."""
    model, cfg = load_model(checkpoint)
    t, device = cfg.train, next(model.parameters()).device
    torch.set_num_threads(t.threads)
    val = TokenArray(val_path, cfg.model.seq_len, cfg.model.vocab_size)
    batches = [(x.to(device), y.to(device)) for x, y in val.fixed_batches(n_batches, t.batch_size)]
    losses = {}
    for mode in ("dense", "24"):
        model.set_inference24(mode == "24")
        with autocast(device, t.precision):
            losses[mode] = evaluate(model, batches)
    model.set_inference24(False)
    # What the forward mask drops, on the first evaluation batch (unmasked activations, per layer).
    x = batches[0][0]
    with autocast(device, t.precision):
        layers, _ = layer_statistics(model, x, token_permutation(x.numel(), seed=t.seed),
                                     cfg.sparse.recipe.dense_fraction)
    mean = lambda key: sum(row[key] for row in layers) / len(layers)  # noqa: E731
    return {
        "ffn": cfg.model.ffn,
        "trained_sparse": cfg.sparse.enabled,
        "val_loss_dense": losses["dense"],
        "val_loss_24": losses["24"],
        "delta_24": losses["24"] - losses["dense"],
        "eval_tokens": n_batches * t.batch_size * cfg.model.seq_len,
        "zero_frac": mean("zero_frac"),
        "drop24_features": mean("drop24_features"),
        "drop24_features_energy": mean("drop24_features_energy"),
    }


def gradient_fidelity(checkpoint: str | Path, val_path: str | Path, recipes: dict[str, SparseRecipe],
                      n_batches: int = 1, backend: str = "reference") -> list[dict]:
    """How far each 2:4 recipe's FFN weight gradients are from the exact gradient of the 2:4-masked forward
    (`backward: masked_dense`), on a trained Squared-ReLU model and fixed validation batches.

    One row per recipe, layer and weight (w1, w2): relative error ||g - g_exact|| / ||g_exact|| and cosine
    similarity. This is the mechanism behind Table 1: what each part of the recipe costs the gradient. The recipe's
    math is measured on the `reference` backend unless `backend` names another (then kernel rounding adds to it)."""
    model, cfg = load_model(checkpoint)
    if cfg.model.ffn != "sqrelu":
        raise ValueError(f"{checkpoint}: gradient fidelity needs a Squared-ReLU model, got {cfg.model.ffn!r}")
    device = next(model.parameters()).device
    kernels, _ = select_backend(backend, device)
    torch.set_num_threads(cfg.train.threads)
    val = TokenArray(val_path, cfg.model.seq_len, cfg.model.vocab_size)
    batches = val.fixed_batches(n_batches, cfg.train.batch_size)
    model.train()

    def ffn_grads(recipe: SparseRecipe) -> list[dict[str, torch.Tensor]]:
        model.set_sparse(recipe, kernels)
        model.zero_grad(set_to_none=True)
        for x, y in batches:
            model(x.to(device), y.to(device))[1].backward()
        return [{"w1": f.w1.weight.grad.double().clone(), "w2": f.w2.weight.grad.double().clone()}
                for f in model.ffn_modules()]

    exact = ffn_grads(SparseRecipe(backward="masked_dense"))
    rows = []
    for name, recipe in recipes.items():
        for layer, (got, ref) in enumerate(zip(ffn_grads(recipe), exact)):
            for w in ("w1", "w2"):
                g, r = got[w].flatten(), ref[w].flatten()
                rows.append({"recipe": name, "layer": layer, "weight": w,
                             "rel_error": float((g - r).norm() / r.norm()),
                             "cosine": float(torch.nn.functional.cosine_similarity(g, r, dim=0))})
    model.set_sparse(None)
    return rows
