"""Settings of the GPU benchmarks (the config's `gpu_bench` section)."""

from __future__ import annotations

from dataclasses import dataclass, field, fields


def from_mapping(cls, values: dict, section: str):
    """A config dataclass from its config section: lists become tuples (mappings of lists: of tuples); an unknown
    key is an error naming it."""
    unknown = set(values) - {f.name for f in fields(cls)}
    if unknown:
        raise ValueError(f"{section}: unknown keys {sorted(unknown)}")

    def freeze(v):
        if isinstance(v, list):
            return tuple(v)
        if isinstance(v, dict):
            return {k: freeze(x) for k, x in v.items()}
        return v

    return cls(**{k: freeze(v) for k, v in values.items()})


@dataclass(frozen=True)
class GpuBenchConfig:
    # FFN shapes: name -> (d_model, F of the parameter-matched Squared-ReLU FFN, 1.5 x Llama's SwiGLU width).
    shapes: dict[str, tuple[int, int]] = field(default_factory=lambda: {
        "1.5B-like": (2048, 8448), "7B-like": (4096, 16512), "13B-like": (5120, 20736), "70B-like": (8192, 43008)})
    tokens: tuple[int, ...] = (4096, 8192, 16384, 32768, 65536)
    sweep_zero_frac: float = 0.95  # share of zeros of the synthetic activations in the token sweep
    # At `extra_tokens` only: more sparsity levels (and the trained profile), and the GEMM and sparsify tables.
    extra_zero_fracs: tuple[float, ...] = ()
    extra_tokens: int = 16384
    rep_ms: int = 100  # GEMM and sparsify tables: triton.testing.do_bench, median over this many milliseconds
    warmup_ms: int = 25
    # FFN paths: `rounds` interleaved rounds (every path once per round, in turn), each path timed for about
    # `round_ms` per round (at least 2 calls, CUDA events, median). An H200 near its power limit lowers its clock,
    # so paths timed side by side see the same spread of power states; the rounds give each speedup its interval.
    rounds: int = 5
    round_ms: int = 40
    profile_iters: int = 3  # calls per path under torch.profiler for the kernel breakdown (0: no breakdown)
    dense_fraction: float = 0.05
    split_multiple: int = 128
    # Relative error allowed for bf16 paths (FP8: 2x). Rounding flips some 2:4 choices, so correct paths
    # land at 0.01-0.07 against the fp32 reference; a wrong kernel lands near 1.
    tolerance: float = 0.1
    # Optional: per-feature densities of a trained Squared-ReLU model (an .npz with `density`, layers x
    # features, as written by training); its `trained_layer` profile, resampled to F, is benchmarked at
    # `extra_tokens` beside the synthetic levels.
    trained_profile: str | None = None
    trained_layer: int = 2

    @classmethod
    def from_dict(cls, values: dict) -> "GpuBenchConfig":
        return from_mapping(cls, values, "gpu_bench")


@dataclass(frozen=True)
class ModelStepConfig:
    """The whole-model training step: this project's Transformer at a model family's width, a few layers."""

    # name -> (d_model, n_heads); FFN widths follow act24.model.ffn_width (ffn_ratio 4, multiple of 128).
    widths: dict[str, tuple[int, int]] = field(default_factory=lambda: {"1.5B-like": (2048, 16), "7B-like": (4096, 32)})
    n_layers: int = 4
    seq_len: int = 2048
    tokens: int = 16384  # per step: tokens // seq_len sequences
    vocab_size: int = 32000
    rounds: int = 5
    steps_per_round: int = 5
    warmup_steps: int = 3
    compile: bool = True  # each block compiled (torch.compile), the FFN a custom op inside the compiled graph
    dense_fraction: float = 0.05
    split_multiple: int = 128

    @classmethod
    def from_dict(cls, values: dict) -> "ModelStepConfig":
        return from_mapping(cls, values, "model_step")
