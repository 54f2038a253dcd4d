"""Evaluate one checkpoint on every configured task."""
import sys

sys.path.insert(0, f"{snakemake.scriptdir}/../..")
from sweetspot.runtime import warmstart as forkserver  # noqa: E402  (light: torch is imported by the warm server, or on demand)

forkserver.run_rule(snakemake)
