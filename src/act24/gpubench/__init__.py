"""GPU benchmarks mirroring the paper's Fig. 5 (FFN speedup vs tokens) and Fig. 6 (split GEMM), plus the GEMM-level
and sparsify-step tables, the per-kernel breakdown with its bounds, and a whole-model training step.

- `config`: the settings (`GpuBenchConfig`, `ModelStepConfig`);
- `harness`: inputs, the correctness gate, timing in interleaved rounds with CUDA events, kernel breakdowns;
- `paths`: the FFN paths compared (every dense baseline, every 2:4 path), per precision;
- `ffn`, `gemm`, `sparsify`: the measurements; `model_step`: the whole-model step;
- `tables`: speedups with paired intervals and bounds, stages (pure; run anywhere);
- `run`: one shape's tables to CSV, and the combination of all shapes.

Every sparse result is compared with a dense reference on the same inputs before it is timed; a failing path is
a row with status "incorrect: ..." or "failed: ..." and no time. Nothing is compiled or configured at import.
"""

from .config import GpuBenchConfig, ModelStepConfig
from .run import DERIVED_TABLES, NO_CUDA, SHAPE_TABLES, TABLES, combine, write_shape

__all__ = ["GpuBenchConfig", "ModelStepConfig", "DERIVED_TABLES", "NO_CUDA", "SHAPE_TABLES", "TABLES", "combine",
           "write_shape"]
