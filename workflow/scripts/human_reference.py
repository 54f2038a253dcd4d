"""Human-to-human reference values for the alignment metrics."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.human_reference_job(snakemake.config, list(snakemake.params.experiments), snakemake.output[0])
