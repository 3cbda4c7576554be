import math

import numpy as np
import pandas as pd
import pytest
import torch

from act24.config import RunConfig
from act24.data import TokenArray
from act24.evaluate import load_model, sparse_inference
from act24.train import evaluate, train

MODEL = {"vocab_size": 300, "d_model": 32, "n_layers": 2, "n_heads": 2, "seq_len": 16, "ffn_multiple_of": 8}
TRAIN = {"steps": 6, "batch_size": 4, "warmup_steps": 2, "eval_every": 3, "eval_batches": 2, "stats_every": 3,
         "stats_batch_size": 2}


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, token_files):
    out = {}
    for kind in ("sqrelu", "swiglu"):
        d = tmp_path_factory.mktemp(kind)
        train(RunConfig.from_dict({"name": kind, "model": {**MODEL, "ffn": kind}, "train": TRAIN}), *token_files, d,
              progress=False)
        out[kind] = d / "model.pt"
    return out


@pytest.mark.parametrize("kind", ["sqrelu", "swiglu"])
def test_sparse_inference_pairs_dense_and_24_losses(checkpoints, token_files, kind):
    r = sparse_inference(checkpoints[kind], token_files[1], n_batches=3)
    model, cfg = load_model(checkpoints[kind])
    batches = TokenArray(token_files[1], 16).fixed_batches(3, cfg.train.batch_size)
    assert r["val_loss_dense"] == pytest.approx(evaluate(model, batches), rel=1e-6)
    model.set_inference24(True)
    assert r["val_loss_24"] == pytest.approx(evaluate(model, batches), rel=1e-6)
    assert r["delta_24"] == pytest.approx(r["val_loss_24"] - r["val_loss_dense"]) and r["delta_24"] != 0
    assert r["eval_tokens"] == 3 * 4 * 16 and r["ffn"] == kind and r["trained_sparse"] is False
    if kind == "swiglu":  # no exact zeros: 2:4 drops half of the values
        assert r["zero_frac"] == 0 and r["drop24_features"] == pytest.approx(0.5)
    else:
        assert 0.3 < r["zero_frac"] < 0.9 and 0 < r["drop24_features"] < 0.5
    assert all(math.isfinite(v) for v in (r["val_loss_dense"], r["val_loss_24"]))


def test_a_corrupt_checkpoint_names_the_file(tmp_path):
    bad = tmp_path / "model.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(RuntimeError, match=r"model\.pt: not a readable act24 checkpoint.*rerun its train rule"):
        load_model(bad, torch.device("cpu"))


def test_gradient_fidelity_against_an_independent_computation(checkpoints, token_files):
    """The exact gradient of the masked forward, independently: autograd through `y2 * mask24(y2)` (the
    inference path); each recipe's gradient through the model's sparse FFN. Their errors must match the rows."""
    from act24.evaluate import gradient_fidelity
    from act24.sparsity.recipe import SparseRecipe

    recipes = {"exact": SparseRecipe(backward="masked_dense"), "full": SparseRecipe(split_multiple=8),
               "no_dy1": SparseRecipe(split_multiple=8, mask_dy1=False)}
    rows = pd.DataFrame(gradient_fidelity(checkpoints["sqrelu"], token_files[1], recipes, n_batches=1))
    assert len(rows) == 3 * 2 * 2  # recipes x layers x (w1, w2)
    rows = rows.set_index(["recipe", "layer", "weight"])

    model, cfg = load_model(checkpoints["sqrelu"])
    model.train()
    x, y = TokenArray(token_files[1], cfg.model.seq_len).fixed_batches(1, cfg.train.batch_size)[0]

    def grads(recipe):
        model.set_sparse(recipe)
        model.set_inference24(recipe is None)  # None: the masked forward under plain autograd
        model.zero_grad(set_to_none=True)
        model(x, y)[1].backward()
        return {(layer, w): getattr(f, w).weight.grad.double().flatten().numpy()
                for layer, f in enumerate(model.ffn_modules()) for w in ("w1", "w2")}

    exact = grads(None)
    for name, recipe in recipes.items():
        for key, g in grads(recipe).items():
            r = exact[key]
            rel = np.linalg.norm(g - r) / np.linalg.norm(r)
            cos = g @ r / (np.linalg.norm(g) * np.linalg.norm(r))
            assert rows.loc[(name, *key), "rel_error"] == pytest.approx(rel, rel=1e-6, abs=1e-9)
            assert rows.loc[(name, *key), "cosine"] == pytest.approx(cos, rel=1e-6)
    assert (rows.loc["exact", "rel_error"] < 1e-6).all()
    # A deliberately broken recipe is caught: without the dY1 mask, W1's gradient moves away in every layer.
    full, no_dy1 = rows.loc["full", "rel_error"], rows.loc["no_dy1", "rel_error"]
    assert (no_dy1.xs("w1", level="weight") > full.xs("w1", level="weight") + 0.05).all()
    with pytest.raises(ValueError, match="needs a Squared-ReLU model"):
        gradient_fidelity(checkpoints["swiglu"], token_files[1], recipes)
