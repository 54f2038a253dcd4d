"""Jobs that evaluate checkpoints: one task on one checkpoint, and the attribution gallery.

One job per (architecture, method, sparsity, seed, task): a task's settings are its job's
params, so editing one task re-runs that task's jobs and never training.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from .. import artifacts, contract, models, tasks
from ..data.samples import Sample
from ..runtime import device as devmod
from ..tasks.context import EvalContext

log = logging.getLogger("sweetspot")


def evaluate_task(*, out: str, task: str, settings: Mapping, arch: str, arch_cfg: Mapping, method: str, sparsity: str,
                  seed: int, checkpoint: str, data: Mapping, device: str, amp: bool, threads: int = 1,
                  reuse_freed_memory: bool = True) -> None:
    """Score one checkpoint on one task over every dataset of the task; one Parquet file."""
    devmod.setup(threads, seed, reuse_freed_memory)
    dev = devmod.resolve(device)
    started = time.time()
    model, sidecar = models.load_checkpoint(checkpoint, arch_cfg, expect={"arch": arch, "method": method,
                                                                          "sparsity": float(sparsity), "seed": seed})
    ctx = EvalContext(model=model.to(dev), arch_cfg=arch_cfg, method=method, seed=seed, data=data, device=dev, amp=amp)
    folds = _folds(ctx, checkpoint, sidecar)
    module = tasks.load(task)
    frames = []
    for dataset in settings["datasets"]:
        samples = subset(ctx.task_samples(dataset, settings), settings.get("n_images"))
        rows = pd.concat([module.run(fold_ctx, dataset, part, fold_settings(settings, part, samples))
                          for fold_ctx, part in _split(folds, dataset, samples) if part], ignore_index=True)
        frames.append(rows)
        if hasattr(module, "summarise"):
            frames.append(module.summarise(ctx, dataset, rows, settings))
    identity = dict(benchmark=data["benchmark"], arch=arch, method=method, sparsity=float(sparsity),
                    sparsity_actual=float(sidecar["sparsity_actual"]), seed=seed, task=task)
    result = contract.with_identity(pd.concat(frames, ignore_index=True), **identity)
    artifacts.write_parquet(out, result, contract.provenance({"task": task, "settings": settings, "data": data}))
    log.info("%s of %s %s %s seed %d: %d rows in %.1f s", task, arch, method, sparsity, seed, len(result),
             time.time() - started)


def subset(samples: list[Sample], n: int | None) -> list[Sample]:
    """A deterministic, class-mixed subset: order by a hash of the item name, take n."""
    ordered = sorted(samples, key=lambda s: hashlib.sha1(s.item.encode()).hexdigest())
    return ordered if n is None else ordered[: int(n)]


def fold_settings(settings: Mapping, part: Sequence[Sample], samples: Sequence[Sample]) -> Mapping:
    """A task's settings for the part of the job's samples that one model of a cross-fitted
    checkpoint scores. `n_images_by_method` caps a method to the first n of the job's samples,
    not n per model: for the part, that is how many of its samples are among those n (a part
    keeps the job's order, so they are its first ones)."""
    caps = settings.get("n_images_by_method")
    if not caps or len(part) == len(samples):
        return settings
    rank = {sample.item: k for k, sample in enumerate(samples)}
    return {**settings, "n_images_by_method": {method: sum(rank[s.item] < int(n) for s in part)
                                               for method, n in caps.items()}}


def _folds(ctx: EvalContext, checkpoint: str, sidecar: Mapping) -> list[tuple[EvalContext, str | None, set[str]]]:
    """(context, calibration dataset, items its model was calibrated on) per model of the checkpoint."""
    calibration = sidecar.get("calibration") or {}
    folds = [set(items) for items in calibration.get("folds", [])]
    dataset = calibration.get("dataset")
    if len(folds) < 2:
        return [(ctx, dataset, folds[0] if folds else set())]
    twin = models.crossfit_twin(ctx.model, checkpoint)
    if twin is None:
        raise models.CheckpointError(f"{checkpoint}: its sidecar lists two calibration halves but the file holds "
                                     "no cross-fitting buffers; delete it and rerun the job that wrote it")
    return [(ctx, dataset, folds[0]), (ctx.with_model(twin.to(ctx.device)), dataset, folds[1])]


def _split(folds: Sequence[tuple[EvalContext, str | None, set[str]]], dataset: str, samples: list[Sample]
           ) -> list[tuple[EvalContext, list[Sample]]]:
    """Each sample goes to the first model that was not calibrated on it (cross-fitting)."""
    parts: list[list[Sample]] = [[] for _ in folds]
    for sample in samples:
        for k, (_, calibration_dataset, calibrated) in enumerate(folds):
            if calibration_dataset != dataset or sample.item not in calibrated:
                parts[k].append(sample)
                break
        else:
            raise RuntimeError(f"{dataset}/{sample.item}: every model of this checkpoint was calibrated on it; "
                               "the study must not evaluate a model on its calibration images")
    return [(ctx, part) for (ctx, _, _), part in zip(folds, parts)]


def draw_gallery(*, out: str, arch: str, arch_cfg: Mapping, method: str, settings: Mapping,
                 checkpoints: Sequence[str], data: Mapping, device: str, title: str, threads: int = 1,
                 reuse_freed_memory: bool = True) -> None:
    """One PNG: a few images' attribution maps for every method, one column per checkpoint
    (dense, the control, then the sparsities)."""
    from ..analysis import gallery
    from ..tasks import interpretability

    devmod.setup(threads, 0, reuse_freed_memory)
    dev = devmod.resolve(device)
    maps: dict[str, dict[str, np.ndarray]] = {}
    columns: list[str] = []
    images = None
    for path in checkpoints:
        model, sidecar = models.load_checkpoint(path, arch_cfg)
        ctx = EvalContext(model=model.to(dev), arch_cfg=arch_cfg, method=sidecar["method"], seed=sidecar["seed"],
                          data=data, device=dev)
        dataset = settings["datasets"][0]
        # At the study's fixed size, also for a native-resolution study: the figure is a grid of equal cells.
        with_mask = [s for s in subset(ctx.samples(dataset), settings.get("n_images")) if s.mask is not None
                     and s.mask.any()][: int(settings.get("gallery_images", 4))]
        with torch.random.fork_rng(devices=[]):
            found = interpretability.gallery_maps(ctx.fast_model, with_mask, {"seed": ctx.seed, **settings},
                                                  preprocess=ctx.preprocess, device=dev,
                                                  class_groups=ctx.class_groups(dataset))
        column = gallery.column_label(sidecar["method"], sidecar["sparsity"])
        columns.append(column)
        for name, array in found.items():
            maps.setdefault(name, {})[column] = array
        images = np.stack([s.image for s in with_mask])
    gallery.render(images, maps, columns, title, out)
    log.info("gallery of %s %s: %d methods x %d checkpoints", arch, method, len(maps), len(checkpoints))
