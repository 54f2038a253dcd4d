"""The artifact contract: one long-form row per measured item (docs/methods.md, "Artifacts").

Every evaluation job writes a frame with exactly these columns; the aggregator depends on
nothing else, so a new task plugs in without touching it.
"""

from __future__ import annotations

import hashlib
import json
from importlib import metadata as importlib_metadata
from typing import Any, Iterable, Mapping

import pandas as pd

from .catalog import METRICS

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
    unknown = sorted(set(frame["metric"].unique()) - set(METRICS))
    if unknown:
        raise ValueError(f"{source}: metrics {unknown} are not in sweetspot.catalog.METRICS; "
                         "every metric must declare its direction and role there")
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
