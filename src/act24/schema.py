"""Writes the sections of the workflow's JSON schema that the settings dataclasses declare.

    python -m act24.schema            # rewrite workflow/schemas/config.schema.yaml in place
    python -m act24.schema --check    # exit 1 if the committed schema differs from the declarations

The other sections (results, data, variants' names, seeds, analysis) are written in the schema file itself.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import yaml

from .config import FFN_KINDS, ModelConfig, SparseConfig, TrainConfig
from .gpubench.config import GpuBenchConfig, ModelStepConfig
from .report.claims import ClaimThresholds
from .settings import json_schema

SCHEMA = Path(__file__).resolve().parents[2] / "workflow" / "schemas" / "config.schema.yaml"
RUN_SECTIONS = {"model": ModelConfig, "train": TrainConfig, "sparse": SparseConfig}
SECTIONS = {**RUN_SECTIONS, "gpu_bench": GpuBenchConfig, "model_step": ModelStepConfig, "claims": ClaimThresholds}


def declared(schema: dict) -> dict:
    """`schema` with every declared section replaced by what its dataclass declares."""
    out = dict(schema, properties=dict(schema["properties"]))
    for name, cls in SECTIONS.items():
        out["properties"][name] = {**json_schema(cls), "description": f"declared by {cls.__module__}.{cls.__name__}"}
    variant = out["properties"]["variants"]["additionalProperties"]
    variant["properties"] = {**variant["properties"], "ffn": {"enum": list(FFN_KINDS)},
                             **{name: json_schema(cls, defaults=False) for name, cls in RUN_SECTIONS.items()}}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only compare; exit 1 on a difference")
    parser.add_argument("--schema", type=Path, default=SCHEMA)
    args = parser.parse_args(argv)
    schema = yaml.safe_load(args.schema.read_text())
    wanted = declared(schema)
    if args.check:
        if wanted != schema:
            print(f"{args.schema} differs from the declared settings: run `python -m act24.schema`", file=sys.stderr)
            return 1
        return 0
    args.schema.write_text("# The model, train, sparse, gpu_bench, model_step and claims sections (and the variants' model, train and sparse)\n# are written by `python -m act24.schema` from the settings dataclasses: edit those, then run it.\n" + yaml.safe_dump(wanted, sort_keys=False, width=120, allow_unicode=True, default_flow_style=None))
    return 0


if __name__ == "__main__":
    sys.exit(main())
