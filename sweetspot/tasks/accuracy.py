"""Accuracy task: top-1 and top-5 correctness per image."""

from __future__ import annotations

import numpy as np
import pandas as pd
import torch

from ..contract import task_frame
from ..data.samples import Sample, stack_images
from ..models import Preprocess
from ..training import predict_logits
from .context import EvalContext


def run(ctx: EvalContext, dataset: str, samples: list[Sample], settings: dict) -> pd.DataFrame:
    """The task's rows for one dataset (the interface every task implements, sweetspot.tasks);
    the logits come from the model's faster copy."""
    return evaluate(ctx.fast_model, samples, dataset, settings, preprocess=ctx.preprocess, device=ctx.device,
                    class_groups=ctx.class_groups(dataset), amp=ctx.amp)


def class_scores(logits: torch.Tensor, class_groups: list[list[int]] | None) -> torch.Tensor:
    """Scores over the dataset's classes: the logits themselves, or for grouped labels
    (ImageNet classes pooled into 16 categories) the mean softmax probability per group,
    as model-vs-human does."""
    if class_groups is None:
        return logits
    probs = torch.softmax(logits.float(), dim=1)
    return torch.stack([probs[:, group].mean(dim=1) for group in class_groups], dim=1)


def evaluate(model: torch.nn.Module, samples: list[Sample], dataset: str, cfg: dict, *, preprocess: Preprocess,
             device: torch.device, class_groups: list[list[int]] | None = None, amp: bool = True) -> pd.DataFrame:
    images = stack_images(samples)
    labels = torch.as_tensor([s.label for s in samples])
    if (labels < 0).any():
        unlabelled = [s.item for s in samples if s.label < 0]
        raise ValueError(f"{dataset}: accuracy needs a label for every image; "
                         f"{len(unlabelled)} images have none (e.g. {unlabelled[0]})")
    logits = predict_logits(model, images, preprocess=preprocess, batch_size=cfg.get("batch_size", 256),
                            device=device, amp=amp)
    scores = class_scores(logits, class_groups)
    k = min(5, scores.shape[1])
    topk = scores.topk(k, dim=1).indices
    top1 = (topk[:, 0] == labels).numpy().astype(np.float64)
    rows = [{"dataset": dataset, "variant": "", "metric": "top1", "item": s.item, "value": v}
            for s, v in zip(samples, top1)]
    if scores.shape[1] >= 5:
        top5 = (topk == labels[:, None]).any(dim=1).numpy().astype(np.float64)
        rows += [{"dataset": dataset, "variant": "", "metric": "top5", "item": s.item, "value": v}
                 for s, v in zip(samples, top5)]
    return task_frame(rows)
