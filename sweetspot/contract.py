"""The artifact contract: one long-form row per measured item (DESIGN section 4).

Every evaluation job writes a frame with exactly these columns; the aggregator depends on
nothing else, so a new task plugs in without touching it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata
from typing import Any, Iterable, Mapping

import pandas as pd

COLUMNS: dict[str, str] = {
    "benchmark": "string",
    "arch": "string",
    "method": "string",
    "sparsity": "float64",
    "sparsity_actual": "float64",
    "seed": "int64",
    "task": "string",
    "dataset": "string",
    "variant": "string",
    "metric": "string",
    "item": "string",
    "value": "float64",
}
# What a task returns; the job adds the identity of the checkpoint it evaluated.
TASK_COLUMNS = ("dataset", "variant", "metric", "item", "value")
IDENTITY_COLUMNS = ("benchmark", "arch", "method", "sparsity", "sparsity_actual", "seed", "task")

TASKS = ("accuracy", "interpretability", "discovery", "alignment")
METHODS = ("dense", "magnitude", "imp", "snip", "random")

# Direction of every metric: True when higher is better. Unknown metrics are refused by
# the aggregator, so each new metric must say which way is good.
HIGHER_IS_BETTER: dict[str, bool] = {
    "top1": True,
    "top5": True,
    "rma": True,
    "rra": True,
    "pointing_game": True,
    "deletion_auc": False,  # a faithful map makes the score collapse fast
    "insertion_auc": True,
    "corloc": True,
    "iou": True,
    "mask_iou": True,
    "correct": True,
    "accuracy": True,
    "shape_decision": True,
    "texture_decision": False,
    "shape_bias": True,  # towards the human value (about 0.96)
    "accuracy_difference": False,
    "observed_consistency": True,
    "error_consistency": True,
    "shape_or_texture": True,
    "flag_zero_map": False,
    "flag_nonfinite_map": False,
    "flag_skipped": False,  # an item a task could not score (e.g. no mask), counted, never dropped silently
}


def task_frame(rows: Iterable[Mapping[str, Any]]) -> pd.DataFrame:
    """Build a task's frame (dataset, variant, metric, item, value) from row dicts."""
    frame = pd.DataFrame(list(rows), columns=list(TASK_COLUMNS))
    return frame.astype({c: COLUMNS[c] for c in TASK_COLUMNS})


def with_identity(frame: pd.DataFrame, **identity: Any) -> pd.DataFrame:
    """Add the checkpoint's identity columns and return the frame in contract order and types."""
    missing = set(IDENTITY_COLUMNS) - set(identity)
    if missing:
        raise ValueError(f"identity lacks {sorted(missing)}")
    out = frame.copy()
    for key in IDENTITY_COLUMNS:
        out[key] = identity[key]
    return validate(out[list(COLUMNS)])


def validate(frame: pd.DataFrame, source: str = "frame") -> pd.DataFrame:
    """Check columns and types of a contract frame; return it with contract dtypes."""
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise ValueError(f"{source}: missing contract columns {missing}")
    frame = frame[list(COLUMNS)].astype(COLUMNS)
    unknown = sorted(set(frame["metric"].unique()) - set(HIGHER_IS_BETTER))
    if unknown:
        raise ValueError(f"{source}: metrics {unknown} have no direction in sweetspot.contract.HIGHER_IS_BETTER")
    return frame


def package_versions() -> dict[str, str]:
    versions = {}
    for name in ("sweetspot", "torch", "timm", "captum", "numpy", "pandas", "pyarrow", "scikit-learn", "scipy"):
        try:
            versions[name] = importlib_metadata.version(name)
        except importlib_metadata.PackageNotFoundError:
            continue
    return versions


def config_hash(config: Mapping[str, Any]) -> str:
    """A short stable hash of a (JSON-serialisable) config section."""
    blob = json.dumps(config, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def provenance(config: Mapping[str, Any]) -> dict[str, str]:
    """Parquet metadata: package versions and the config hash."""
    return {"sweetspot.versions": json.dumps(package_versions(), sort_keys=True),
            "sweetspot.config_hash": config_hash(config)}
