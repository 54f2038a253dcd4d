"""Draw one attribution gallery across sparsities."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.jobs import reports as report_jobs  # noqa: E402
from sweetspot.runtime.joblog import job_logging  # noqa: E402

with job_logging(snakemake.log[0]):
    report_jobs.gallery_job(list(snakemake.input), snakemake.output[0],
                            f"{snakemake.wildcards.arch}, {snakemake.wildcards.method} pruning")
