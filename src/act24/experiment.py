"""The experiment grid: the workflow config's variants x seeds, each resolved into a RunConfig.

A variant is data: a name, an FFN kind, and optional overrides of the shared `model` / `train` settings.
Resolving every run up front means a bad variant fails before any job starts, naming the key.
"""

from __future__ import annotations

import copy
from typing import Any

from .config import ConfigError, RunConfig


def _merge(base: dict, override: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in override.items():
        out[key] = _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def run_config(config: dict[str, Any], variant: str, seed: int) -> RunConfig:
    """The RunConfig of `variant` with `seed`: shared settings, then the variant's overrides."""
    if variant not in config["variants"]:
        raise ConfigError(f"variants: no variant named {variant!r} (have: {', '.join(config['variants'])})")
    spec = config["variants"][variant]
    model = _merge(config.get("model", {}), spec.get("model", {}))
    train = _merge(config.get("train", {}), spec.get("train", {}))
    model.update(ffn=spec["ffn"], vocab_size=config["data"]["vocab_size"])
    sparse = _merge(config.get("sparse", {}), spec.get("sparse", {}))
    train.update(seed=seed)
    try:
        return RunConfig.from_dict({"name": f"{variant}/seed{seed}", "model": model, "train": train,
                                    "sparse": sparse})
    except ConfigError as exc:
        raise ConfigError(f"variants.{variant}: {exc}") from exc


def resolve_runs(config: dict[str, Any]) -> dict[tuple[str, int], RunConfig]:
    """Every (variant, seed) run of the config; checks that the analysis section names real variants."""
    runs = {(v, s): run_config(config, v, s) for v in config["variants"] for s in config["seeds"]}
    analysis = config["analysis"]
    named = [("analysis.sparsity_variant", analysis["sparsity_variant"]),
             ("analysis.swiglu_variant", analysis["swiglu_variant"])]
    named += [("analysis.loss_curve_variants", v) for v in analysis["loss_curve_variants"]]
    if analysis.get("sparse_recipe_variant"):
        named.append(("analysis.sparse_recipe_variant", analysis["sparse_recipe_variant"]))
    table1 = analysis.get("table1") or {}
    named += [(f"analysis.table1.{row}", v) for row, v in table1.items()]
    for key, name in named:
        if name not in config["variants"]:
            raise ConfigError(f"{key}: {name!r} is not a variant (have: {', '.join(config['variants'])})")
    if config["variants"][analysis["sparsity_variant"]]["ffn"] == "swiglu":
        raise ConfigError("analysis.sparsity_variant: must be a ReLU-family variant, not swiglu")
    recipe_variant = analysis.get("sparse_recipe_variant")
    if recipe_variant and not runs[(recipe_variant, config["seeds"][0])].sparse.enabled:
        raise ConfigError(f"analysis.sparse_recipe_variant: {recipe_variant!r} does not enable the 2:4 recipe "
                          "(sparse.enabled)")
    for row, name in table1.items():
        sparse_row = row not in ("dense_swiglu", "dense_sqrelu")
        if runs[(name, config["seeds"][0])].sparse.enabled != sparse_row:
            raise ConfigError(f"analysis.table1.{row}: variant {name!r} must "
                              f"{'enable' if sparse_row else 'not enable'} the 2:4 recipe (sparse.enabled)")
    return runs


def variant_label(config: dict[str, Any], variant: str) -> str:
    return config["variants"][variant].get("label", variant)
