"""Human-alignment metrics of model-vs-human (docs/methods.md, "alignment"), on plain arrays.

Sources: Geirhos et al., "Partial success in closing the gap between human and machine
vision", NeurIPS 2021 (github.com/bethgelab/model-vs-human: 16-class decisions, OOD accuracy,
accuracy difference, observed and error consistency); Geirhos et al., ICLR 2019 (shape bias);
Geirhos, Meding & Wichmann, "Beyond accuracy: quantifying trial-by-trial behaviour of CNNs and
humans by measuring error consistency", NeurIPS 2020 (error consistency = Cohen's kappa on
the two observers' correct/incorrect vectors).
"""

from __future__ import annotations

import itertools
from typing import Sequence

import numpy as np
import pandas as pd

REFERENCE_COLUMNS = ("experiment", "condition", "metric", "value", "std", "n")


def decide(logits, class_groups: Sequence[Sequence[int]] | None = None) -> np.ndarray:
    """Decision per row of logits (N, C) as an int64 array of N class indices.

    Without class_groups: the arg-max over the model's own classes. With class_groups (one
    list of ImageNet indices per entry-level category, in the order of the category labels):
    softmax over all C classes, mean probability within each group, arg-max over the groups
    (model-vs-human's ImageNetProbabilitiesTo16ClassesMapping uses the mean).
    """
    import torch  # here only: the aggregation reads this module without a model

    logits = torch.as_tensor(logits)
    if logits.ndim != 2:
        raise ValueError(f"logits must be (N, C); got shape {tuple(logits.shape)}")
    if class_groups is None:
        return logits.argmax(dim=1).cpu().numpy().astype(np.int64)
    n_classes = logits.shape[1]
    weights = torch.zeros(n_classes, len(class_groups), dtype=torch.float32, device=logits.device)
    for g, indices in enumerate(class_groups):
        indices = list(indices)
        if not indices or min(indices) < 0 or max(indices) >= n_classes:
            raise ValueError(f"class group {g} has indices {indices[:5]}...; each group needs at least one "
                             f"index in [0, {n_classes})")
        weights[indices, g] = 1.0 / len(indices)
    probabilities = torch.softmax(logits.float(), dim=1)
    return (probabilities @ weights).argmax(dim=1).cpu().numpy().astype(np.int64)


def _conflict(shape: np.ndarray, texture: np.ndarray) -> np.ndarray:
    shape, texture = np.asarray(shape), np.asarray(texture)
    return shape != texture


def shape_bias(decisions: np.ndarray, shape: np.ndarray, texture: np.ndarray) -> float:
    """Shape decisions / (shape + texture decisions) on cue-conflict trials with shape != texture.

    Geirhos et al., ICLR 2019. NaN when no decision on such trials was shape or texture.
    """
    decisions = np.asarray(decisions)
    conflict = _conflict(shape, texture)
    n_shape = int(np.sum(decisions[conflict] == np.asarray(shape)[conflict]))
    n_texture = int(np.sum(decisions[conflict] == np.asarray(texture)[conflict]))
    if n_shape + n_texture == 0:
        return float("nan")
    return n_shape / (n_shape + n_texture)


def shape_or_texture(decisions: np.ndarray, shape: np.ndarray, texture: np.ndarray) -> float:
    """Fraction of cue-conflict trials (shape != texture) decided as either shape or texture.

    Says how many decisions a shape bias rests on (docs/methods.md, "What a sweet spot is"); NaN without such trials.
    """
    decisions = np.asarray(decisions)
    conflict = _conflict(shape, texture)
    if not conflict.any():
        return float("nan")
    hits = (decisions[conflict] == np.asarray(shape)[conflict]) | (decisions[conflict] == np.asarray(texture)[conflict])
    return float(np.mean(hits))


def accuracy(correct: np.ndarray) -> float:
    """Fraction of correct trials (model-vs-human's 16-class accuracy when decisions are 16-class)."""
    correct = np.asarray(correct, dtype=np.float64)
    if correct.size == 0:
        raise ValueError("accuracy of zero trials")
    return float(correct.mean())


def accuracy_difference(accuracy_a: np.ndarray, accuracy_b: np.ndarray) -> float:
    """Mean over conditions of (accuracy_a - accuracy_b)^2; one accuracy per condition each.

    model-vs-human's SixteenClassAccuracyDifference (squared norm), averaged over conditions.
    """
    a = np.asarray(accuracy_a, dtype=np.float64)
    b = np.asarray(accuracy_b, dtype=np.float64)
    if a.shape != b.shape or a.size == 0:
        raise ValueError(f"need one accuracy per condition for both observers; got shapes {a.shape} and {b.shape}")
    return float(np.mean((a - b) ** 2))


def observed_consistency(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Fraction of trials (same stimuli, same order) where both are right or both are wrong."""
    a, b = _paired(correct_a, correct_b)
    return float(np.mean(a == b))


def error_consistency(correct_a: np.ndarray, correct_b: np.ndarray) -> float:
    """Cohen's kappa of two correctness vectors: (c_obs - c_exp) / (1 - c_exp).

    c_exp = p_a p_b + (1 - p_a)(1 - p_b) with p the observers' accuracies on these trials
    (Geirhos, Meding & Wichmann, NeurIPS 2020). When c_exp == 1 both observers are always
    right (or always wrong) and kappa is 0/0; like model-vs-human (which returns 1 whenever
    c_obs == 1) we return 1.0: they agree on every trial. sklearn's cohen_kappa_score returns
    NaN there instead; everywhere else the two agree.
    """
    a, b = _paired(correct_a, correct_b)
    p_a, p_b = a.mean(), b.mean()
    c_exp = p_a * p_b + (1.0 - p_a) * (1.0 - p_b)
    if c_exp >= 1.0:
        return 1.0
    c_obs = np.mean(a == b)
    return float((c_obs - c_exp) / (1.0 - c_exp))


def _paired(correct_a: np.ndarray, correct_b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a = np.asarray(correct_a).astype(bool)
    b = np.asarray(correct_b).astype(bool)
    if a.shape != b.shape or a.ndim != 1 or a.size == 0:
        raise ValueError(f"need two non-empty correctness vectors over the same trials; got shapes {a.shape} and {b.shape}")
    return a, b


SUBJECT_METRICS = ("accuracy_difference", "observed_consistency", "error_consistency")


def compare_to_subjects(model_correct: pd.Series, trials: pd.DataFrame) -> dict[str, float] | None:
    """Model vs each human subject on the stimuli both saw, averaged over subjects.

    `model_correct` is indexed by item; `trials` has columns subject, item, correct (one
    condition). Returns accuracy_difference, observed_consistency and error_consistency, or
    None when no subject shares a stimulus with the model.
    """
    humans = trials.pivot_table(index="subject", columns="item", values="correct", aggfunc="mean")
    humans = humans.reindex(columns=model_correct.index)
    if not np.isfinite(humans.to_numpy(dtype=np.float64)).any():
        return None
    values = weighted_subject_comparisons(model_correct.to_numpy(dtype=np.float64)[:, None],
                                          humans.to_numpy(dtype=np.float64), np.ones((1, len(model_correct))))
    return {metric: float(v[0, 0]) for metric, v in values.items()}


def weighted_subject_comparisons(correct: np.ndarray, humans: np.ndarray, weights: np.ndarray) -> dict[str, np.ndarray]:
    """The subject metrics of several model conditions under item weights, averaged over subjects.

    correct: (n_items, n_conditions) model correctness (1/0, NaN where not evaluated);
    humans: (n_subjects, n_items) human correctness (NaN where a subject did not see the item);
    weights: (rows, n_items) item weights (a row of ones gives the plain statistics; bootstrap
    resampling counts give its replicates). Returns metric -> (rows, n_conditions); a subject
    counts for a condition where it shares at least one (weighted) item with the model.
    Per subject: accuracy difference (p_model - p_human)^2, observed consistency (both right or
    both wrong), error consistency kappa = (c_obs - c_exp) / (1 - c_exp), 1 where c_exp = 1.
    """
    model_valid = ~np.isnan(correct)  # (n, C)
    human_valid = ~np.isnan(humans)  # (S, n)
    m = np.where(model_valid, correct, 0.0)
    h = np.where(human_valid, humans, 0.0)
    shared = human_valid.T[:, :, None] & model_valid[:, None, :]  # (n, S, C)
    n_items, n_subjects, n_conditions = shared.shape

    def weighted(values: np.ndarray) -> np.ndarray:
        return (weights @ values.reshape(n_items, -1)).reshape(-1, n_subjects, n_conditions)

    count = weighted(shared.astype(np.float64))
    model_right = weighted(shared * m[:, None, :])
    human_right = weighted(shared * h.T[:, :, None])
    agree = weighted(shared * (m[:, None, :] == h.T[:, :, None]))
    with np.errstate(invalid="ignore", divide="ignore"):
        p_model, p_human, c_obs = model_right / count, human_right / count, agree / count
        c_exp = p_model * p_human + (1.0 - p_model) * (1.0 - p_human)
        kappa = np.where(c_exp >= 1.0, 1.0, (c_obs - c_exp) / (1.0 - c_exp))
    seen = count > 0
    per_subject = {"accuracy_difference": (p_model - p_human) ** 2, "observed_consistency": c_obs,
                   "error_consistency": kappa}
    with np.errstate(invalid="ignore", divide="ignore"):
        return {metric: np.where(seen.any(axis=1), np.where(seen, v, 0.0).sum(axis=1) / seen.sum(axis=1), np.nan)
                for metric, v in per_subject.items()}


def weighted_shape_bias(shape: np.ndarray, texture: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Shape bias of several conditions under item weights: weighted shape decisions over
    weighted shape-or-texture decisions. shape, texture: (n_items, n_conditions) 0/1 per
    cue-conflict item (NaN elsewhere); returns (rows, n_conditions), NaN without such decisions."""
    s = np.nan_to_num(shape, nan=0.0)
    decided = s + np.nan_to_num(texture, nan=0.0)
    numerator, denominator = weights @ s, weights @ decided
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denominator > 0, numerator / np.where(denominator > 0, denominator, 1.0), np.nan)


def _append_pair(values: dict[str, list[float]], a: np.ndarray, b: np.ndarray) -> None:
    values["accuracy_difference"].append(accuracy_difference([accuracy(a)], [accuracy(b)]))
    values["observed_consistency"].append(observed_consistency(a, b))
    values["error_consistency"].append(error_consistency(a, b))


def human_reference(trials: pd.DataFrame) -> pd.DataFrame:
    """Human-to-human values per experiment and condition, computed like the model's.

    accuracy, shape_bias, shape_or_texture: per subject, then mean (value) and standard
    deviation (std) over subjects (n = subjects). accuracy_difference, observed_consistency,
    error_consistency: every pair of subjects on the stimuli both saw, then mean and std over
    pairs (n = pairs); the mean over pairs equals the mean over subjects of each subject's
    mean against all others. Columns: experiment, condition, metric, value, std, n.
    """
    rows = []
    for (experiment, condition), group in trials.groupby(["experiment", "condition"], sort=True):
        per_subject: dict[str, list[float]] = {"accuracy": [], "shape_bias": [], "shape_or_texture": []}
        by_subject = {s: t.set_index("item") for s, t in group.groupby("subject", sort=True)}
        for subject_trials in by_subject.values():
            per_subject["accuracy"].append(accuracy(subject_trials["correct"].to_numpy()))
            if (subject_trials["texture"] != "").any():
                cue = subject_trials[subject_trials["texture"] != ""]
                decisions, shape, texture = (cue[c].to_numpy() for c in ("response", "category", "texture"))
                per_subject["shape_bias"].append(shape_bias(decisions, shape, texture))
                per_subject["shape_or_texture"].append(shape_or_texture(decisions, shape, texture))
        pairs: dict[str, list[float]] = {"accuracy_difference": [], "observed_consistency": [], "error_consistency": []}
        for a, b in itertools.combinations(by_subject.values(), 2):
            shared = a.index.intersection(b.index)
            if len(shared):
                _append_pair(pairs, a.loc[shared, "correct"].to_numpy(), b.loc[shared, "correct"].to_numpy())
        for metric, values in {**per_subject, **pairs}.items():
            if values:
                rows.append({"experiment": experiment, "condition": condition, "metric": metric,
                             "value": float(np.nanmean(values)), "std": float(np.nanstd(values)),
                             "n": len(values)})
    return pd.DataFrame(rows, columns=list(REFERENCE_COLUMNS))
