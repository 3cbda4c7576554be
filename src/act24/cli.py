"""Console entry point: `act24 train|sweep|backends|bench-gpu|params|env|wheels`."""

from __future__ import annotations

import argparse
import json
import sys

from . import __version__
from .config import ConfigError, RunConfig
from .data import DataError
from .io import InputFileError, SetupError, reading


def _train(args) -> int:
    """One run: from a run config (--config, with its token files), or from the workflow's config with KEY=VALUE
    settings (its corpus made first if missing)."""
    from .train import describe, train

    if args.config:
        cfg, tokens, out = _run_from_file(args)
    else:
        from .sweep import make_token_files, single_run

        config, cfg, folder = single_run(args.configfile, args.assignments, args.variant, args.seed)
        tokens, out = make_token_files(config, args.configfile), args.out or folder
        print(f"{cfg.name}: {out}", flush=True)
    summary = train(cfg, *tokens, out, progress=not args.quiet, resume_dir=args.resume_dir,
                    keep_resume=args.keep_resume)
    print(f"{describe(summary)} -> {out}")
    return 0


def _run_from_file(args):
    from pathlib import Path

    from .experiment import apply_assignments

    missing = [f"--{k.replace('_', '-')}" for k in ("train_tokens", "val_tokens", "out") if not getattr(args, k)]
    if missing or args.assignments:
        raise ConfigError(f"act24 train --config needs {', '.join(missing) or 'no KEY=VALUE (use --set)'}")
    with reading(args.config, "run config", hint="give a RunConfig JSON, or a finished run's summary.json "
                                                  "(results/runs/<variant>/seed<k>/summary.json: its \"config\")"):
        spec = json.loads(Path(args.config).read_text())
    cfg = RunConfig.from_dict(apply_assignments(spec.get("config", spec) if "final_val_loss" in spec else spec,
                                                args.set))
    return cfg, (args.train_tokens, args.val_tokens), args.out


def _sweep(args) -> int:
    from pathlib import Path

    from .sweep import load_config, sweep

    config, runs = load_config(args.configfile)
    data = Path(config["results"]) / "data"
    if args.offline:
        from .offline import unpack

        unpack(args.offline, data)
    rows = sweep(config, runs, str(data / "train.npy"), str(data / "val.npy"), args.parallel, args.variants,
                 args.seeds)
    failed = [r for r in rows if r["status"].startswith("failed")]
    print(f"{len(rows) - len(failed)} runs finished, {len(failed)} failed (see failed.json in their folders)")
    return 1 if failed else 0


def _params(args) -> int:
    from .config import FFN_KINDS, ModelConfig, parameter_counts

    base = {"d_model": args.d_model, "n_layers": args.n_layers, "n_heads": args.n_heads,
            "vocab_size": args.vocab_size, "ffn_multiple_of": args.multiple_of}
    for kind in FFN_KINDS:
        print(kind, parameter_counts(ModelConfig(**base, ffn=kind)))
    return 0


def _backends(args) -> int:
    from .kernels import backend_statuses
    from .kernels.cuda12 import ensure_cudart12

    import torch

    statuses = backend_statuses()
    if torch.cuda.is_available():
        print(f"device: {torch.cuda.get_device_name()}; CUDA 12 runtime for xformers: {ensure_cudart12()}")
    else:
        print("device: CPU only (no CUDA device)")
    for st in statuses:
        err = "" if st.rel_error is None else f" (rel. error {st.rel_error:.3g}, tolerance {st.tolerance:g})"
        print(f"{st.name:22s} {st.verdict}{err}\n{'':22s} {st.description}")
    if args.json:
        from .io import write_json

        write_json(args.json, [{**st.__dict__, "verdict": st.verdict} for st in statuses])
    return 0


def _bench_gpu(args) -> int:
    from pathlib import Path

    import pandas as pd

    from .gpubench import GpuBenchConfig, ModelStepConfig, combine, write_shape
    from .gpubench.run import in_fresh_process
    from .gpubench.model_step import combine_model_step, write_model_step_part

    cfg, step = GpuBenchConfig(), ModelStepConfig()
    if args.configfile:  # the workflow's settings: config/config.yaml, these files merged over it, checked alike
        from .experiment import bench_settings, check_bench_settings
        from .sweep import load_config

        config, _ = load_config(args.configfile)
        check_bench_settings(config, config["gpu_bench"].get("trained_profile"), claims=False)
        bench, model_step = bench_settings(config, config["gpu_bench"].get("trained_profile"))
        cfg, step = GpuBenchConfig.from_dict(bench), ModelStepConfig.from_dict(model_step)
    if args.quick:  # small enough to smoke-test every path, the tables and the model step in a minute or two
        cfg = GpuBenchConfig(shapes={"small": (1024, 3072)}, tokens=(2048, 8192), extra_tokens=8192, rep_ms=20,
                             rounds=3, round_ms=10, profile_iters=1, processes=2)
        step = ModelStepConfig(widths={"small": (1024, 8)}, n_layers=2, short_layers=1, full_depth={"small": 12},
                               seq_len=1024, tokens=4096, rounds=2, steps_per_round=2, warmup_steps=2, processes=2)
    out = Path(args.out)
    jobs = {f"{s}/process{p}": (s, p) for s in cfg.shapes for p in range(cfg.processes)}
    for job, (shape, process) in jobs.items():
        in_fresh_process(write_shape, out / "shapes" / job, cfg, shape, process)
    combine({job: out / "shapes" / job for job in jobs}, out)
    if not args.no_model_step:
        parts = {f"{w}/process{p}": (w, p) for w in step.widths for p in range(step.processes)}
        for part, (width, process) in parts.items():
            in_fresh_process(write_model_step_part, out / "model_step" / part, step, width, process)
        combine_model_step({part: out / "model_step" / part for part in parts}, out / "model_step.csv",
                           out / "model_step_rounds.csv", out / "model_step.json", step)
    print(pd.read_csv(out / "speedups.csv").to_string())
    return 0


def _env(_args) -> int:
    from .io import environment_info

    print(json.dumps(environment_info(), indent=2))
    for name, line in toolchain().items():
        print(f"{name}: {line}")
    return 0


def toolchain() -> dict[str, str]:
    """A line each for what the GPU paths need beyond torch: nvcc and CUTLASS's headers (the sm90a GEMM's build),
    cuSPARSELt (torch's), xformers' compiled 2:4 kernels; each "ok ..." or why not."""
    import torch

    from .io import xformers_info
    from .kernels.sm90_gemm.build import Sm90GemmUnavailable, cutlass_includes, find_nvcc

    lines = {}
    for name, probe in (("nvcc", find_nvcc), ("CUTLASS headers", lambda: cutlass_includes()[0].removeprefix("-I"))):
        try:
            lines[name] = f"ok, {probe()}"
        except Sm90GemmUnavailable as exc:
            lines[name] = f"missing: {exc}"
    version = torch.backends.cusparselt.version() if torch.backends.cusparselt.is_available() else None
    lines["cuSPARSELt"] = f"ok, {version}" if version else "missing: this torch build has no cuSPARSELt"
    x = xformers_info()
    lines["xformers 2:4 kernels"] = ("ok, " + x["xformers"]) if x.get("xformers_extensions") == "loaded" else \
        x.get("xformers_extensions", f"missing: xformers {x['xformers']}")
    return lines


def _wheels(args) -> int:
    from .wheels import DEFAULT_REQUIREMENTS, fetch

    failed = fetch(args.out, args.requirements or DEFAULT_REQUIREMENTS, args.python)
    print(f"wheels in {args.out}; on the GPU machine: python3 -m pip install --no-index --find-links {args.out} "
          "-e '.[workflow,gpu,cutlass]' (or --target a folder on PYTHONPATH)")
    return 1 if failed else 0


def _add_train(sub) -> None:
    p = sub.add_parser("train", help="train one model: `act24 train model.d_model=256 train.steps=100` (the "
                                     "workflow's config with these settings), or from a run config (--config)")
    p.add_argument("assignments", nargs="*", metavar="KEY=VALUE",
                   help="settings of config/config.yaml by dotted key, e.g. train.steps=100 model.d_model=256")
    p.add_argument("--configfile", action="append", default=[],
                   help="a config file merged over config/config.yaml first (repeatable)")
    p.add_argument("--variant", help="the variant to train (default: analysis.sparsity_variant)")
    p.add_argument("--seed", type=int, help="its seed (default: the variant's first)")
    p.add_argument("--config", help="a run config instead: JSON of act24.config.RunConfig, or a run's summary.json")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="with --config: override one of its settings, e.g. --set train.steps=10 (repeatable)")
    p.add_argument("--train-tokens", help="with --config: train.npy from the tokenize rule")
    p.add_argument("--val-tokens", help="with --config: val.npy from the tokenize rule")
    p.add_argument("--out", help="output folder (default without --config: <results>/cli/<variant>-<settings "
                                 "hash>/seed<k>)")
    p.add_argument("--resume-dir", help="folder for resumable checkpoints: a rerun continues from the last one")
    p.add_argument("--keep-resume", action="store_true", help="keep the last resumable checkpoint when the run "
                                                                   "finishes (it is removed otherwise)")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=_train)


def _add_sweep(sub) -> None:
    p = sub.add_parser("sweep", help="train the runs of a workflow config without Snakemake, several at a time (e.g. "
                                     "on an offline GPU machine); finished runs are skipped")
    p.add_argument("--configfile", nargs="+", default=[], help="config files merged over config/config.yaml, as "
                                                               "snakemake --configfile does")
    p.add_argument("--offline", help="an offline corpus bundle folder (rule offline_bundle): rebuild the token arrays "
                                      "from it first, checked against its hashes")
    p.add_argument("--parallel", type=int, default=1, help="runs at a time (they share the device)")
    p.add_argument("--variants", nargs="+", help="only these variants")
    p.add_argument("--seeds", nargs="+", type=int, help="only these seeds")
    p.set_defaults(func=_sweep)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="act24", description=__doc__)
    parser.add_argument("--version", action="version", version=f"act24 {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)

    _add_train(sub)
    _add_sweep(sub)

    p = sub.add_parser("backends", help="list the 2:4 GEMM backends, why any is unavailable, and check the "
                                        "available ones against the dense reference")
    p.add_argument("--json", help="also write the statuses to this JSON file")
    p.set_defaults(func=_backends)

    p = sub.add_parser("bench-gpu", help="GEMM, sparsify, FFN and split-GEMM benchmarks (CUDA; on a CPU it "
                                         "writes 'skipped' records)")
    p.add_argument("--out", required=True, help="output folder for the CSV tables and bench.json")
    p.add_argument("--configfile", nargs="+", default=[], help="config files whose gpu_bench and model_step sections "
                   "to use (merged over config/config.yaml, as the workflow merges them); else the defaults")
    p.add_argument("--quick", action="store_true", help="one small shape, two token counts (a smoke test)")
    p.add_argument("--no-model-step", action="store_true", help="skip the whole-model training step")
    p.set_defaults(func=_bench_gpu)

    p = sub.add_parser("params", help="parameter counts of each FFN kind for one model shape")
    p.add_argument("--d-model", type=int, default=4096)
    p.add_argument("--n-layers", type=int, default=32)
    p.add_argument("--n-heads", type=int, default=32)
    p.add_argument("--vocab-size", type=int, default=32000)
    p.add_argument("--multiple-of", type=int, default=128)
    p.set_defaults(func=_params)

    p = sub.add_parser("env", help="software versions and devices, as written next to results, and a line each for "
                                   "nvcc, CUTLASS, cuSPARSELt and xformers' kernels")
    p.set_defaults(func=_env)

    p = sub.add_parser("wheels", help="download the wheels an offline GPU machine needs (what a CUDA PyTorch image "
                                      "lacks) into a folder to carry there")
    p.add_argument("--out", required=True, help="the folder to fill")
    p.add_argument("--python", default="3.12", help="the GPU machine's Python version")
    p.add_argument("requirements", nargs="*", help="instead of the default set (xformers, the CUDA 12 runtime, "
                                                   "nvidia-cutlass, nvidia-ml-py, snakemake)")
    p.set_defaults(func=_wheels)

    args, extra = parser.parse_known_args(argv)
    if extra:  # `act24 train` takes KEY=VALUE settings after its options too
        if args.command != "train" or any("=" not in e or e.startswith("-") for e in extra):
            parser.error(f"unrecognized arguments: {' '.join(extra)}")
        args.assignments += extra
    try:
        return args.func(args)
    except ConfigError as exc:
        print(f"act24: config error: {exc}", file=sys.stderr)
        return 2
    except (InputFileError, DataError, SetupError, PermissionError) as exc:  # one line, no traceback
        print(f"act24: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
