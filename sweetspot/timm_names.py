"""timm's model names without importing torch on every Snakemake start.

The list is cached per timm version (a few hundred kB of JSON), so checking a config costs
milliseconds after the first time instead of the seconds an import of timm takes.
"""

from __future__ import annotations

import difflib
import json
import os
from importlib import metadata
from pathlib import Path


def _cache_file() -> Path:
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "sweetspot" / f"timm-{metadata.version('timm')}-names.json"


def available() -> list[str]:
    cache = _cache_file()
    try:
        return json.loads(cache.read_text())
    except (OSError, ValueError):
        pass
    import timm

    # Architectures and architecture.pretrained_tag names (e.g. resnet18.tv_in1k).
    names = sorted(set(timm.list_models()) | set(timm.list_pretrained()))
    try:
        from .artifacts import write_text

        write_text(cache, json.dumps(names))
    except OSError:
        pass  # a read-only home only costs speed
    return names


def check(name: str) -> None:
    """Raise a ValueError naming close matches when timm has no model called `name`."""
    names = available()
    if name in names:
        return
    close = difflib.get_close_matches(name, names, n=5, cutoff=0.6)
    hint = f"; did you mean {', '.join(close)}?" if close else "; `timm.list_models('*pattern*')` lists names"
    raise ValueError(f"unknown timm architecture {name!r}{hint}")
