"""Typed settings for one training run, each declared once (`act24.settings.setting`).

The declarations give the dataclasses their defaults and checks, and the workflow's JSON schema its `model`,
`train` and `sparse` sections (`python -m act24.schema`). `from_dict` rejects unknown keys, wrong types and values
out of range with a message that names the key, so the library is safe to call without Snakemake too; the checks
across keys (heads divide d_model, the 2:4 recipe needs Squared-ReLU) live here as well.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any

from .settings import ConfigError, build, check, setting, to_dict
from .sparsity.recipe import SparseRecipe

FFN_KINDS = ("swiglu", "sqrelu", "relu", "gelu")
# The 2:4 GEMM backends (act24.kernels.backends registers one class per name); "auto" picks one per device.
BACKEND_NAMES = ("reference", "cusparselt", "xformers_cutlass", "xformers_cusparselt", "xformers_fp8_sm90",
                 "fused_fp8_sm90", "fused_fp8_cusparselt", "fused_fp8_tuned",
                 "fused_fp8_auto")

__all__ = ["BACKEND_NAMES", "FFN_KINDS", "ConfigError", "ModelConfig", "RunConfig", "SparseConfig", "SparseRecipe",
           "TrainConfig"]


@dataclass(frozen=True)
class ModelConfig:
    vocab_size: int = setting(2048, derived="data.vocab_size", minimum=2)
    d_model: int = setting(128, minimum=8)
    n_layers: int = setting(4, minimum=1)
    n_heads: int = setting(4, minimum=1)
    seq_len: int = setting(128, minimum=4)
    ffn: str = setting("sqrelu", derived="variants.<name>.ffn", choices=FFN_KINDS)
    ffn_ratio: float = setting(4.0, "width of a two-matrix FFN (sqrelu/relu/gelu) as a multiple of d_model; SwiGLU "
                               "has three matrices and gets 2/3 of it, so every FFN kind has the same parameter count",
                               exclusiveMinimum=0)
    ffn_multiple_of: int = setting(64, "FFN widths are rounded up to this multiple (2:4 needs 4, cuSPARSELt 16/32, "
                                   "CUTLASS tiles 64/128)", minimum=4, multipleOf=4)
    rope_theta: float = setting(10000.0, exclusiveMinimum=0)
    tie_embeddings: bool = setting(True)

    def __post_init__(self):
        check(self, "model.")
        if self.d_model % self.n_heads:
            raise ConfigError(f"config key 'model.n_heads': d_model={self.d_model} must be divisible by "
                              f"n_heads={self.n_heads}")
        if (self.d_model // self.n_heads) % 2:
            raise ConfigError("config key 'model.n_heads': head dimension d_model/n_heads must be even (RoPE)")


@dataclass(frozen=True)
class TrainConfig:
    steps: int = setting(300, minimum=1)
    batch_size: int = setting(16, minimum=1)
    lr: float = setting(3e-3, exclusiveMinimum=0)
    min_lr_ratio: float = setting(0.1, minimum=0, maximum=1)
    warmup_steps: int = setting(30, minimum=1)
    weight_decay: float = setting(0.1, minimum=0)
    beta1: float = setting(0.9, minimum=0, exclusiveMaximum=1)
    beta2: float = setting(0.95, minimum=0, exclusiveMaximum=1)
    grad_clip: float = setting(1.0, exclusiveMinimum=0)
    eval_every: int = setting(50, minimum=1)
    eval_batches: int = setting(8, minimum=1)
    stats_every: int = setting(25, minimum=1)
    stats_batch_size: int = setting(8, minimum=1)
    seed: int = setting(0, derived="seeds", minimum=0)
    threads: int = setting(1, "torch threads of a training job", minimum=1, neutral=True)
    device: str = setting("cpu", choices=("cpu", "cuda"))
    precision: str = setting("fp32", "bf16: autocast", choices=("fp32", "bf16"))
    compile: bool = setting(False, "compile each transformer block with torch.compile (the 2:4 FFN function stays "
                            "eager inside it)")
    on_nonfinite: str = setting("error", "a non-finite training loss: error fails the run; stop ends it and records "
                                "it as diverged (an ablation's result rather than a failure)",
                                choices=("error", "stop"))
    checkpoint_every: int = setting(100, "steps between resumable checkpoints (model, optimizer, data order, RNG "
                                    "states; 0: none)", minimum=0, neutral=True)
    log_every: int = setting(50, "steps between progress lines in a log (loss, tokens/s, time left); a terminal "
                             "gets a progress bar", minimum=1, neutral=True)
    tensorboard: bool = setting(False, "also write TensorBoard scalars to <run folder>/tensorboard (needs the "
                                "tensorboard package)", neutral=True)
    processes: int = setting(1, "data-parallel processes (torchrun, one per GPU; gloo on the CPU); divides batch_size, "
                             "which stays the global batch", minimum=1)

    def __post_init__(self):
        check(self, "train.")
        if self.warmup_steps > self.steps:
            raise ConfigError(f"config key 'train.warmup_steps': must be at most train.steps={self.steps} (the "
                              f"learning-rate warmup ends within the run), got {self.warmup_steps}")
        if self.batch_size % self.processes:
            raise ConfigError(f"config key 'train.processes': must divide train.batch_size={self.batch_size} (each "
                              f"process takes an equal slice), got {self.processes}")


@dataclass(frozen=True)
class SparseConfig:
    """The 2:4 recipe's settings: when it is on, which kernels run it, and the recipe itself (flat keys of the
    config's `sparse` section)."""

    enabled: bool = setting(False, "train with the 2:4 recipe (needs ffn sqrelu)")
    dense_warmup: float = setting(0.1, "fraction of train.steps trained dense first (the paper: 1k iterations)",
                                  minimum=0, exclusiveMaximum=1)
    recipe: SparseRecipe = setting(SparseRecipe(), flatten=True)
    backend: str = setting("auto", "the 2:4 GEMM backend; auto: reference on CPU, the first correct GPU backend on "
                           "CUDA (on Hopper fused_fp8_auto: per GEMM shape the fastest correct FP8 GEMM)",
                           choices=("auto",) + BACKEND_NAMES)

    def __post_init__(self):
        check(self, "sparse.")

    def warmup_steps(self, total_steps: int) -> int:
        return int(round(self.dense_warmup * total_steps))

    def seeded_recipe(self, seed: int) -> SparseRecipe:
        """The recipe with its token permutation drawn from `seed` (the run's seed)."""
        return dataclasses.replace(self.recipe, permutation_seed=seed)


@dataclass(frozen=True)
class RunConfig:
    name: str = setting("run", "variant/seedN")
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)

    def __post_init__(self):
        check(self, "")
        m, t = self.model, self.train
        # The statistics take 2:4 groups along the tokens of the fixed batch; the recipe, of each process's batch.
        if (t.stats_batch_size * m.seq_len) % 4:
            raise ConfigError(f"config key 'train.stats_batch_size': stats_batch_size x model.seq_len must be a "
                              f"multiple of 4 (2:4 groups along tokens), got {t.stats_batch_size} x {m.seq_len}")
        if self.sparse.enabled and m.ffn != "sqrelu":
            raise ConfigError(f"config key 'sparse.enabled': the 2:4 recipe needs model.ffn 'sqrelu', got {m.ffn!r}")
        if self.sparse.enabled and (t.batch_size // t.processes * m.seq_len) % 4:
            raise ConfigError(f"config key 'train.batch_size': the 2:4 recipe needs a multiple of 4 tokens per "
                              f"process (2:4 groups along tokens), got batch_size / processes x model.seq_len = "
                              f"{t.batch_size // t.processes} x {m.seq_len}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunConfig":
        """From the mapping `to_dict` writes (derived keys such as model.ffn and train.seed included)."""
        return build(cls, d)

    def to_dict(self, neutral: bool = True) -> dict[str, Any]:
        """The mapping `from_dict` takes; without the settings that do not change results unless `neutral`."""
        return to_dict(self, neutral=neutral)


# FFN widths and parameter counts: arithmetic on a ModelConfig, without building a model (no torch), for tables
# and paper-scale shapes.
def round_up(x: float, multiple: int) -> int:
    return int(math.ceil(x / multiple) * multiple)


def ffn_width(cfg: ModelConfig, kind: str | None = None) -> int:
    """FFN width F for `kind`, parameter-matched across kinds.

    SwiGLU has three d x F matrices, the other kinds two, so F_two = 1.5 F_swiglu exactly. F_swiglu is
    rounded to a multiple of 2 * ffn_multiple_of so that both widths are multiples of ffn_multiple_of.
    """
    kind = kind or cfg.ffn
    f_swiglu = round_up(cfg.ffn_ratio * cfg.d_model * 2 / 3, 2 * cfg.ffn_multiple_of)
    return f_swiglu if kind == "swiglu" else f_swiglu * 3 // 2


def parameter_counts(cfg: ModelConfig) -> dict[str, int]:
    """Parameter counts of the model `cfg` describes, by part, computed without building it (so paper-scale
    shapes are cheap). Embedding and (untied) output matrices count as embedding parameters."""
    d, width = cfg.d_model, ffn_width(cfg)
    ffn = cfg.n_layers * (3 if cfg.ffn == "swiglu" else 2) * d * width
    attention = cfg.n_layers * 4 * d * d
    norms = (2 * cfg.n_layers + 1) * d
    embedding = cfg.vocab_size * d * (1 if cfg.tie_embeddings else 2)
    return {
        "ffn_width": width,
        "ffn_params": ffn,
        "non_embedding_params": ffn + attention + norms,
        "total_params": ffn + attention + norms + embedding,
    }
