"""model-vs-human against the REAL human trials: all 17 experiments parse, and a fake datasets/ tree
named like real stimuli joins them, so 16-class accuracy and error consistency per condition follow."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import GEIRHOS16
from paper_fixtures import write_modelvshuman
from sklearn.metrics import cohen_kappa_score

from sweetspot.data.geirhos import CATEGORIES
from sweetspot.data.human_trials import load_experiment
from sweetspot.data.modelvshuman import DATASETS, WITHOUT_CONDITIONS, load_dataset
from sweetspot.metrics import human

HUMAN = GEIRHOS16 / "human"
pytestmark = pytest.mark.skipif(not HUMAN.is_dir(), reason="shared geirhos16 human trials absent")

# subjects and trials per experiment in model-vs-human's raw-data (commit 79ed7cd)
SUBJECTS = {"cue-conflict": 10, "edge": 10, "silhouette": 10, "sketch": 7, "stylized": 5}
TRIALS = {"cue-conflict": 12800, "edge": 1600, "silhouette": 1600, "sketch": 5600, "stylized": 4000,
          "false-colour": 4480, "phase-scrambling": 4480, "power-equalisation": 4480}


@pytest.mark.parametrize("experiment", DATASETS)
def test_every_experiment_parses_from_the_real_csvs(experiment):
    trials = load_experiment(HUMAN, experiment)
    assert trials["subject"].nunique() == SUBJECTS.get(experiment, 4)
    assert len(trials) == TRIALS.get(experiment, 5120)
    assert set(trials["category"]) <= set(CATEGORIES)
    assert set(trials["response"]) <= set(CATEGORIES) | {"na"}
    assert trials["correct"].isin([0, 1]).all() and 0.3 < trials["correct"].mean() < 0.95
    assert trials["item"].str.startswith(f"{experiment}/").all()
    # every subject saw the same stimuli, each once, each stimulus at one condition
    per_subject = trials.groupby("subject")["item"].apply(frozenset)
    assert per_subject.nunique() == 1
    assert trials.groupby("item")["condition"].nunique().max() == 1
    if experiment in WITHOUT_CONDITIONS:
        assert set(trials["condition"]) == {"0"}
    else:
        assert trials["condition"].nunique() >= 2


@pytest.fixture(scope="module")
def fake_datasets(tmp_path_factory):
    root = tmp_path_factory.mktemp("mvh")
    write_modelvshuman(root / "datasets", root / "geirhos16", HUMAN, names=("contrast", "eidolonI", "edge"),
                       conditions=2, per_condition=4)
    return root / "datasets"


@pytest.mark.parametrize("experiment", ["contrast", "eidolonI", "edge"])
def test_model_items_join_the_real_trials(fake_datasets, experiment):
    samples = load_dataset(fake_datasets, experiment, 32)
    trials = load_experiment(HUMAN, experiment)
    items = [s.item for s in samples]
    assert len(items) == (4 if experiment == "edge" else 8) and len(set(items)) == len(items)
    shared = trials[trials["item"].isin(items)]
    assert shared.groupby("subject").size().tolist() == [len(items)] * trials["subject"].nunique()
    if experiment != "edge":  # the condition in the model's file name is the humans' condition
        condition = dict(zip(shared["item"], shared["condition"]))
        assert [s.extra["condition"] for s in samples] == [condition[i] for i in items]
    for sample in samples:  # the label is the humans' correct category
        assert {CATEGORIES[sample.label]} == set(shared.loc[shared["item"] == sample.item, "category"])


def _by_hand_kappa(model: np.ndarray, person: np.ndarray) -> float:
    both_right = np.sum(model & person)
    both_wrong = np.sum(~model & ~person)
    n = len(model)
    c_obs = (both_right + both_wrong) / n
    p_model, p_person = model.sum() / n, person.sum() / n
    c_exp = p_model * p_person + (1 - p_model) * (1 - p_person)
    return 1.0 if c_exp == 1 else (c_obs - c_exp) / (1 - c_exp)


@pytest.mark.parametrize("experiment", ["contrast", "eidolonI"])
def test_accuracy_and_error_consistency_per_condition_from_fixed_decisions(fake_datasets, experiment):
    samples = load_dataset(fake_datasets, experiment, 16)
    trials = load_experiment(HUMAN, experiment)
    # fixed fake decisions: right on every trial but each third one, which goes to the next category
    decisions = np.array([s.label if i % 3 else (s.label + 1) % 16 for i, s in enumerate(samples)])
    correct = pd.Series((decisions == [s.label for s in samples]).astype(int), index=[s.item for s in samples])
    conditions = sorted({s.extra["condition"] for s in samples})
    assert len(conditions) == 2
    for condition in conditions:
        items = [s.item for s in samples if s.extra["condition"] == condition]
        model = correct.loc[items].to_numpy().astype(bool)
        assert human.accuracy(model) == model.sum() / len(items)
        in_condition = trials[trials["condition"] == condition]
        result = human.compare_to_subjects(correct.loc[items], in_condition)
        kappas, differences, agreements = [], [], []
        for subject, rows in in_condition.groupby("subject"):
            person = rows.set_index("item").loc[items, "correct"].to_numpy().astype(bool)
            kappas.append(_by_hand_kappa(model, person))
            differences.append((model.mean() - person.mean()) ** 2)
            agreements.append(np.mean(model == person))
            if len(set(model)) == 2 or len(set(person)) == 2:  # sklearn leaves kappa undefined when both are constant
                assert kappas[-1] == pytest.approx(cohen_kappa_score(model, person))
        assert result["error_consistency"] == pytest.approx(np.mean(kappas))
        assert result["accuracy_difference"] == pytest.approx(np.mean(differences))
        assert result["observed_consistency"] == pytest.approx(np.mean(agreements))


def test_eidolon_values_worked_out_by_hand(fake_datasets):
    """The written eidolonI stimuli, the real trials on them (1 = correct) and the model's fixed
    decisions (wrong on trials 0, 3, 6):

        condition  stimulus                 s01 s02 s03 s04  model
        1-10-10    oven/n04111531_17072      1   1   1   0     0
                   bicycle/n02835271_2930    1   1   1   1     1
                   elephant/n02504458_723    1   1   1   1     1
                   airplane/n02690373_4839   1   1   1   1     0
        128-10-10  dog/n02091244_8368        0   0   0   0     1
                   bear/n02133161_1944       0   0   0   0     1
                   oven/n04111531_18592      1   0   0   0     0
                   boat/n02951358_9550       0   0   0   0     1

    1-10-10: model accuracy 1/2. s01-s03 (p=1): c_exp = 1/2, c_obs = 1/2, kappa 0; s04 (p=3/4):
    c_exp = 1/2 * 3/4 + 1/2 * 1/4 = 1/2, c_obs = 3/4, kappa 1/2. Mean kappa 1/8; accuracy
    difference (3 * 1/4 + 1/16) / 4 = 13/64; observed consistency (3 * 1/2 + 3/4) / 4 = 9/16.
    128-10-10: model accuracy 3/4. s01 (p=1/4): c_exp = 3/16 + 3/16 = 3/8, c_obs = 0, kappa
    -3/5; s02-s04 (p=0): c_exp = 1/4, c_obs = 1/4, kappa 0. Mean kappa -3/20; accuracy
    difference (1/4 + 3 * 9/16) / 4 = 31/64; observed consistency (0 + 3 * 1/4) / 4 = 3/16.
    """
    samples = load_dataset(fake_datasets, "eidolonI", 16)
    assert [s.item.split("/", 1)[1] for s in samples] == [
        "oven/n04111531_17072.png", "bicycle/n02835271_2930.png", "elephant/n02504458_723.png",
        "airplane/n02690373_4839.png", "dog/n02091244_8368.png", "bear/n02133161_1944.png",
        "oven/n04111531_18592.png", "boat/n02951358_9550.png"]
    decisions = np.array([s.label if i % 3 else (s.label + 1) % 16 for i, s in enumerate(samples)])
    correct = pd.Series((decisions == [s.label for s in samples]).astype(int), index=[s.item for s in samples])
    trials = load_experiment(HUMAN, "eidolonI")
    expected = {"1-10-10": (1 / 2, 1 / 8, 13 / 64, 9 / 16), "128-10-10": (3 / 4, -3 / 20, 31 / 64, 3 / 16)}
    for condition, (accuracy, kappa, difference, agreement) in expected.items():
        items = [s.item for s in samples if s.extra["condition"] == condition]
        assert human.accuracy(correct.loc[items]) == accuracy
        result = human.compare_to_subjects(correct.loc[items], trials[trials["condition"] == condition])
        assert result["error_consistency"] == pytest.approx(kappa)
        assert result["accuracy_difference"] == pytest.approx(difference)
        assert result["observed_consistency"] == pytest.approx(agreement)
