"""The interpretability task: do attribution maps fall on the object, and are they faithful?

Per image (item = sample id) and attribution method (variant): rma, rra, pointing_game
against the sample's object mask, deletion and insertion AUC (raw and relative to the intact
image's probability), and the map flags flag_zero_map / flag_nonfinite_map
(sweetspot.metrics.localization has the definitions and the conventions for ties and
degenerate maps). Methods that do not apply to the model's family are left out with a log
line; images without an object mask are not scored but counted (flag_skipped rows).

Images are scored at the study's fixed size, or with `native_resolution` at their own size,
padded to the model's stride or patch size; padded pixels count for no metric
(sweetspot.tasks.inputs).

All methods of a batch explain the same targets, picked by the forward pass that the
single-pass methods share (sweetspot.attributions.attribute_batch). Attributions run
in float32 (no autocast): gradients of small models in bf16 are mostly rounding. Every pass,
deletion and insertion included, runs on the model's faster copy (EvalContext.fast_model).
Deletion and insertion of every method of a batch share their passes, and the images that no
map changes (intact, deleted, blurred) run once (metrics.localization.perturbation_curves_of_maps).
"""

from __future__ import annotations

import logging
from typing import Any, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from ..attributions import applicable, attribute_batch, choose_targets
from ..contract import task_frame
from ..data.samples import Sample, stack_images
from . import inputs
from .context import EvalContext
from ..metrics.localization import localization_scores, perturbation_scores_by_method
from ..models import Preprocess, family

log = logging.getLogger(__name__)


def _methods(model: torch.nn.Module, cfg: Mapping[str, Any]) -> list[str]:
    fam = family(model)
    methods = [m for m in cfg["methods"] if applicable(m, fam)]
    left_out = [m for m in cfg["methods"] if m not in methods]
    if left_out:
        log.info("attribution methods %s do not apply to a %s model; skipped", left_out, fam)
    return methods


def _maps(model: torch.nn.Module, x: torch.Tensor, samples: Sequence[Sample], methods: Sequence[str],
          cfg: Mapping[str, Any], class_groups: Sequence[Sequence[int]] | None) -> tuple[torch.Tensor,
                                                                                      dict[str, torch.Tensor]]:
    """Targets and maps of every method, the single-pass ones from one shared pass."""
    labels = [s.label for s in samples]
    return attribute_batch(model, x, methods, cfg,
                           lambda logits: choose_targets(logits, labels, cfg["target"], class_groups))


def _ground_truth(batch: Sequence[Sample], image_hw: tuple[int, int], dataset: str) -> tuple[np.ndarray, np.ndarray]:
    for s in batch:
        for name, array in (("mask", s.mask), ("ignore", s.ignore)):
            if array is not None and array.shape != image_hw:
                raise ValueError(f"{dataset}/{s.item}: {name} has shape {array.shape} but the model input is "
                                 f"{image_hw}; resize masks with the images")
    masks = np.stack([s.mask.astype(bool) for s in batch])
    ignore = np.stack([np.zeros(image_hw, bool) if s.ignore is None else s.ignore.astype(bool) for s in batch])
    return masks, ignore


def evaluate(model: torch.nn.Module, samples: list[Sample], dataset: str, cfg: Mapping[str, Any], *,
             preprocess: Preprocess, device: torch.device,
             class_groups: Sequence[Sequence[int]] | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Score the first cfg["n_images"] samples; return the task frame and the ids of samples
    skipped for lack of a (non-empty) object mask.

    cfg: methods, n_images, target, pooling, ig_steps, smoothgrad_samples, smoothgrad_stdev,
    deletion_steps and optionally n_images_by_method (method -> fewer images for that method: the
    first ones of the same order, images without a mask among them skipped), batch_size (32: the
    images per attribution batch and the perturbed images per deletion/insertion pass), seed,
    ig_internal_batch_size, gradcam_layer, native_resolution (false: the samples share one size;
    true: each at its own size, padded to the model's multiple, the padding ignored by every
    metric, deletion and insertion included).
    `model` runs every pass: pass a faster copy for speed (sweetspot.speedups.faster_copy).
    """
    chosen = samples[: int(cfg["n_images"])]
    skipped = [s.item for s in chosen if not _has_mask(s)]
    if skipped:
        log.info("%s: %d of %d images have no object mask and are not scored", dataset, len(skipped), len(chosen))
    batch_size = int(cfg.get("batch_size", 32))
    steps = int(cfg["deletion_steps"])
    rows: list[dict[str, Any]] = []
    native = bool(cfg.get("native_resolution", False))
    for n, methods in _methods_by_image_count(_methods(model, cfg), cfg, len(chosen)).items():
        explained = [s for s in chosen[:n] if _has_mask(s)]
        for batch in inputs.batches(model, explained, native=native, mode="pad", batch_size=batch_size,
                                    preprocess=preprocess, device=device):
            x = batch.x
            masks, ignore = _ground_truth(batch.samples, tuple(x.shape[-2:]), dataset)
            targets, maps_by_method = _maps(model, x, batch.samples, methods, cfg, class_groups)
            faithfulness = perturbation_scores_by_method(model, x, maps_by_method, targets, steps=steps,
                                                         batch_size=batch_size, valid=batch.valid())
            for method, maps in maps_by_method.items():
                scores = {**localization_scores(maps, masks, ignore), **faithfulness[method]}
                for metric, values in scores.items():
                    rows += [{"dataset": dataset, "variant": method, "metric": metric, "item": s.item,
                              "value": float(v)} for s, v in zip(batch.samples, values)]
    return task_frame(rows), skipped


def _has_mask(sample: Sample) -> bool:
    return sample.mask is not None and bool(sample.mask.any())


def _methods_by_image_count(methods: Sequence[str], cfg: Mapping[str, Any], available: int) -> dict[int, list[str]]:
    """How many of the chosen images each method explains (`n_images_by_method` caps the costly
    ones, e.g. Integrated Gradients, to fewer images), grouped so that methods with the same
    count share their passes. A cross-fitted checkpoint's job passes each model the caps of its
    share of the job's images (sweetspot.jobs.evaluation.fold_settings)."""
    limits = cfg.get("n_images_by_method") or {}
    groups: dict[int, list[str]] = {}
    for method in methods:
        groups.setdefault(min(int(limits.get(method, available)), available), []).append(method)
    return groups


def run(ctx: EvalContext, dataset: str, samples: list[Sample], settings: Mapping[str, Any]) -> pd.DataFrame:
    """The task's rows for one dataset (the interface every task implements, sweetspot.tasks)."""
    cfg = {"seed": ctx.seed, **settings}
    frame, skipped = evaluate(ctx.fast_model, samples, dataset, cfg, preprocess=ctx.preprocess, device=ctx.device,
                              class_groups=ctx.class_groups(dataset))
    return pd.concat([frame, task_frame({"dataset": dataset, "variant": "", "metric": "flag_skipped", "item": item,
                                         "value": 1.0} for item in skipped)], ignore_index=True)


def normalise_per_image(maps: torch.Tensor | np.ndarray) -> np.ndarray:
    """Maps (k, H, W) rescaled to [0, 1] per image; non-finite pixels count as 0, constant maps become 0."""
    maps = np.nan_to_num(np.asarray(maps.cpu() if isinstance(maps, torch.Tensor) else maps, dtype=np.float64),
                         nan=0.0, posinf=0.0, neginf=0.0)
    low = maps.min(axis=(1, 2), keepdims=True)
    span = maps.max(axis=(1, 2), keepdims=True) - low
    return np.where(span > 0, (maps - low) / np.where(span > 0, span, 1.0), 0.0).astype(np.float32)


def gallery_maps(model: torch.nn.Module, samples: list[Sample], cfg: Mapping[str, Any], *,
                 preprocess: Preprocess, device: torch.device,
                 class_groups: Sequence[Sequence[int]] | None = None) -> dict[str, np.ndarray]:
    """Per applicable method, maps (k, H, W) float32 in [0, 1] of the first cfg["gallery_images"] samples."""
    chosen = list(samples[: int(cfg["gallery_images"])])
    if not chosen:
        return {}
    x = preprocess(stack_images(chosen), device)
    _, maps_by_method = _maps(model, x, chosen, _methods(model, cfg), cfg, class_groups)
    return {method: normalise_per_image(maps) for method, maps in maps_by_method.items()}
