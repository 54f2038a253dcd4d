"""Human-alignment metrics, human trials and the model-vs-human layouts."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from sklearn.metrics import cohen_kappa_score

from sweetspot.data.human_trials import load_trials, parse_imagename
from sweetspot.data.images import DataError
from sweetspot.metrics import human

torch.set_num_threads(1)
GEIRHOS = Path("/work/shared/data/geirhos16")
CSV_HEADER = "subj,Session,trial,rt,object_response,category,condition,imagename\n"


# --- metrics on arrays ----------------------------------------------------------------

def test_error_consistency_is_cohens_kappa():
    rng = np.random.default_rng(0)
    checked = 0
    for _ in range(300):
        n = int(rng.integers(2, 60))
        a = rng.random(n) < rng.random()
        b = np.where(rng.random(n) < rng.random(), a, rng.random(n) < rng.random())
        if a.all() and b.all() or (~a).all() and (~b).all():
            continue  # c_exp == 1: kappa undefined for sklearn, covered below
        expected = cohen_kappa_score(a, b)
        assert human.error_consistency(a, b) == pytest.approx(expected, abs=1e-12)
        checked += 1
    assert checked > 250


def test_error_consistency_when_both_always_right_or_wrong_is_one():
    assert human.error_consistency(np.ones(5), np.ones(5)) == 1.0
    assert human.error_consistency(np.zeros(5), np.zeros(5)) == 1.0
    # one always right, the other always wrong: c_exp = 0, c_obs = 0
    assert human.error_consistency(np.ones(4), np.zeros(4)) == 0.0


def test_observed_consistency_and_accuracy_difference_by_hand():
    a = np.array([1, 1, 0, 0, 1])
    b = np.array([1, 0, 0, 1, 1])
    assert human.observed_consistency(a, b) == pytest.approx(3 / 5)
    assert human.accuracy(a) == pytest.approx(0.6)
    # two conditions: (0.6 - 0.2)^2 and (0.5 - 0.5)^2, averaged
    assert human.accuracy_difference([0.6, 0.5], [0.2, 0.5]) == pytest.approx((0.16 + 0.0) / 2)
    with pytest.raises(ValueError):
        human.observed_consistency(a, b[:3])


def test_shape_bias_and_shape_or_texture_by_hand():
    shape = np.array([0, 0, 1, 1, 2, 2, 3])
    texture = np.array([1, 2, 0, 3, 0, 1, 3])  # last trial: no conflict, ignored
    decisions = np.array([0, 2, 0, 1, 5, 0, 3])
    # conflict trials 0-5: shape decisions at 0 and 3, texture decisions at 1 and 2, neither at 4 and 5
    assert human.shape_bias(decisions, shape, texture) == pytest.approx(2 / 4)
    assert human.shape_or_texture(decisions, shape, texture) == pytest.approx(4 / 6)
    assert np.isnan(human.shape_bias(np.full(7, 9), shape, texture))


def test_decide_own_classes_and_mean_of_groups():
    probabilities = torch.tensor([[0.40, 0.35, 0.25], [0.1, 0.2, 0.7]])
    logits = probabilities.log() + 3.0  # softmax returns the probabilities
    assert human.decide(logits).tolist() == [0, 2]
    groups = [[0, 2], [1]]
    # row 0: mean(0.40, 0.25) = 0.325 < 0.35, so group 1 wins although class 0 is the top class
    # (a sum over groups would pick group 0); row 1: mean(0.1, 0.7) = 0.4 > 0.2
    assert human.decide(logits, groups).tolist() == [1, 0]
    assert human.decide(logits.numpy(), groups).dtype == np.int64
    with pytest.raises(ValueError):
        human.decide(logits, [[0], [3]])


# --- human trials ---------------------------------------------------------------------

def _trials(rows):
    return pd.DataFrame(rows, columns=["experiment", "subject", "condition", "item", "category", "texture",
                                       "response", "correct"])


def test_compare_to_subjects_averages_over_subjects_on_shared_items():
    model = pd.Series([1.0, 0.0, 1.0, 1.0], index=["a", "b", "c", "d"])
    rows = []
    for subject, correct in (("s1", [1, 0, 0, 1]), ("s2", [0, 1, 1])):
        for item, c in zip("abcd", correct):
            rows.append(("e", subject, "0", item, "x", "", "x" if c else "y", c))
    result = human.compare_to_subjects(model, _trials(rows))
    m1, h1 = np.array([1, 0, 1, 1]), np.array([1, 0, 0, 1])
    m2, h2 = np.array([1, 0, 1]), np.array([0, 1, 1])  # s2 saw a, b, c only
    assert result["observed_consistency"] == pytest.approx((np.mean(m1 == h1) + np.mean(m2 == h2)) / 2)
    assert result["error_consistency"] == pytest.approx((cohen_kappa_score(m1, h1) + cohen_kappa_score(m2, h2)) / 2)
    assert result["accuracy_difference"] == pytest.approx(((0.75 - 0.5) ** 2 + (2 / 3 - 2 / 3) ** 2) / 2)
    assert human.compare_to_subjects(pd.Series([1.0], index=["zz"]), _trials(rows)) is None


def test_human_reference_by_hand():
    correct = {"s1": [1, 1, 0, 0], "s2": [1, 0, 0, 1], "s3": [1, 1, 1, 0]}
    shape_texture = [("cat", "dog"), ("dog", "cat"), ("cat", "car"), ("car", "car")]
    responses = {"s1": ["cat", "dog", "car", "x"], "s2": ["cat", "cat", "car", "car"], "s3": ["cat", "dog", "cat", "x"]}
    rows = []
    for s in correct:
        for i, ((shape, texture), r) in enumerate(zip(shape_texture, responses[s])):
            rows.append(("cue-conflict", s, "0", f"i{i}", shape, texture, r, int(r == shape)))
    trials = _trials(rows)
    assert trials["correct"].tolist() == sum(correct.values(), [])
    ref = human_reference_values(trials)
    assert ref["accuracy"] == pytest.approx(np.mean([0.5, 0.5, 0.75]))
    pairs = [("s1", "s2"), ("s1", "s3"), ("s2", "s3")]
    assert ref["error_consistency"] == pytest.approx(
        np.mean([cohen_kappa_score(correct[a], correct[b]) for a, b in pairs]))
    assert ref["observed_consistency"] == pytest.approx(
        np.mean([np.mean(np.equal(correct[a], correct[b])) for a, b in pairs]))
    # conflict trials are the first three; s1: shape, shape, texture -> 2/3; s2: shape, texture, texture -> 1/3;
    # s3: shape, shape, shape -> 1
    assert ref["shape_bias"] == pytest.approx(np.mean([2 / 3, 1 / 3, 1.0]))


def human_reference_values(trials: pd.DataFrame) -> dict[str, float]:
    ref = human.human_reference(trials)
    assert list(ref.columns) == list(human.REFERENCE_COLUMNS)
    return dict(zip(ref["metric"], ref["value"]))


@pytest.mark.skipif(not GEIRHOS.is_dir(), reason="geirhos16 data not present")
def test_load_trials_on_real_cue_conflict_csvs():
    trials = load_trials(GEIRHOS, "cue-conflict")
    assert trials["subject"].nunique() == 10
    assert len(trials) == 12800
    assert trials["item"].iloc[0] == "cue-conflict/bird/bird3-bird2.png"
    assert set(trials["response"]) - set(trials["category"]) == {"na"}
    ref = human_reference_values(trials)
    assert ref["shape_bias"] == pytest.approx(0.958, abs=0.002)  # the README's figure


@pytest.mark.skipif(not GEIRHOS.is_dir(), reason="geirhos16 data not present")
def test_load_trials_imagenet_identifiers_and_session_spelling():
    trials = load_trials(GEIRHOS, "contrast")  # spells "Session"; no images here
    first = trials.iloc[0]
    assert first["item"] == "contrast/knife/n03041632_7380.png"
    assert first["condition"] == "c30"
    assert sorted(trials["condition"].unique())[:3] == ["c01", "c03", "c05"]
    assert parse_imagename("0001_nse_s01_0.10_cat_10_n02123045_1.png") == ("0.10", "cat", "n02123045_1.png")


def _fixture(tmp_path: Path, lines: list[str], header: str = CSV_HEADER, image: bool = True) -> Path:
    root = tmp_path / "g16"
    (root / "human" / "edge").mkdir(parents=True)
    if image:
        (root / "stimuli" / "edge" / "oven").mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(root / "stimuli" / "edge" / "oven" / "oven1.png")
    (root / "human" / "edge" / "edge_subject-01_session_1.csv").write_text(header + "".join(lines))
    return root


GOOD = "subject-01,1,1,0.5,oven,oven,0,0001_edg_s01_0_oven_00_oven1.png\n"


def test_load_trials_fixture_and_errors(tmp_path):
    trials = load_trials(_fixture(tmp_path / "ok", [GOOD]), "edge")
    assert trials[["item", "correct"]].values.tolist() == [["edge/oven/oven1.png", 1]]

    root = _fixture(tmp_path / "col", [GOOD.replace(",oven,oven,", ",oven,")], header=CSV_HEADER.replace("category,", ""))
    with pytest.raises(DataError, match=r"edge_subject-01_session_1\.csv.*'category'"):
        load_trials(root, "edge")

    root = _fixture(tmp_path / "missing", [GOOD.replace("oven1.png", "oven2.png")])
    with pytest.raises(DataError, match=r"edge_subject-01_session_1\.csv.*edge/oven/oven2\.png"):
        load_trials(root, "edge")

    root = _fixture(tmp_path / "escape", [GOOD.replace("oven1.png", "../../../../etc/passwd")], image=False)
    with pytest.raises(DataError, match="leaves the dataset root"):
        load_trials(root, "edge")

    root = _fixture(tmp_path / "dup", [GOOD, GOOD])
    with pytest.raises(DataError, match="more than one trial"):
        load_trials(root, "edge")

    root = _fixture(tmp_path / "name", [GOOD.replace("0001_edg_s01_0_oven_00_oven1.png", "oven1.png")])
    with pytest.raises(DataError, match="7 '_'-separated fields"):
        load_trials(root, "edge")


# --- model-vs-human dataset layout ------------------------------------------------------

def test_modelvshuman_layouts_join_with_human_items(tmp_path):
    from sweetspot.data.geirhos import CATEGORIES
    from sweetspot.data.modelvshuman import DATASETS, load_dataset

    assert len(DATASETS) == 17
    session = tmp_path / "contrast" / "dnn" / "session-1"
    session.mkdir(parents=True)
    for name in ("0001_cop_dnn_c30_knife_10_n03041632_7380.png", "0002_cop_dnn_c05_bird_10_n01601694_10802.png"):
        Image.new("RGB", (20, 20), (200, 10, 10)).save(session / name)
    samples = load_dataset(tmp_path, "contrast", 16)
    assert [s.item for s in samples] == ["contrast/knife/n03041632_7380.png", "contrast/bird/n01601694_10802.png"]
    assert [s.extra["condition"] for s in samples] == ["c30", "c05"]
    assert [CATEGORIES[s.label] for s in samples] == ["knife", "bird"]
    assert samples[0].image.shape == (16, 16, 3) and samples[0].image.dtype == np.uint8

    cue = tmp_path / "cue-conflict" / "bird"
    cue.mkdir(parents=True)
    Image.new("RGB", (20, 20)).save(cue / "bird3-clock2.png")
    (sample,) = load_dataset(tmp_path, "cue-conflict", 16)
    assert sample.item == "cue-conflict/bird/bird3-clock2.png"  # the human trials' item for this stimulus
    assert (CATEGORIES[sample.label], CATEGORIES[sample.texture_label]) == ("bird", "clock")
    assert "condition" not in sample.extra

    shutil.rmtree(tmp_path / "contrast" / "dnn")
    with pytest.raises(DataError, match="dnn/session-1"):
        load_dataset(tmp_path, "contrast", 16)
