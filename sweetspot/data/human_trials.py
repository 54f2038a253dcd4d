"""Human psychophysics trials of model-vs-human (Geirhos et al., NeurIPS 2021), one row per trial.

The raw CSVs (`<human_dir>/<experiment>/*.csv`, columns subj, session|Session, trial, rt,
object_response, category, condition, imagename) are turned into a frame whose `item` is the
same string a model's trial on that stimulus carries, so model and human trials join on it:
`<experiment>/<category>/<image identifier>`, e.g. `cue-conflict/bird/bird3-bird2.png` (the
stimulus path under geirhos16's `stimuli/` where the images are present) or
`contrast/knife/n03041632_7380.png` for the ImageNet-derived experiments. `human_dir` is
geirhos16's `human/` or model-vs-human's `raw-data/` (the same layout, all 17 experiments).

Image names follow the model-vs-human convention, fields separated by '_':
trial number, experiment code, observer (s01 or dnn), condition, category, an unused number,
then the image identifier, which itself may contain '_' (ImageNet names such as
`n03041632_7380.png`; see the raw-data section of github.com/rgeirhos/generalisation-humans-DNNs).
Taking only the part after the last '_' would therefore cut ImageNet identifiers in half.
"""

from __future__ import annotations

import io
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from .images import DataError, safe_join

logger = logging.getLogger(__name__)

REQUIRED_COLUMNS = ("subj", "object_response", "category", "condition", "imagename")
TRIAL_COLUMNS = ("experiment", "subject", "condition", "item", "category", "texture", "response", "correct")
NO_RESPONSE = "na"  # what the CSVs record when an observer did not answer in time: counts as an error


def parse_imagename(imagename: str) -> tuple[str, str, str]:
    """(condition, category, image identifier) encoded in a model-vs-human image name.

    `0001_cop_s01_c30_knife_10_n03041632_7380.png` -> ("c30", "knife", "n03041632_7380.png").
    """
    fields = imagename.split("_")
    if len(fields) < 7 or not all(fields[:7]):
        raise ValueError(f"image name {imagename!r} does not have the 7 '_'-separated fields "
                         "trial_experiment_observer_condition_category_number_identifier")
    return fields[3], fields[4], "_".join(fields[6:])


def texture_category(identifier: str) -> str:
    """The texture category of a cue-conflict image identifier: `bird3-clock2.png` -> `clock`."""
    stem = Path(identifier).stem
    if "-" not in stem:
        return ""
    return stem.rsplit("-", 1)[1].rstrip("0123456789")


def trial_item(experiment: str, category: str, identifier: str) -> str:
    """The join key of a trial: `<experiment>/<category>/<image identifier>`."""
    return f"{experiment}/{category}/{identifier}"


def load_experiment(human_dir: str | Path, experiment: str, stimuli_dir: str | Path | None = None) -> pd.DataFrame:
    """All human trials of one experiment under `<human_dir>/<experiment>/`.

    Columns: experiment, subject, condition, item, category (the correct, i.e. shape,
    category), texture (cue-conflict texture category, "" otherwise), response, correct (0/1).
    Raises DataError for a CSV that lacks a needed column or has a malformed image name, a
    subject who saw the same stimulus twice (joins with model trials assume one trial per
    subject and item) and, with `stimuli_dir`, a trial whose stimulus would leave it or is
    missing although the experiment's images are present under `<stimuli_dir>/<experiment>`.
    """
    folder = safe_join(human_dir, experiment)
    csvs = sorted(folder.glob("*.csv"))
    if not csvs:
        raise DataError(f"{folder}: no human trial CSVs; expected <human trials folder>/<experiment>/*.csv "
                        "(geirhos16's human/ or model-vs-human's raw-data/)")
    frames = [_read_csv(path, experiment) for path in csvs]
    if stimuli_dir is not None:
        _check_stimuli(Path(stimuli_dir), experiment, csvs, frames)
    frame = pd.concat(frames, ignore_index=True)
    duplicated = frame.duplicated(["subject", "item"])
    if duplicated.any():
        row = frame[duplicated].iloc[0]
        raise DataError(f"{folder}: subject {row.subject} has more than one trial on {row['item']}; "
                        "remove the duplicate rows or CSV")
    logger.info("%s: %d trials from %d subjects", experiment, len(frame), frame["subject"].nunique())
    return frame


def load_trials(root: str | Path, experiment: str) -> pd.DataFrame:
    """load_experiment in the geirhos16 layout: trials in `<root>/human`, stimuli in `<root>/stimuli`."""
    root = Path(root)
    return load_experiment(root / "human", experiment, root / "stimuli")


def _decoded(path: Path) -> str:
    """The CSV's text: UTF-8 (with or without a byte-order mark) or UTF-16 with its mark. Other
    encodings are refused, not guessed: a wrong guess would silently misspell categories."""
    data = path.read_bytes()
    encoding = "utf-16" if data[:2] in (b"\xff\xfe", b"\xfe\xff") else "utf-8-sig"
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as err:
        name = "UTF-16" if encoding == "utf-16" else "UTF-8"
        raise DataError(f"{path}: not {name} text (byte {data[err.start:err.start + 1]!r} at offset {err.start}); "
                        "save it as UTF-8 (a Latin-1 file: iconv -f LATIN1 -t UTF-8)") from None


def _read_csv(path: Path, experiment: str) -> pd.DataFrame:
    # Strings throughout: conditions such as "0.10" or "false" must keep their spelling, and
    # the response "na" must not become a missing value.
    try:
        raw = pd.read_csv(io.StringIO(_decoded(path)), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as err:
        raise DataError(f"{path}: not a readable CSV ({err}); restore the file from the data release") from None
    raw.columns = [c.strip().lower() for c in raw.columns]  # some experiments spell "Session"
    for column in REQUIRED_COLUMNS:
        if column not in raw.columns:
            raise DataError(f"{path}: missing column {column!r}; a model-vs-human trial CSV has "
                            f"columns {', '.join(REQUIRED_COLUMNS)} (plus session, trial, rt)")
    identifiers = []
    for imagename in raw["imagename"]:
        try:
            identifiers.append(parse_imagename(imagename)[2])
        except ValueError as err:
            raise DataError(f"{path}: {err}") from None
    category = raw["category"].str.strip()
    response = raw["object_response"].str.strip()
    return pd.DataFrame({
        "experiment": experiment,
        "subject": raw["subj"].str.strip(),
        "condition": raw["condition"].str.strip(),
        "item": [trial_item(experiment, c, i) for c, i in zip(category, identifiers)],
        "category": category,
        "texture": [texture_category(i) if experiment == "cue-conflict" else "" for i in identifiers],
        "response": response,
        "correct": (response == category).to_numpy(np.int64),
    }, columns=list(TRIAL_COLUMNS))


def _check_stimuli(stimuli: Path, experiment: str, csvs: list[Path], frames: list[pd.DataFrame]) -> None:
    """Every item stays inside `stimuli` and, where the experiment's images are there, exists."""
    has_images = (stimuli / experiment).is_dir()
    first_csv: dict[str, Path] = {}
    for path, frame in zip(csvs, frames):
        for item in frame["item"]:
            first_csv.setdefault(item, path)
    for item, path in first_csv.items():
        try:
            stimulus = safe_join(stimuli, item)
        except DataError as err:
            raise DataError(f"{path}: {err}") from None
        if has_images and not stimulus.is_file():
            raise DataError(f"{path}: stimulus {item} not found under {stimuli}; the CSV and the "
                            "stimulus folder come from different releases, or images are missing")
