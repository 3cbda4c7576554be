"""Settings of the GPU benchmarks (the config's `gpu_bench` section)."""

from __future__ import annotations

from dataclasses import dataclass

from ..settings import ConfigError, build, check, setting
from ..sparsity.recipe import SparseRecipe


@dataclass(frozen=True)
class GpuBenchConfig:
    shapes: dict[str, tuple[int, int]] = setting(
        {"768-wide": (768, 3072), "1024-wide": (1024, 4096), "1.5B-like": (2048, 8448), "7B-like": (4096, 16512),
         "13B-like": (5120, 20736), "70B-like": (8192, 43008)},
        "FFN shapes, jobs of their own: name -> [d_model, F]: the widths this project's training runs use (F = 4 d), "
        "and model families' (F of the parameter-matched Squared-ReLU FFN, 1.5 x Llama's SwiGLU width)",
        items={"minimum": 64})
    only_shapes: tuple[str, ...] = setting((), "benchmark only these names of `shapes` (empty: all of them); a list, "
                                           "so a config file replaces it where it would merge into `shapes`")
    tokens: tuple[int, ...] = setting((4096, 8192, 16384, 32768, 65536), "token counts of the sweep",
                                      items={"minimum": 128})
    sweep_zero_frac: float = setting(0.95, "share of zeros of the synthetic activations in the token sweep",
                                     minimum=0, exclusiveMaximum=1)
    extra_zero_fracs: tuple[float, ...] = setting((), "more sparsity levels at extra_tokens",
                                                  items={"minimum": 0, "exclusiveMaximum": 1})
    extra_tokens: int = setting(16384, "tokens of the extra levels, the trained profile, the GEMM and sparsify tables "
                                "and claims C7 / C8", minimum=128)
    rep_ms: int = setting(100, "GEMM and sparsify tables: triton.testing.do_bench median over this many ms", minimum=1)
    warmup_ms: int = setting(25, "do_bench warm-up per measurement", minimum=0)
    # An H200 near its power limit lowers its clock, so paths timed side by side see the same spread of power states;
    # the rounds give each speedup its interval.
    rounds: int = setting(5, "FFN paths: interleaved rounds per process (each path once per round, in an order "
                          "shuffled every round)", minimum=1)
    processes: int = setting(3, "independent processes per shape, one after another, each with its own inputs, "
                             "rounds' orders and per-process choices (searches, `auto`): the speed intervals are "
                             "taken over them, rounds nested within each", minimum=1)
    round_ms: int = setting(40, "FFN paths: milliseconds of calls per path and round (at least 2 calls, CUDA events, "
                            "median)", minimum=1)
    profile_iters: int = setting(3, "calls per path under torch.profiler for the kernel breakdown (0: none)",
                                 minimum=0)
    dense_fraction: float = setting(SparseRecipe.dense_fraction, derived="sparse.dense_fraction")
    split_multiple: int = setting(128, "the 2:4 paths' sparse-feature count is rounded to this multiple", minimum=1)
    # Rounding flips some 2:4 choices, so correct bf16 paths land at 0.01-0.07 against the fp32 reference; a wrong
    # kernel lands near 1.
    tolerance: float = setting(0.1, "relative error allowed for bf16 paths against fp32; FP8 paths: 1.25x the best "
                               "dense FP8 path's own error on the same inputs, 2:4 FP8 paths 1.25x the error of FP8 "
                               "2:4 math itself where that is larger, where those are within 2x this",
                               exclusiveMinimum=0)
    trained_profile: str | None = setting(None, "per-feature densities of a trained Squared-ReLU model (.npz with "
                                          "`density`, layers x features, as training writes it), benchmarked at "
                                          "extra_tokens resampled to F")
    trained_layer: int = setting(2, "the layer of trained_profile", minimum=0)

    def __post_init__(self):
        check(self, "gpu_bench.")
        if unknown := [s for s in self.only_shapes if s not in self.shapes]:
            raise ConfigError(f"config key 'gpu_bench.only_shapes': {unknown[0]!r} is not a shape of gpu_bench.shapes "
                              f"({', '.join(self.shapes)})")

    @classmethod
    def from_dict(cls, values: dict) -> "GpuBenchConfig":
        return build(cls, values, "gpu_bench.")


@dataclass(frozen=True)
class ModelStepConfig:
    """The whole-model training step: this project's Transformer at a model family's width, a few layers."""

    widths: dict[str, tuple[int, int]] = setting(
        {"1.5B-like": (2048, 16), "7B-like": (4096, 32), "13B-like": (5120, 40)},
        "name -> [d_model, n_heads]; FFN widths from model.ffn_width (ratio 4, multiple of 128)", items={"minimum": 1})
    n_layers: int = setting(4, "layers of the timed models", minimum=2)
    short_layers: int = setting(2, "layers of a second, shallower timing of every model: with n_layers it splits a "
                                "step into a cost per layer and a fixed cost (embedding, head, optimizer)", minimum=1)
    full_depth: dict[str, int] = setting({"1.5B-like": 24, "7B-like": 32, "13B-like": 40},
                                         "width name -> the model family's real depth: the step is estimated there "
                                         "from the per-layer and fixed costs", items={"minimum": 1})
    processes: int = setting(3, "independent processes, one after another: the intervals are taken over them",
                             minimum=1)
    seq_len: int = setting(2048, minimum=4)
    tokens: int = setting(16384, "per step: tokens // seq_len sequences", minimum=4)
    vocab_size: int = setting(32000, minimum=2)
    rounds: int = setting(5, "interleaved rounds of steps_per_round timed steps per variant", minimum=1)
    steps_per_round: int = setting(5, minimum=1)
    warmup_steps: int = setting(3, "untimed steps first (compilation; the first step's loss is the check)", minimum=1)
    compile: bool = setting(True, "each block under torch.compile, the FFN a custom op inside its graph")
    dense_fraction: float = setting(SparseRecipe.dense_fraction, derived="sparse.dense_fraction")
    split_multiple: int = setting(128, minimum=1)

    def __post_init__(self):
        check(self, "model_step.")
        if self.short_layers >= self.n_layers:
            raise ConfigError(f"model_step.short_layers ({self.short_layers}) must be below model_step.n_layers "
                             f"({self.n_layers}): the two timings give the cost per layer")

    @classmethod
    def from_dict(cls, values: dict) -> "ModelStepConfig":
        return build(cls, values, "model_step.")
