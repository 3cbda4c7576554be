"""GPU benchmarks (Fig. 5, Fig. 6, GEMM and sparsify tables); on a CPU-only machine, 'skipped' records."""
from pathlib import Path

from act24.gpubench import GpuBenchConfig, write_results
from act24.io import log_to

with log_to(snakemake.log[0]):
    p = dict(snakemake.params.cfg)
    cfg = GpuBenchConfig(shapes={k: tuple(v) for k, v in p.pop("shapes").items()}, tokens=tuple(p.pop("tokens")),
                         extra_zero_fracs=tuple(p.pop("extra_zero_fracs")), **p)
    write_results(Path(snakemake.output.sidecar).parent, cfg, progress=lambda msg: print(msg, flush=True))
