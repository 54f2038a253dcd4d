# sweetspot: when does pruning benefit vision representations?
# `snakemake --cores N` runs the study in config.yaml; `--configfile presets/<name>.yaml` another one.

from snakemake.utils import min_version

min_version("9.0")


# A preset given with --configfile replaces the default study instead of merging into it.
if not workflow.overwrite_configfiles:

    configfile: "config.yaml"


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/models.smk"
include: "workflow/rules/evaluate.smk"
include: "workflow/rules/aggregate.smk"


report: "workflow/report/workflow.rst"


rule all:
    input:
        final_targets(),
    default_target: True
