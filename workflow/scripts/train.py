"""Train one (variant, seed) run with the threads Snakemake granted (in train.processes processes)."""
from act24.io import log_to

with log_to(snakemake.log[0]):  # the imports too: an import error also ends the job's log
    import dataclasses

    from act24.config import RunConfig
    from act24.distributed import train_data_parallel
    from act24.train import describe, train

    cfg = RunConfig.from_dict(snakemake.params.run)
    threads = max(1, snakemake.threads // cfg.train.processes)  # per process
    res = snakemake.resources
    cfg = dataclasses.replace(cfg, train=dataclasses.replace(
        cfg.train, threads=threads, checkpoint_every=res.checkpoint_every, log_every=res.log_every,
        tensorboard=bool(res.tensorboard)))
    out_dir, resume_dir = snakemake.params.out_dir, snakemake.params.resume_dir
    # Both keep the resume checkpoint: the Snakefile's onsuccess removes it once Snakemake has recorded the outputs.
    if cfg.train.processes > 1:
        summary = train_data_parallel(cfg, snakemake.input.train, snakemake.input.val, out_dir, resume_dir)
    else:
        summary = train(cfg, snakemake.input.train, snakemake.input.val, out_dir, resume_dir=resume_dir,
                        keep_resume=True)
    print(describe(summary))
