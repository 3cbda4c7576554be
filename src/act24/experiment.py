"""The experiment grid: the workflow config's variants x seeds, each resolved into a RunConfig.

A variant is data: a name, an FFN kind, and optional overrides of the shared `model` / `train` / `sparse` settings.
`check_config` validates the whole config against the workflow's JSON schema (filling in its defaults) and resolves
every run, so that any bad setting, top-level or in a variant, fails before any job starts with one line that names
the key.
"""

from __future__ import annotations

import copy
import dataclasses
import re
from pathlib import Path
from typing import Any

import yaml

from .config import ConfigError, ModelConfig, RunConfig, SparseRecipe, TrainConfig
from .settings import declaration


class _StrictLoader(yaml.SafeLoader):
    """YAML as Snakemake reads it, except that a key given twice in one mapping is an error, not the last value."""

    def construct_mapping(self, node, deep=False):
        seen = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(None, None, f"key {key!r} appears twice in one mapping "
                                                        "(YAML would keep the last value silently)",
                                                        key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def read_yaml(path: str | Path) -> Any:
    """The YAML file `path`; ConfigError naming the file and line of a syntax error or a duplicated key."""
    try:
        return yaml.load(Path(path).read_text(), Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f", line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{path}{where}: {exc.problem or exc.context}") from None


def check_config(config: dict[str, Any], schema: str | Path,
                 command_line: dict[str, Any] | None = None) -> dict[tuple[str, int], RunConfig]:
    """Validate `config` against the JSON schema file `schema` (its defaults are filled into `config`) and resolve
    every run; ConfigError (one line, naming the key) on the first problem. `command_line`: the values given with
    Snakemake's `--config`, which arrive as strings inside braces (`train={steps: 10}`): where the schema wants
    another type, they are read as YAML scalars."""
    _reject_derived_keys(config)
    _validate(config, yaml.safe_load(Path(schema).read_text()), set(_leaf_paths(command_line or {})))
    separator = (config["data"].get("local") or {}).get("separator")
    if config["data"]["source"] == "local" and separator:
        try:
            re.compile(separator, re.MULTILINE)
        except re.error as exc:
            raise ConfigError(f"config key 'data.local.separator': {separator!r} is not a regular expression "
                              f"({exc})") from exc
    return resolve_runs(config)


# Command-line settings that change no result: where results and logs go, how jobs share a device, what a run
# logs or checkpoints, and reading finished runs only.
NEUTRAL_OVERRIDES = {("results",), ("logs",), ("gpu_percent_per_run",), ("analysis", "finished_runs_only"),
                     *(("train", k) for k in ("threads", "checkpoint_every", "log_every", "tensorboard"))}


def overrides_needing_a_folder(command_line: dict[str, Any]) -> list[str]:
    """The settings of Snakemake's `--config` that change results (dotted), when `results` is not among them: they
    would retrain runs and rewrite tables in the folder of the config files' results, so the workflow asks for a
    folder of their own. Empty when `results` is given or nothing but neutral settings is."""
    paths = [p for p in _leaf_paths(command_line) if p]
    if ("results",) in paths:
        return []
    changed = [p for p in paths if not any(p[:len(n)] == n for n in NEUTRAL_OVERRIDES)]
    return sorted({".".join(k for k in p[:2] if isinstance(k, str)) for p in changed})


def _leaf_paths(tree: Any, prefix: tuple = ()) -> list[tuple]:
    if isinstance(tree, dict):
        return [p for k, v in tree.items() for p in _leaf_paths(v, (*prefix, k))]
    if isinstance(tree, list):
        return [p for i, v in enumerate(tree) for p in _leaf_paths(v, (*prefix, i))]
    return [prefix]


def _yaml_scalar(text: str) -> Any:
    """`text` read as YAML; numbers YAML 1.1 leaves as strings (`1e-3`) as floats."""
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError:
        return text
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return value
    return value


def apply_assignments(config: dict[str, Any], assignments: list[str]) -> dict[str, Any]:
    """A copy of `config` with each `dotted.key=value` set (the value read as YAML: `train.steps=10`,
    `sparse.enabled=true`); ConfigError naming a malformed assignment."""
    out = copy.deepcopy(config)
    for assignment in assignments:
        key, sep, text = assignment.partition("=")
        if not sep or not key or any(not part for part in key.split(".")):
            raise ConfigError(f"--set {assignment!r}: expected dotted.key=value, e.g. train.steps=10")
        *parents, last = key.split(".")
        holder = out
        for i, part in enumerate(parents):
            holder = holder.setdefault(part, {})
            if not isinstance(holder, dict):
                raise ConfigError(f"--set {assignment!r}: '{'.'.join(parents[:i + 1])}' is not a section")
        holder[last] = _yaml_scalar(text)
    return out


YAML_NULLS = {"null", "Null", "NULL", "~"}
# Floats that YAML 1.2 reads as numbers and PyYAML's YAML 1.1 leaves as strings (`lr: 3e-3` in a config file):
# read as numbers wherever the schema wants one, so that a config file and --config agree.
YAML11_MISSED_FLOAT = re.compile(r"[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+")


def _coerce_strings(config: dict[str, Any], validator, paths: set[tuple]) -> None:
    """Read the strings at `paths` that the schema rejects as YAML (`'10'` -> 10, `'true'` -> True); `null` and `~`
    mean null there, also where a string would be allowed (the schema then says whether null is). Anywhere, an
    exponent float that YAML 1.1 left a string (`3e-3`) is read as the number where the schema wants one."""
    for path in paths:
        *parents, last = path
        holder = config
        for key in parents:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and isinstance(holder.get(last), str) and holder[last] in YAML_NULLS:
            holder[last] = None
    while True:
        errors = [e for e in validator.iter_errors(config) if e.validator == "type" and isinstance(e.instance, str)
                  and (tuple(e.absolute_path) in paths or YAML11_MISSED_FLOAT.fullmatch(e.instance))]
        changed = False
        for error in errors:
            *parents, last = error.absolute_path
            holder = config
            for key in parents:
                holder = holder[key]
            value = _yaml_scalar(error.instance)
            if not isinstance(value, str):
                holder[last], changed = value, True
        if not changed:
            return


def _reject_derived_keys(config: dict[str, Any]) -> None:
    """Keys the workflow sets itself (model.vocab_size from data.vocab_size, ...): an error, never overwritten."""
    sections = [("", config)] + [(f"variants.{name}.", spec) for name, spec in (config.get("variants") or {}).items()
                                 if isinstance(spec, dict)]
    for prefix, section in sections:
        for name, cls in (("model", ModelConfig), ("train", TrainConfig), ("sparse", SparseRecipe)):
            values = section.get(name)
            for f in dataclasses.fields(cls) if isinstance(values, dict) else ():
                if f.name in values and declaration(f)["derived"]:
                    raise ConfigError(f"config key '{prefix}{name}.{f.name}': cannot be set here, it comes from "
                                      f"{declaration(f)['derived']}")


def _validate(config: dict[str, Any], schema: dict, command_line_paths: set[tuple]) -> None:
    import jsonschema  # Snakemake's dependency; only the workflow validates this way

    def set_defaults(validator, properties, instance, subschema):
        for key, prop in properties.items():
            if isinstance(instance, dict) and "default" in prop:
                instance.setdefault(key, copy.deepcopy(prop["default"]))
        yield from jsonschema.Draft202012Validator.VALIDATORS["properties"](validator, properties, instance, subschema)

    validator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"properties": set_defaults})(schema)
    _coerce_strings(config, validator, command_line_paths)
    error = jsonschema.exceptions.best_match(validator.iter_errors(config))
    if error is None:
        return
    key = ".".join(map(str, error.absolute_path))
    if error.validator == "additionalProperties":
        unknown = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        expected = ", ".join(sorted(error.schema.get("properties", {})))
        raise ConfigError(f"unknown config key '{key + '.' if key else ''}{unknown[0]}' (expected one of: {expected})")
    raise ConfigError(f"config key '{key or '<root>'}': {error.message}")


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
    if not sparse.get("enabled", False):
        # A dense run does not use the recipe: it keeps the defaults, so that changing the recipe reruns 2:4 runs only.
        ignored = sorted(set(spec.get("sparse", {})) - {"enabled"})
        if ignored:
            raise ConfigError(f"config key 'variants.{variant}.sparse.{ignored[0]}': has no effect, the variant does "
                              "not enable the 2:4 recipe (sparse.enabled)")
        sparse = {"enabled": False}
    train.update(seed=seed)
    try:
        return RunConfig.from_dict({"name": f"{variant}/seed{seed}", "model": model, "train": train,
                                    "sparse": sparse})
    except ConfigError as exc:
        raise ConfigError(f"variants.{variant}: {exc}") from exc


def variant_seeds(config: dict[str, Any], variant: str) -> list[int]:
    """The seeds `variant` runs: its own `seeds` (a subset of the config's that holds the first), else all."""
    seeds = config["variants"][variant].get("seeds")
    if seeds is None:
        return list(config["seeds"])
    if not set(seeds) <= set(config["seeds"]) or config["seeds"][0] not in seeds:
        raise ConfigError(f"config key 'variants.{variant}.seeds': must be a subset of seeds {config['seeds']} that "
                          f"holds its first, {config['seeds'][0]} (the runs every analysis reads), got {seeds}")
    return list(seeds)


CPU_BACKENDS = ("reference", "auto")  # the 2:4 backends that run without CUDA (auto: the reference there)


def _check_backend_device(config: dict[str, Any], runs: dict[tuple[str, int], RunConfig]) -> None:
    """A 2:4 run on train.device 'cpu' with a CUDA-only backend can run on no machine: an error at planning."""
    for (variant, _), run in runs.items():
        if run.sparse.enabled and run.train.device == "cpu" and run.sparse.backend not in CPU_BACKENDS:
            key = "sparse.backend" if "backend" not in config["variants"][variant].get("sparse", {}) else \
                f"variants.{variant}.sparse.backend"
            raise ConfigError(f"config key '{key}': {run.sparse.backend!r} runs on CUDA only, and variant "
                              f"{variant!r} trains on train.device 'cpu' (use {' or '.join(map(repr, CPU_BACKENDS))} "
                              "there, or train.device: cuda)")


def resolve_runs(config: dict[str, Any]) -> dict[tuple[str, int], RunConfig]:
    """Every (variant, seed) run of the config; checks that the analysis section names real variants."""
    runs = {(v, s): run_config(config, v, s) for v in config["variants"] for s in variant_seeds(config, v)}
    _check_backend_device(config, runs)
    analysis = config["analysis"]
    named = [("analysis.sparsity_variant", analysis["sparsity_variant"]),
             ("analysis.swiglu_variant", analysis["swiglu_variant"])]
    named += [("analysis.loss_curve_variants", v) for v in analysis["loss_curve_variants"]]
    if analysis.get("sparse_recipe_variant"):
        named.append(("analysis.sparse_recipe_variant", analysis["sparse_recipe_variant"]))
    table1 = analysis.get("table1") or {}
    named += [(f"analysis.table1.{row}", v) for row, v in table1.items()]
    named += [(f"analysis.scale.{size}.{kind}", v) for size, spec in (analysis.get("scale") or {}).items()
              for kind, v in spec.items()]
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


def device_warning(runs: dict[tuple[str, int], RunConfig]) -> str | None:
    """A line for planning time when runs ask for a CUDA device this machine does not have (their jobs would fail
    one by one after the data steps), else None."""
    on_cuda = sorted({name for (name, _), run in runs.items() if run.train.device == "cuda"})
    if not on_cuda:
        return None
    import torch

    if torch.cuda.is_available():
        return None
    why = "torch is a CPU build" if torch.version.cuda is None else "no CUDA device is visible"
    return (f"warning: {len(on_cuda)} variant(s) train on train.device 'cuda' ({', '.join(on_cuda)}), but this "
            f"machine has no CUDA device ({why}, torch {torch.__version__}): their jobs will fail. Run this config "
            "on a CUDA machine or cluster (then ignore this line), or set train.device: cpu.")


def variant_label(config: dict[str, Any], variant: str) -> str:
    return config["variants"][variant].get("label", variant)


def check_bench_settings(config: dict[str, Any], trained_profile: str | None, claims: bool = True) -> None:
    """The benchmark settings that only jobs read, at planning time: gpu_bench.only_shapes names shapes, with
    `claims` claims.speed_shape is a benchmarked shape (the claims table reads it), and
    gpu_bench.trained_profile (the path as the workflow resolved it) is readable, with a `density` array of
    layers x features that has gpu_bench.trained_layer, finite there (else ConfigError naming the key and file)."""
    shapes, only = config["gpu_bench"]["shapes"], config["gpu_bench"].get("only_shapes") or []
    if unknown := [s for s in only if s not in shapes]:
        raise ConfigError(f"config key 'gpu_bench.only_shapes': {unknown[0]!r} is not a shape of gpu_bench.shapes "
                          f"({', '.join(shapes)})")
    shape, benchmarked = config["claims"]["speed_shape"], benchmarked_shapes(config)
    if claims and shape not in benchmarked:
        raise ConfigError(f"config key 'claims.speed_shape': {shape!r} is not a benchmarked shape of gpu_bench.shapes "
                          f"({', '.join(benchmarked)})")
    if not trained_profile:
        return
    import numpy as np

    path, layer = trained_profile, config["gpu_bench"]["trained_layer"]
    try:
        with np.load(path) as z:
            density = np.asarray(z["density"], dtype=float)
    except (OSError, ValueError, KeyError) as exc:
        why = "missing" if isinstance(exc, FileNotFoundError) else f"not an npz with 'density' ({type(exc).__name__})"
        raise ConfigError(f"config key 'gpu_bench.trained_profile': {path}: {why}") from exc
    if density.ndim != 2 or not 0 <= layer < density.shape[0]:
        raise ConfigError(f"config key 'gpu_bench.trained_layer': {layer}, but {path} holds "
                          f"{density.shape[0] if density.ndim == 2 else 'no'} layers (an array of layers x features)")
    if not np.isfinite(density[layer]).all():
        raise ConfigError(f"config key 'gpu_bench.trained_profile': {path}: layer {layer} holds non-finite densities")


def benchmarked_shapes(config: dict[str, Any]) -> dict[str, Any]:
    """gpu_bench.shapes, or those of them that gpu_bench.only_shapes names."""
    shapes, only = config["gpu_bench"]["shapes"], config["gpu_bench"].get("only_shapes") or []
    return {name: shape for name, shape in shapes.items() if not only or name in only}


def bench_settings(config: dict[str, Any], trained_profile: str | None) -> tuple[dict[str, Any], dict[str, Any]]:
    """The settings of the GPU benchmark (GpuBenchConfig) and of the model step (ModelStepConfig) of a checked
    config: their sections, the benchmark's shapes narrowed to those it runs, with the trained profile's path as
    resolved by the caller and the recipe's 95/5 split (sparse.dense_fraction), which both take from the recipe."""
    dense_fraction = config["sparse"]["dense_fraction"]
    return ({**config["gpu_bench"], "shapes": benchmarked_shapes(config), "only_shapes": [],
             "trained_profile": trained_profile, "dense_fraction": dense_fraction},
            {**config["model_step"], "dense_fraction": dense_fraction})
