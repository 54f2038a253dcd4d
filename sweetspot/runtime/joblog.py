"""A job's logging: everything a Snakemake job logs, and its progress bars, go to the rule's log file."""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path

log = logging.getLogger("sweetspot")


@contextlib.contextmanager
def job_logging(log_path: str | Path | None):
    """Send logging and stderr (tqdm progress bars) to the rule's log file."""
    if log_path is None:
        yield
        return
    log_path = Path(log_path)
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "w", buffering=1) as fh:
        handler = logging.StreamHandler(fh)
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
        root = logging.getLogger()
        root.addHandler(handler)
        root.setLevel(logging.INFO)
        old_stderr = sys.stderr
        sys.stderr = fh
        try:
            yield
        except BaseException:
            log.exception("job failed")
            raise
        finally:
            sys.stderr = old_stderr
            root.removeHandler(handler)
