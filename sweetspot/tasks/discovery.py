"""The discovery task: unsupervised single-object discovery with LOST, scored by CorLoc.

Per image (item = sample id) and variant: `corloc` (0/1), `iou` (best box IoU with any gt
box), when the sample has an object mask `mask_iou`, and for LOST `k_effective` (the
candidate patches it ranked: k_patches, or the image's patch count when that is smaller).
Variants: `lost` on the model's features; as baselines `center_box` (a fixed centred box)
and `random_init` (LOST on the same architecture untrained), which tell what the features
add over a prior on where objects are and over the architecture alone. One forward pass per
image and model, in fp32 (no autocast: LOST depends on the signs of small affinities), on the
CNNs' faster copies (sweetspot.speedups.faster_copy) where they give the same features.
Images are read at the study's fixed size, or with `native_resolution` at their own size
cropped to the model's stride or patch size, as LOST does (sweetspot.tasks.inputs).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F

from ..contract import task_frame
from ..data.samples import Sample
from ..features import AUTO, patch_features
from ..metrics.lost import corloc_hits, lost, mask_iou, upsample_grid_mask
from ..models import create, family
from . import inputs
from .context import EvalContext

log = logging.getLogger(__name__)


def discover(model: torch.nn.Module, x: torch.Tensor, *, k_patches: int = 100,
             layer: str = AUTO) -> tuple[torch.Tensor, torch.Tensor, str]:
    """LOST boxes (N, 4) in pixels, grid component masks (N, h, w) and the layer read, for a batch x.

    CNN feature maps are standardised per image over all cells and channels first (a fresh
    LayerNorm over (P, C), as the LOST code does for ResNet and VGG): ReLU features are
    non-negative, so without centring every affinity is positive and LOST has no signal.
    """
    feats, grid, used = patch_features(model, x, layer)
    if family(model) == "cnn":
        feats = F.layer_norm(feats, feats.shape[1:])
    boxes, _, masks = lost(feats, grid, tuple(x.shape[-2:]), k=k_patches)
    return boxes, masks, used


def run(ctx: EvalContext, dataset: str, samples: list[Sample], settings: Mapping[str, Any]) -> pd.DataFrame:
    """The task's rows for one dataset (the interface every task implements, sweetspot.tasks).

    The baselines do not depend on pruning, so only the dense model's job scores them.
    """
    cfg = {**settings, "baselines": bool(settings.get("baselines", True)) and ctx.method == "dense"}
    baseline = _dilated(ctx.untrained_model(), ctx.arch_cfg, settings) if cfg["baselines"] else None
    frame, skipped = evaluate(_features_model(ctx, _dilated(ctx.model, ctx.arch_cfg, settings), settings), samples,
                              dataset, cfg, preprocess=ctx.preprocess, device=ctx.device,
                              baseline_model=None if baseline is None else _features_model(ctx, baseline, settings))
    return pd.concat([frame, task_frame({"dataset": dataset, "variant": "lost", "metric": "flag_skipped", "item": item,
                                         "value": 1.0} for item in skipped)], ignore_index=True)


def _dilated(model: torch.nn.Module, arch_cfg: Mapping[str, Any], settings: Mapping[str, Any]) -> torch.nn.Module:
    """The model with a dilated last stage when `output_stride` asks for a finer grid (CNNs)."""
    stride = settings.get("output_stride")
    if stride is None or family(model) != "cnn":
        return model
    arch_cfg = {**arch_cfg, "kwargs": {**(arch_cfg.get("kwargs") or {}), "output_stride": stride}}
    dilated = create(arch_cfg, model.num_classes)
    dilated.load_state_dict(model.state_dict())  # dilation changes no parameter shapes
    return dilated.eval().to(next(model.parameters()).device)


def _features_model(ctx: EvalContext, model: torch.nn.Module, settings: Mapping[str, Any]) -> torch.nn.Module:
    """The model LOST reads: a CNN's faster copy when its forward_features output is the model's
    on the context's example (float rounding; a BatchNorm in the head folded into the last
    convolution would change it), else the model. Not for a layer named by feature_layer (folding
    makes a convolution output what its BatchNorm did), nor for ViTs: their pass stops at the
    last block's qkv projection, before the trimmed part, so only the patch embedding would
    gain, and a named layer in the trimmed last block would see the class token alone."""
    if family(model) != "cnn" or (settings.get("feature_layer") or AUTO) != AUTO:
        return model
    fast = ctx.fast_model if model is ctx.model else ctx.faster(model)
    x = ctx.example()
    with torch.inference_mode():
        want, got = model.forward_features(x), fast.forward_features(x)
    if want.shape != got.shape or float((want - got).abs().max()) > 1e-4 * (1.0 + float(want.abs().max())):
        log.info("the faster copy's features differ from the model's; LOST reads the model's")
        return model
    return fast


def center_box(image_size: tuple[int, int], fraction: float) -> np.ndarray:
    """A box (4,) x0, y0, x1, y1 centred in the image, spanning `fraction` of its height and width."""
    if not 0 < fraction <= 1:
        raise ValueError(f"center_box_fraction must be in (0, 1], got {fraction}")
    height, width = image_size
    bw, bh = width * fraction, height * fraction
    x0, y0 = (width - bw) / 2, (height - bh) / 2
    return np.array([x0, y0, x0 + bw, y0 + bh], dtype=np.float64)


def box_mask(box: np.ndarray, image_size: tuple[int, int]) -> np.ndarray:
    """Bool pixel mask (H, W) of the pixels whose centre lies inside the box."""
    x0, y0, x1, y1 = box
    ys = np.arange(image_size[0]) + 0.5
    xs = np.arange(image_size[1]) + 0.5
    return ((ys >= y0) & (ys < y1))[:, None] & ((xs >= x0) & (xs < x1))[None, :]


def evaluate(model: torch.nn.Module, samples: Sequence[Sample], dataset: str, cfg: Mapping[str, Any], *,
             preprocess: Callable[..., torch.Tensor], device: torch.device | str,
             baseline_model: torch.nn.Module | None = None) -> tuple[pd.DataFrame, list[str]]:
    """Score the first cfg["n_images"] samples; returns the task frame and the items skipped (no gt box).

    cfg: n_images, k_patches (100), feature_layer ("auto"), batch_size (64),
    baselines (false), center_box_fraction (needed with baselines), native_resolution (false:
    the samples share one size; true: each at its own size, cropped to the model's stride or
    patch size as LOST does). Models are put in eval mode.

    Besides the scores, each LOST variant records per image `k_effective`: the candidate patches
    LOST ranked, k_patches capped at the image's patch count; a cap is also logged.
    """
    n_images = cfg.get("n_images")
    chosen = list(samples)[: None if n_images is None else int(n_images)]
    scored = [s for s in chosen if s.boxes is not None and len(s.boxes) > 0]
    skipped = [s.item for s in chosen if s.boxes is None or len(s.boxes) == 0]
    if skipped:
        log.warning("%s: %d of %d images have no gt box and are skipped (e.g. %s)",
                    dataset, len(skipped), len(chosen), skipped[0])
    k_patches = int(cfg.get("k_patches", 100))
    layer = cfg.get("feature_layer") or AUTO
    batch_size = int(cfg.get("batch_size", 64))
    baselines = bool(cfg.get("baselines", False))
    fraction = float(cfg["center_box_fraction"]) if baselines else None

    variants = {"lost": model}
    if baselines and baseline_model is not None:
        variants["random_init"] = baseline_model
    for m in variants.values():
        m.eval()

    rows: list[dict[str, Any]] = []
    layers_used: set[str] = set()
    capped: dict[tuple[int, int], int] = {}  # grid -> images whose patch count is below k_patches
    for batch in inputs.batches(model, scored, native=bool(cfg.get("native_resolution", False)), mode="crop",
                                batch_size=batch_size, preprocess=preprocess, device=device):
        x, chunk = batch.x, batch.samples
        image_size = (int(x.shape[-2]), int(x.shape[-1]))
        for variant, m in variants.items():
            boxes, grid_masks, used = discover(m, x, k_patches=k_patches, layer=layer)
            layers_used.add(used)
            grid = tuple(grid_masks.shape[1:])
            k_effective = min(k_patches, grid[0] * grid[1])
            if variant == "lost" and k_effective < k_patches:
                capped[grid] = capped.get(grid, 0) + len(chunk)
            pixel_masks = [upsample_grid_mask(g, image_size) for g in grid_masks.numpy()]
            rows += _score(dataset, variant, chunk, boxes.numpy(), pixel_masks)
            rows += [{"dataset": dataset, "variant": variant, "metric": "k_effective", "item": s.item,
                      "value": float(k_effective)} for s in chunk]
        if baselines:
            box = center_box(image_size, fraction)
            rows += _score(dataset, "center_box", chunk, np.tile(box, (len(chunk), 1)),
                           [box_mask(box, image_size)] * len(chunk))
    if capped:
        grids = ", ".join(f"{h}x{w}: {n}" for (h, w), n in sorted(capped.items()))
        log.warning("%s: %d of %d images have fewer patches than k_patches=%d (images per grid: %s); LOST ranked "
                    "all of their patches, a smaller k than asked (metric k_effective)", dataset,
                    sum(capped.values()), len(scored), k_patches, grids)
    log.info("%s: LOST on %s features, %d images", dataset, ", ".join(sorted(layers_used)) or "no", len(scored))
    return task_frame(rows), skipped


def _score(dataset: str, variant: str, batch: Sequence[Sample], boxes: np.ndarray,
           pixel_masks: Sequence[np.ndarray]) -> list[dict[str, Any]]:
    hits, ious = corloc_hits(torch.from_numpy(boxes), [s.boxes for s in batch])
    rows = []
    for sample, hit, iou, pred_mask in zip(batch, hits.tolist(), ious.tolist(), pixel_masks):
        base = {"dataset": dataset, "variant": variant, "item": sample.item}
        rows.append({**base, "metric": "corloc", "value": hit})
        rows.append({**base, "metric": "iou", "value": iou})
        if sample.mask is not None:
            rows.append({**base, "metric": "mask_iou", "value": mask_iou(pred_mask, sample.mask, sample.ignore)})
    return rows
