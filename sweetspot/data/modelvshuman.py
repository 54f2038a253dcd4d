"""The 17 model-vs-human datasets in their released on-disk layout (Geirhos et al., NeurIPS 2021).

For users who have the datasets locally (github.com/bethgelab/model-vs-human releases them;
they are not redistributable here). Two layouts, as model-vs-human's own loaders read them:

- parametric and sketch/stylized datasets: `<root>/<name>/dnn/session-1/<imagename>`, where the
  image name encodes condition and category (`0001_cop_dnn_c30_knife_10_n03041632_7380.png`:
  condition c30, category knife; see sweetspot.data.human_trials.parse_imagename);
- cue-conflict, edge, silhouette: `<root>/<name>/<category>/<image>` with no condition.

A sample's item is `<name>/<category>/<image identifier>`, the same string as the item of the
human trials on that stimulus (sweetspot.data.human_trials.load_trials), so that model and
human trials join on it. The condition goes to `sample.extra["condition"]` where there is one.
"""

from __future__ import annotations

from pathlib import Path

from .geirhos import CATEGORIES
from .human_trials import parse_imagename, texture_category, trial_item
from .images import DataError, read_rgb
from .samples import Sample

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

# model-vs-human's dataset names; the last three use the category-folder layout.
DATASETS = (
    "colour", "contrast", "high-pass", "low-pass", "phase-scrambling", "power-equalisation",
    "false-colour", "rotation", "eidolonI", "eidolonII", "eidolonIII", "uniform-noise",
    "sketch", "stylized", "edge", "silhouette", "cue-conflict",
)
CATEGORY_FOLDER_DATASETS = ("edge", "silhouette", "cue-conflict")
# Datasets whose image names carry a placeholder condition ("0") rather than a real one.
WITHOUT_CONDITIONS = ("sketch", "stylized", "edge", "silhouette", "cue-conflict")


def load_dataset(datasets_root: str | Path, name: str, size: int | None, *, max_side: int | None = None) -> list[Sample]:
    """All images of one model-vs-human dataset in sorted file order, at size x size or at their
    own size (size=None, longer side capped at max_side), see geometry.output_size.

    Labels index into CATEGORIES; cue-conflict samples also carry texture_label.
    """
    if name not in DATASETS:
        raise ValueError(f"unknown model-vs-human dataset {name!r}; known: {', '.join(DATASETS)}")
    folder = Path(datasets_root) / name
    if not folder.is_dir():
        raise DataError(f"{folder}: dataset folder not found; unpack the model-vs-human datasets under {datasets_root}")
    entries = _category_layout(folder) if name in CATEGORY_FOLDER_DATASETS else _session_layout(folder)
    if not entries:
        raise DataError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the expected layout")
    samples = []
    for path, condition, category, identifier in entries:
        if category not in CATEGORIES:
            raise DataError(f"{path}: category {category!r} is not one of the 16 model-vs-human categories")
        texture = texture_category(identifier) if name == "cue-conflict" else ""
        if texture and texture not in CATEGORIES:
            raise DataError(f"{path}: texture {texture!r} is not one of the 16 model-vs-human categories")
        extra = {} if name in WITHOUT_CONDITIONS else {"condition": condition}
        samples.append(Sample(item=trial_item(name, category, identifier), image=read_rgb(path, size, max_side=max_side),
                              label=CATEGORIES.index(category),
                              texture_label=CATEGORIES.index(texture) if texture else -1, extra=extra))
    return samples


def _images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir()
                  if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES)


def _session_layout(folder: Path) -> list[tuple[Path, str, str, str]]:
    sessions = folder / "dnn"
    if not sessions.is_dir():
        raise DataError(f"{folder}: expected the layout {folder.name}/dnn/session-1/<imagename>")
    entries = []
    for session in sorted(p for p in sessions.iterdir() if p.is_dir() and p.name.startswith("session-")):
        for path in _images(session):
            try:
                condition, category, identifier = parse_imagename(path.name)
            except ValueError as err:
                raise DataError(f"{path}: {err}") from None
            entries.append((path, condition, category, identifier))
    return entries


def _category_layout(folder: Path) -> list[tuple[Path, str, str, str]]:
    return [(path, "", category.name, path.name)
            for category in sorted(p for p in folder.iterdir() if p.is_dir() and not p.name.startswith("."))
            for path in _images(category)]
