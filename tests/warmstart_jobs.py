"""Job functions for tests/test_warmstart.py: what `warmstart.run` calls, without torch."""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from pathlib import Path

IMPORTED_IN = os.getpid()  # the process that imported this module: the warm server, or the job's own


def report(path: str, value=None) -> None:
    """Write where this job ran and what it was given."""
    logging.getLogger("sweetspot").info("reporting to %s", path)
    Path(path).write_text(json.dumps({"pid": os.getpid(), "ppid": os.getppid(), "imported_in": IMPORTED_IN,
                                      "cwd": os.getcwd(), "env": os.environ.get("WARMSTART_TEST"), "value": value}))


def write_after(path: str, seconds: float) -> None:
    """Write `path` after `seconds`: a job still running when a test kills something (once `path`.started is there)."""
    Path(f"{path}.started").touch()
    time.sleep(seconds)
    Path(path).write_text("written")


def fail(message: str) -> None:
    raise RuntimeError(message)


def exit_with(code) -> None:
    sys.exit(code)
