# Reproduce "Accelerating Transformer Inference and Training with 2:4 Activation Sparsity" (arXiv 2503.16672).
# Default: the CPU pipeline of config/config.yaml. Other configs: snakemake --configfile config/<name>.yaml
import os

from snakemake.utils import min_version

min_version("9.0")


# The default config lives next to this Snakefile; `--configfile` files and `--config` values override it.
configfile: os.path.join(workflow.basedir, "config", "config.yaml")


report: "workflow/report/workflow.rst"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/train.smk"
include: "workflow/rules/analyze.smk"
include: "workflow/rules/bench.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/scale.smk"


rule all:
    input:
        rules.report_all.input,
        rules.scale_all.input,
    default_target: True
