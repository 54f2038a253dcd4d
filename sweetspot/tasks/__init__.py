"""Evaluation tasks, one interface.

A task is a module here that defines
- `run(ctx, dataset, samples, settings) -> frame`: the per-item rows (contract columns dataset,
  variant, metric, item, value) of one dataset, plus `flag_skipped` rows for items it could not
  score. `ctx` is a `sweetspot.tasks.context.EvalContext`, `settings` the task's config block.
- optionally `summarise(ctx, dataset, rows, settings) -> frame`: set-level rows (item "")
  computed from all of the dataset's per-item rows. The job calls it once after `run`, also when
  cross-fitting split the items between two models.

Adding a task means its module, its block in workflow/schemas/config.schema.yaml, its metrics
in sweetspot.catalog and its section in docs/methods.md.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from ..catalog import TASKS


def load(name: str) -> ModuleType:
    """The task module `name` (one of sweetspot.catalog.TASKS)."""
    if name not in TASKS:
        raise ValueError(f"unknown task {name!r}; choose from {', '.join(TASKS)}")
    return importlib.import_module(f"{__name__}.{name}")
