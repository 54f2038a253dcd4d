"""Merge all task results and compute the sweet-spot tables."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.aggregate_job(snakemake.config, list(snakemake.input), dict(snakemake.output.items()))
