"""Typed settings for one training run.

The workflow validates the whole config file against ``workflow/schemas/config.schema.yaml`` before any
job runs; these dataclasses are what the library consumes. ``from_dict`` rejects unknown keys and wrong
types with a message that names the key, so the library is safe to call without Snakemake too.
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Any

FFN_KINDS = ("swiglu", "sqrelu", "relu", "gelu")


class ConfigError(ValueError):
    """A setting is missing, unknown or of the wrong type; the message names the key."""


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = 2048
    d_model: int = 128
    n_layers: int = 4
    n_heads: int = 4
    seq_len: int = 128
    ffn: str = "sqrelu"
    # Width of a two-matrix FFN (sqrelu/relu/gelu) as a multiple of d_model. SwiGLU has three matrices and
    # gets 2/3 of it, so every FFN kind has the same parameter count (F_sqrelu = 1.5 F_swiglu).
    ffn_ratio: float = 4.0
    # FFN widths are rounded up to this multiple (2:4 needs 4, cuSPARSELt 16/32, CUTLASS tiles 64/128).
    ffn_multiple_of: int = 64
    rope_theta: float = 10000.0
    tie_embeddings: bool = True


@dataclass(frozen=True)
class TrainConfig:
    steps: int = 300
    batch_size: int = 16
    lr: float = 3e-3
    min_lr_ratio: float = 0.1
    warmup_steps: int = 30
    weight_decay: float = 0.1
    beta1: float = 0.9
    beta2: float = 0.95
    grad_clip: float = 1.0
    eval_every: int = 50
    eval_batches: int = 8
    stats_every: int = 25
    stats_batch_size: int = 8
    seed: int = 0
    threads: int = 1
    device: str = "cpu"  # cpu | cuda
    precision: str = "fp32"  # fp32 | bf16 (autocast)
    # A non-finite training loss: "error" fails the run; "stop" ends it and records it as diverged (an
    # ablation's result, e.g. the paper's "no dY1 mask" run, rather than a failure).
    on_nonfinite: str = "error"
    # Steps between resumable checkpoints (model, optimizer, data order, RNG states) when training is given a
    # resume folder (the workflow always gives one); 0: none.
    checkpoint_every: int = 100
    # Data-parallel processes (torchrun, one per GPU; gloo on the CPU). batch_size stays the global batch.
    processes: int = 1


@dataclass(frozen=True)
class SparseConfig:
    """The 2:4 training recipe (see act24.sparsity.ffn.SparseRecipe); switches of the paper's Table 1."""

    enabled: bool = False
    dense_warmup: float = 0.1  # fraction of train.steps trained dense first (the paper: 1k iterations)
    backward: str = "sparse"  # sparse | masked_dense | straight_through
    token_permutation: bool = True
    dense_fraction: float = 0.05  # 0: the naive backward (no 95/5 feature split)
    mask_dy1: bool = True
    split_multiple: int = 32  # raised to the backend's row alignment (FP8 sm90: 64) by the sparse FFN
    backend: str = "auto"  # auto | reference | cusparselt | xformers_cutlass | xformers_fp8_sm90 | fused_fp8_sm90

    def warmup_steps(self, total_steps: int) -> int:
        return int(round(self.dense_warmup * total_steps))

    def recipe(self, permutation_seed: int = 0):
        """The act24.sparsity.ffn.SparseRecipe these settings describe."""
        from .sparsity.ffn import SparseRecipe

        return SparseRecipe(backward=self.backward, token_permutation=self.token_permutation,
                            dense_fraction=self.dense_fraction, mask_dy1=self.mask_dy1,
                            permutation_seed=permutation_seed, split_multiple=self.split_multiple)


@dataclass(frozen=True)
class RunConfig:
    name: str = "run"
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        return _build(cls, d, "")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def _build(cls, d: Any, prefix: str):
    if not isinstance(d, dict):
        raise ConfigError(f"config key '{prefix or '<root>'}': expected a mapping, got {type(d).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(d) - names)
    if unknown:
        raise ConfigError(
            f"unknown config key '{prefix}{unknown[0]}' (expected one of: {', '.join(sorted(names))})"
        )
    kwargs = {}
    for key, value in d.items():
        where, typ = f"{prefix}{key}", hints[key]
        if dataclasses.is_dataclass(typ):
            kwargs[key] = _build(typ, value, where + ".")
        else:
            kwargs[key] = _coerce(value, typ, where)
    out = cls(**kwargs)
    if cls is ModelConfig:
        _check_model(out)
    if cls is TrainConfig:
        _check_choice("train.device", out.device, ("cpu", "cuda"))
        _check_choice("train.precision", out.precision, ("fp32", "bf16"))
        _check_choice("train.on_nonfinite", out.on_nonfinite, ("error", "stop"))
        if out.processes < 1 or out.batch_size % out.processes:
            raise ConfigError(f"config key 'train.processes': must be ≥ 1 and divide train.batch_size="
                              f"{out.batch_size} (each process takes an equal slice), got {out.processes}")
    if cls is RunConfig and out.sparse.enabled and out.model.ffn != "sqrelu":
        raise ConfigError(f"config key 'sparse.enabled': the 2:4 recipe needs model.ffn 'sqrelu', got {out.model.ffn!r}")
    if cls is SparseConfig:
        _check_choice("sparse.backward", out.backward, ("sparse", "masked_dense", "straight_through"))
        if not (0.0 <= out.dense_warmup < 1.0 and 0.0 <= out.dense_fraction < 1.0):
            raise ConfigError("config keys 'sparse.dense_warmup' and 'sparse.dense_fraction' must be in [0, 1)")
    return out


def _check_choice(key: str, value: str, choices: tuple[str, ...]) -> None:
    if value not in choices:
        raise ConfigError(f"config key '{key}': expected one of {choices}, got {value!r}")


def _coerce(value: Any, typ: type, where: str):
    ok = {
        int: isinstance(value, int) and not isinstance(value, bool),
        float: isinstance(value, (int, float)) and not isinstance(value, bool),
        bool: isinstance(value, bool),
        str: isinstance(value, str),
    }[typ]
    if not ok:
        raise ConfigError(f"config key '{where}': expected {typ.__name__}, got {value!r}")
    return typ(value)


def _check_model(m: ModelConfig) -> None:
    _check_choice("model.ffn", m.ffn, FFN_KINDS)
    if m.d_model % m.n_heads:
        raise ConfigError(
            f"config key 'model.n_heads': d_model={m.d_model} must be divisible by n_heads={m.n_heads}"
        )
    if (m.d_model // m.n_heads) % 2:
        raise ConfigError("config key 'model.n_heads': head dimension d_model/n_heads must be even (RoPE)")
    if m.ffn_multiple_of % 4:
        raise ConfigError(
            f"config key 'model.ffn_multiple_of': must be a multiple of 4 for 2:4 groups, got {m.ffn_multiple_of}"
        )
