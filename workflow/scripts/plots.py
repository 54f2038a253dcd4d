"""Draw the metric curves and gain heatmaps."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot import pipeline  # noqa: E402

with pipeline.job_logging(snakemake.log[0]):
    pipeline.plots_job(snakemake.input.curves, list(snakemake.output.curves) + list(snakemake.output.gains))
