"""Generate the embedded synthetic benchmark."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.synthetic_job(snakemake.config, snakemake.output[0])
