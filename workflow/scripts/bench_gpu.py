"""One benchmark process of one FFN shape (Fig. 5, Fig. 6, GEMM, sparsify, kernel breakdown); without CUDA,
'skipped'."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    from pathlib import Path

    from act24.gpubench import GpuBenchConfig, write_shape

    cfg = GpuBenchConfig.from_dict(snakemake.params.cfg)
    write_shape(Path(snakemake.output.sidecar).parent, cfg, snakemake.wildcards.shape, int(snakemake.wildcards.process))
