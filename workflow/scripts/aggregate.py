"""Merge all task results and compute the sweet-spot tables."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.jobs import reports as report_jobs  # noqa: E402
from sweetspot.runtime.joblog import job_logging  # noqa: E402

with job_logging(snakemake.log[0]):
    report_jobs.aggregate_job(snakemake.config, list(snakemake.input), dict(snakemake.output.items()))
