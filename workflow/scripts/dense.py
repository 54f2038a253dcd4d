"""Train (or load) one dense model, and evaluate it when fuse_evaluation is on."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart as forkserver  # noqa: E402  (light: torch is imported by the warm server, or on demand)

forkserver.run_rule(snakemake)
