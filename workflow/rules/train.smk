# One training run per (variant, seed).


# With analysis.finished_runs_only the finished runs' files are inputs as they are: no rule makes them.
if not FINISHED_ONLY:

    rule train:
        input:
            train=rules.tokenize.output.train,
            val=rules.tokenize.output.val,
        output:
            metrics=f"{RUN}/{METRICS}",
            stats=f"{RUN}/{STATS}",
            density=f"{RUN}/{DENSITY}",
            checkpoint=f"{RUN}/{CHECKPOINT}",
            summary=f"{RUN}/{SUMMARY}",
        params:
            # The settings that change results: a change reruns the job. The others (threads, checkpoint_every,
            # log_every, tensorboard) come from `threads` and `resources`, which are no rerun triggers.
            run=lambda w: RUNS[(w.variant, int(w.seed))].to_dict(neutral=False),
            out_dir=lambda w, output: os.path.dirname(output.summary),
            # Not an output: Snakemake never deletes it, so a rerun after a crash resumes from it.
            resume_dir=lambda w: str(resume_dir(RESULTS, w.variant, int(w.seed))),
        threads: lambda w: RUNS[(w.variant, int(w.seed))].train.threads  # a variant may set its own
        resources:
            gpu_percent=gpu_percent,
            checkpoint_every=lambda w: RUNS[(w.variant, int(w.seed))].train.checkpoint_every,
            log_every=lambda w: RUNS[(w.variant, int(w.seed))].train.log_every,
            tensorboard=lambda w: int(RUNS[(w.variant, int(w.seed))].train.tensorboard),
        conda:
            "../../environment.yml"
        log:
            f"{LOGS}/train/{{variant}}/seed{{seed}}.log",
        script:
            "../scripts/train.py"


onsuccess:
    # Snakemake has recorded every job of this invocation by now: the resume checkpoints of the runs it finished
    # can go (not those of runs an earlier, killed invocation left incomplete).
    for folder in remove_finished_resume_folders(RESULTS, RUNS, finished_since=STARTED):
        print(f"removed the resume checkpoint of a finished run: {folder}")
