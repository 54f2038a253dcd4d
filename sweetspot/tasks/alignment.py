"""Alignment task: model-vs-human decisions, shape bias and consistency with human observers.

Per trial (item = the stimulus): `correct`, and on cue-conflict trials whose shape and
texture differ `shape_decision` / `texture_decision`. Per condition (item ""): `accuracy`,
`shape_bias` and `shape_or_texture` where there are cue-conflict trials, and, given human
trials, `accuracy_difference`, `observed_consistency` and `error_consistency` of the model
against each human subject on the stimuli both saw, averaged over subjects (model-vs-human's
benchmark protocol; definitions in sweetspot.metrics.human). The variant is the condition:
a distortion condition such as contrast-c05, a model-vs-human condition, or "" when none.
"""

from __future__ import annotations

import logging
from typing import Callable, Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..contract import task_frame
from ..data import distortions
from ..data.samples import Sample, stack_images
from ..metrics import human
from ..models import Preprocess
from ..training import predict_logits
from .context import EvalContext

logger = logging.getLogger(__name__)

DISTORTIONS_DATASET = "synthetic-distortions"


def run(ctx: EvalContext, dataset: str, samples: list[Sample], settings: Mapping) -> pd.DataFrame:
    """Per-trial rows of one dataset (the interface every task implements, sweetspot.tasks); the
    decisions come from the model's faster copy."""
    return per_trial_rows(ctx.fast_model, samples, dataset, settings, preprocess=ctx.preprocess, device=ctx.device,
                          class_groups=ctx.class_groups(dataset), distortion_seed=ctx.seed, amp=ctx.amp)


def summarise(ctx: EvalContext, dataset: str, rows: pd.DataFrame, settings: Mapping) -> pd.DataFrame:
    """Per-condition rows computed from all per-trial rows of the dataset (after cross-fitting folds)."""
    return condition_rows(rows, ctx.trials(dataset))


def evaluate(model: torch.nn.Module, samples: list[Sample], dataset: str, cfg: Mapping, *, preprocess: Preprocess,
             device: torch.device, class_groups: Sequence[Sequence[int]] | None = None,
             trials: pd.DataFrame | None = None, distortion_seed: int = 0) -> pd.DataFrame:
    """Per-trial and per-condition rows of one dataset (contract columns dataset, variant, metric, item, value).

    For "synthetic-distortions", `samples` are clean images: every condition of
    cfg["distortions"] ("default" = the model-vs-human levels) is applied to the first
    cfg["n_images"] of them. Otherwise each sample's condition is sample.extra["condition"]
    (absent: ""). `trials` (sweetspot.data.human_trials.load_trials) join on item.
    """
    rows = per_trial_rows(model, samples, dataset, cfg, preprocess=preprocess, device=device,
                          class_groups=class_groups, distortion_seed=distortion_seed, amp=bool(cfg.get("amp", True)))
    return pd.concat([rows, condition_rows(rows, trials)], ignore_index=True)


def per_trial_rows(model: torch.nn.Module, samples: list[Sample], dataset: str, cfg: Mapping, *,
                   preprocess: Preprocess, device: torch.device, class_groups: Sequence[Sequence[int]] | None,
                   distortion_seed: int, amp: bool) -> pd.DataFrame:
    """`correct` per trial and, on cue-conflict trials whose shape and texture differ,
    `shape_decision` / `texture_decision`; the variant is the condition."""
    if not samples:
        raise ValueError(f"{dataset}: no samples to evaluate")
    missing = [s.item for s in samples if s.label < 0]
    if missing:
        raise ValueError(f"{dataset}: alignment needs a label for every image; {len(missing)} have none (e.g. {missing[0]})")
    batch_size = int(cfg.get("batch_size", 128))

    def decisions_of(images: np.ndarray) -> np.ndarray:
        logits = predict_logits(model, images, preprocess=preprocess, batch_size=batch_size, device=device, amp=amp)
        return human.decide(logits, class_groups)

    rows: list[dict] = []
    for variant, group, decisions in _conditions(samples, dataset, cfg, decisions_of, batch_size, distortion_seed):
        rows += _trial_rows(dataset, variant, group, decisions)
    return task_frame(rows)


def condition_rows(trial_rows: pd.DataFrame, trials: pd.DataFrame | None) -> pd.DataFrame:
    """Per condition (item ""): accuracy; shape_bias and shape_or_texture where there are
    cue-conflict trials; with human `trials`, the model against each subject on the stimuli both
    saw (accuracy_difference, observed_consistency, error_consistency), averaged over subjects."""
    out: list[dict] = []
    for (dataset, variant), rows in trial_rows.groupby(["dataset", "variant"], sort=False):
        def row(metric: str, value: float) -> dict:
            return {"dataset": dataset, "variant": variant, "metric": metric, "item": "", "value": float(value)}

        by_metric = {m: r.set_index("item")["value"] for m, r in rows.groupby("metric", sort=False)}
        correct = by_metric["correct"]
        out.append(row("accuracy", human.accuracy(correct.to_numpy())))
        if "shape_decision" in by_metric:
            shape, texture = by_metric["shape_decision"].to_numpy(), by_metric["texture_decision"].to_numpy()
            out.append(row("shape_bias", human.weighted_shape_bias(shape[:, None], texture[:, None],
                                                                   np.ones((1, len(shape))))[0, 0]))
            out.append(row("shape_or_texture", float(np.mean(shape + texture))))
        if trials is not None:
            comparison = human.compare_to_subjects(correct, trials[trials["item"].isin(correct.index)])
            if comparison is None:
                logger.warning("%s %r: no human trial shares a stimulus with the model; no consistency rows",
                               dataset, variant)
            else:
                out += [row(metric, value) for metric, value in comparison.items()]
    return task_frame(out)


def _conditions(samples: list[Sample], dataset: str, cfg: Mapping, decisions_of: Callable[[np.ndarray], np.ndarray], batch_size: int,
                seed: int) -> Iterator[tuple[str, list[Sample], np.ndarray]]:
    """(condition, its samples, the model's decisions on them) for every condition."""
    if dataset == DISTORTIONS_DATASET:
        subset = samples[: int(cfg.get("n_images", len(samples)))]
        clean = stack_images(subset)
        for name, levels in distortions.resolve_levels(cfg.get("distortions", "default")).items():
            for level in levels:
                images = distortions.apply(clean, name, level, seed)
                yield distortions.condition_name(name, level), subset, decisions_of(images)
        return
    by_condition: dict[str, list[Sample]] = {}
    for sample in samples:
        by_condition.setdefault(str(sample.extra.get("condition", "")), []).append(sample)
    for condition, group in by_condition.items():
        # Stack one batch at a time: 1280 stimuli at 224 px would otherwise take 190 MB at once.
        decisions = np.concatenate([decisions_of(stack_images(group[i:i + batch_size]))
                                    for i in range(0, len(group), batch_size)])
        yield condition, group, decisions


def _trial_rows(dataset: str, variant: str, samples: list[Sample], decisions: np.ndarray) -> list[dict]:
    items = [s.item for s in samples]
    if len(set(items)) != len(items):
        raise ValueError(f"{dataset} {variant!r}: items repeat within one condition; each stimulus must appear once")
    labels = np.array([s.label for s in samples])
    textures = np.array([s.texture_label for s in samples])

    def row(metric: str, value: float, item: str) -> dict:
        return {"dataset": dataset, "variant": variant, "metric": metric, "item": item, "value": float(value)}

    rows = [row("correct", d == label, item) for item, d, label in zip(items, decisions, labels)]
    for i in np.flatnonzero((textures >= 0) & (textures != labels)):
        rows.append(row("shape_decision", decisions[i] == labels[i], items[i]))
        rows.append(row("texture_decision", decisions[i] == textures[i], items[i]))
    return rows
