"""Do attribution maps point at the object, and do they explain the prediction?

Per-image scores, vectorised over a batch of maps (N, H, W) against object masks (N, H, W)
(docs/methods.md, "interpretability"):

- relevance mass accuracy (Arras et al. 2022): relevance inside the mask / total relevance;
- relevance rank accuracy: with K = mask size, the fraction of the K highest pixels inside
  the mask;
- pointing game (Zhang et al. 2016): is the arg-max pixel inside the mask;
- deletion / insertion AUC (Petsiuk et al., RISE, BMVC 2018): the target-class probability
  as pixels are removed from / inserted into the image, most relevant first; also relative to
  the probability on the intact image (`perturbation_scores`).

Conventions (one rule throughout: a tie is broken uniformly at random and we score the
*expected* value, so no pixel order decided by memory layout can move a score):
- `ignore` pixels leave both the map and the mask; N counts the remaining pixels.
- Ties at the K-th value (rank accuracy) or at the maximum (pointing game) share the
  remaining slots in proportion: e.g. the pointing game scores the fraction of tied maxima
  inside the mask. With a unique maximum / K-th value this is the usual definition.
- A zero map is the constant map: every pixel ties, so all three score the chance level
  |mask| / N (also the limit of relevance mass for a map tending to a constant). It is
  scored, not dropped, so a collapsed model counts as the chance-level explainer it is;
  `flag_zero_map` marks it.
- A map with a NaN or infinite pixel (outside `ignore`) has no meaning: its scores are NaN
  and `flag_nonfinite_map` marks it. A mask empty after `ignore` gives NaN scores.
- Negative relevance is refused (ValueError): pool the attribution first.
- Deletion and insertion order pixels by decreasing relevance; ties keep raster order
  (a stable sort), and non-finite maps get NaN.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.functional import gaussian_blur

# RISE's insertion start image: the input blurred with an 11-pixel Gaussian of sigma 5
# (Petsiuk et al. 2018, their public evaluation code: klen=11, ksig=5).
INSERTION_BLUR_KERNEL = 11
INSERTION_BLUR_SIGMA = 5.0


def _as_numpy(array: Any, dtype: type) -> np.ndarray:
    if isinstance(array, torch.Tensor):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=dtype)


def _flatten(maps: Any, masks: Any, ignore: Any | None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(N, P) float64 relevance, bool mask inside the valid pixels, bool valid pixels."""
    relevance = _as_numpy(maps, np.float64)
    mask = _as_numpy(masks, bool)
    if relevance.ndim != 3 or relevance.shape != mask.shape:
        raise ValueError(f"maps {relevance.shape} and masks {mask.shape} must both be (N, H, W)")
    valid = np.ones_like(mask) if ignore is None else ~_as_numpy(ignore, bool)
    if valid.shape != mask.shape:
        raise ValueError(f"ignore {valid.shape} must have the masks' shape {mask.shape}")
    n = relevance.shape[0]
    relevance, mask, valid = relevance.reshape(n, -1), mask.reshape(n, -1), valid.reshape(n, -1)
    mask = mask & valid
    if np.any(relevance[valid & np.isfinite(relevance)] < 0):
        raise ValueError("attribution maps must be non-negative; pool signed attributions first "
                         "(sweetspot.attributions.pool_channels)")
    return relevance, mask, valid


def _nonfinite(relevance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    return np.any(valid & ~np.isfinite(relevance), axis=1)


def _undefined(relevance: np.ndarray, mask: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Images whose localisation scores are NaN: a non-finite map or nothing left to find."""
    return _nonfinite(relevance, valid) | (mask.sum(axis=1) == 0)


def _ranked(relevance: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Relevance with ignored and non-finite pixels pushed below every real value."""
    return np.where(valid & np.isfinite(relevance), relevance, -np.inf)


def rma(maps: Any, masks: Any, ignore: Any | None = None) -> np.ndarray:
    """Relevance mass accuracy per image: relevance inside the mask / relevance in the image."""
    relevance, mask, valid = _flatten(maps, masks, ignore)
    counted = np.where(valid & np.isfinite(relevance), relevance, 0.0)
    total = counted.sum(axis=1)
    inside = np.where(mask, counted, 0.0).sum(axis=1)
    chance = mask.sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
    score = np.where(total > 0, inside / np.where(total > 0, total, 1.0), chance)
    return np.where(_undefined(relevance, mask, valid), np.nan, score)


def rra(maps: Any, masks: Any, ignore: Any | None = None) -> np.ndarray:
    """Relevance rank accuracy per image: fraction of the K = |mask| highest pixels in the mask.

    Pixels tied with the K-th highest value fill the remaining places in proportion.
    """
    relevance, mask, valid = _flatten(maps, masks, ignore)
    k = mask.sum(axis=1)
    ranked = _ranked(relevance, valid)
    descending = -np.sort(-ranked, axis=1)
    kth = descending[np.arange(len(k)), np.maximum(k, 1) - 1][:, None]
    above = ranked > kth
    tied = valid & (ranked == kth)
    slots = k - above.sum(axis=1)
    hits = (above & mask).sum(axis=1) + slots * (tied & mask).sum(axis=1) / np.maximum(tied.sum(axis=1), 1)
    score = hits / np.maximum(k, 1)
    return np.where(_undefined(relevance, mask, valid), np.nan, score)


def pointing_game(maps: Any, masks: Any, ignore: Any | None = None) -> np.ndarray:
    """Pointing game per image: 1 if the arg-max pixel is in the mask (ties: the fraction inside)."""
    relevance, mask, valid = _flatten(maps, masks, ignore)
    ranked = _ranked(relevance, valid)
    tied = valid & (ranked == ranked.max(axis=1, keepdims=True))
    score = (tied & mask).sum(axis=1) / np.maximum(tied.sum(axis=1), 1)
    return np.where(_undefined(relevance, mask, valid), np.nan, score)


def map_flags(maps: Any, ignore: Any | None = None) -> dict[str, np.ndarray]:
    """flag_zero_map / flag_nonfinite_map (0/1 per image) over the pixels not ignored."""
    relevance = _as_numpy(maps, np.float64)
    n = relevance.shape[0]
    valid = (np.ones(relevance.shape, bool) if ignore is None else ~_as_numpy(ignore, bool)).reshape(n, -1)
    relevance = relevance.reshape(n, -1)
    nonfinite = _nonfinite(relevance, valid)
    zero = ~nonfinite & ~np.any(valid & (relevance != 0), axis=1)
    return {"flag_zero_map": zero.astype(np.float64), "flag_nonfinite_map": nonfinite.astype(np.float64)}


def localization_scores(maps: Any, masks: Any, ignore: Any | None = None) -> dict[str, np.ndarray]:
    """rma, rra, pointing_game and the two map flags, one value per image each."""
    scores = {"rma": rma(maps, masks, ignore), "rra": rra(maps, masks, ignore),
              "pointing_game": pointing_game(maps, masks, ignore)}
    scores.update(map_flags(maps, ignore))
    return scores


def perturbation_curves(model: torch.nn.Module, x: torch.Tensor, maps: Any, targets: torch.Tensor, *,
                        mode: str, steps: int, batch_size: int = 32, valid: Any | None = None) -> np.ndarray:
    """Target-class softmax probability at fractions 0, 1/steps, ..., 1 of pixels changed, (N, steps+1).

    "deletion" replaces pixels of `x` (normalised NCHW) by 0, the dataset mean colour;
    "insertion" puts them back into a blurred copy of `x`. Pixels go most relevant first.
    `valid` (N, H, W) bool marks the images' own pixels: the rest (padding) keeps its value in
    every perturbed image and does not count among the pixels. The perturbed images run
    through the model `batch_size` at a time.
    """
    return perturbation_curves_of_maps(model, x, [maps], targets, modes=(mode,), steps=steps, batch_size=batch_size,
                                       valid=valid)[0][mode]


def perturbation_curves_of_maps(model: torch.nn.Module, x: torch.Tensor, maps_list: Sequence[Any],
                                targets: torch.Tensor, *, modes: Sequence[str], steps: int, batch_size: int = 32,
                                valid: Any | None = None) -> list[dict[str, np.ndarray]]:
    """`perturbation_curves` of several maps of the same images (one per attribution method) and
    modes at once: per map, mode -> (N, steps+1).

    A curve's ends do not depend on the map (nothing changed: the start image; every pixel
    changed: the end image), so each image's intact, deleted and blurred versions run once for
    all maps and modes; the steps in between of every map and mode share the batches.
    """
    for mode in modes:
        if mode not in ("deletion", "insertion"):
            raise ValueError(f"perturbation mode {mode!r} unknown; choose deletion or insertion")
    if steps < 1:
        raise ValueError(f"deletion_steps must be at least 1, got {steps}")
    n, _, h, w = x.shape
    device = x.device
    inside = _valid_pixels(valid, n, h, w).to(device)
    ranks = [_pixel_ranks(maps, inside, n, h, w) for maps in maps_list]
    changed_counts = torch.as_tensor(_changed_counts(steps, inside.sum(1).cpu().numpy()), device=device).long()
    x = x.detach().float()
    ends = {"deletion": (x, torch.zeros_like(x))}  # mode -> (start, end) images
    if "insertion" in modes:
        blur = gaussian_blur(x, [INSERTION_BLUR_KERNEL] * 2, [INSERTION_BLUR_SIGMA] * 2)
        ends["insertion"] = (torch.where(inside.reshape(n, 1, h, w), blur, x), x)
    deleted = torch.where(inside.reshape(n, 1, h, w), ends["deletion"][1], x)  # padding keeps its value
    # Every image to score, as (the curve points it gives, image index, the map-free batch it
    # comes from or the point that makes it); the map-free ones first. The perturbed images are
    # made batch by batch: all of them at once would not fit a GPU for large images and many steps.
    fixed = {"intact": x, "deleted": deleted}
    if "insertion" in modes:
        fixed["blurred"] = ends["insertion"][0]
    owners = {name: [(k, mode, step) for k in range(len(maps_list)) for mode in modes for step in (0, steps)
                     if _end_image(mode, step, steps) == name] for name in fixed}
    slots: list[tuple[list[tuple[int, str, int]], int, Any]] = [
        (owners[name], i, images) for i in range(n) for name, images in fixed.items() if owners[name]]
    slots += [([(k, mode, step)], i, (k, mode, step)) for k in range(len(maps_list)) for mode in modes
              for i in range(n) for step in range(1, steps)]

    def image(i: int, source: Any) -> torch.Tensor:
        if isinstance(source, torch.Tensor):
            return source[i]
        k, mode, step = source
        start, end = ends[mode]
        return torch.where(ranks[k][i] < changed_counts[i, step], end[i], start[i])

    probs = [{mode: np.empty((n, steps + 1)) for mode in modes} for _ in maps_list]
    targets = targets.to(device)
    channels_last = x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous()
    with torch.no_grad():
        for first in range(0, len(slots), batch_size):
            chunk = slots[first:first + batch_size]
            images = torch.stack([image(i, source) for _, i, source in chunk])
            if channels_last:
                images = images.contiguous(memory_format=torch.channels_last)
            rows = torch.tensor([i for _, i, _ in chunk], device=device)
            p = F.softmax(model(images).float(), dim=1).gather(1, targets[rows].view(-1, 1))[:, 0].cpu().numpy()
            for (owners, i, _), value in zip(chunk, p):
                for k, mode, step in owners:
                    probs[k][mode][i, step] = value
    return probs


def _end_image(mode: str, step: int, steps: int) -> str:
    """Which map-free image a curve's end is: deletion starts intact and ends deleted,
    insertion starts blurred and ends intact."""
    if mode == "deletion":
        return "intact" if step == 0 else "deleted"
    return "blurred" if step == 0 else "intact"


def _pixel_ranks(maps: Any, inside: torch.Tensor, n: int, h: int, w: int) -> torch.Tensor:
    """Each pixel's place in the order of decreasing relevance, (N, 1, H, W); ties keep raster
    order (a stable sort) and padding ranks after every pixel of the image, so no step reaches it."""
    relevance = torch.as_tensor(_as_numpy(maps, np.float32), device=inside.device).reshape(n, -1)
    if relevance.shape[1] != h * w:
        raise ValueError(f"maps {tuple(relevance.shape)} do not match the images' {h}x{w} pixels")
    relevance = torch.where(inside, torch.nan_to_num(relevance, nan=0.0), float("-inf"))
    order = torch.argsort(relevance, dim=1, descending=True, stable=True)
    rank = torch.empty_like(order)
    rank.scatter_(1, order, torch.arange(h * w, device=inside.device).expand(n, -1))
    return rank.reshape(n, 1, h, w)


def _valid_pixels(valid: Any | None, n: int, h: int, w: int) -> torch.Tensor:
    """Bool (N, H*W): the images' own pixels (all of them when `valid` is None)."""
    if valid is None:
        return torch.ones(n, h * w, dtype=torch.bool)
    inside = torch.as_tensor(_as_numpy(valid, bool))
    if tuple(inside.shape) != (n, h, w):
        raise ValueError(f"valid {tuple(inside.shape)} must have the images' shape {(n, h, w)}")
    return inside.reshape(n, -1)


def _auc_of_curves(curves: np.ndarray, steps: int, n_pixels: np.ndarray) -> np.ndarray:
    """Per image, the trapezoid area under its curve over the fraction of its `n_pixels` changed."""
    n_pixels = np.asarray(n_pixels).reshape(-1, 1)
    fractions = _changed_counts(steps, n_pixels) / n_pixels
    return ((curves[:, 1:] + curves[:, :-1]) / 2 * np.diff(fractions, axis=1)).sum(axis=1)


def _changed_counts(steps: int, n_pixels: np.ndarray) -> np.ndarray:
    """Pixels changed at each of the steps+1 points: round(s * P / steps), from 0 to P, one row per image's P."""
    n_pixels = np.asarray(n_pixels, dtype=np.float64).reshape(-1, 1)
    return np.round(np.arange(steps + 1) * (n_pixels / steps))


def perturbation_scores(model: torch.nn.Module, x: torch.Tensor, maps: Any, targets: torch.Tensor, *,
                        steps: int, batch_size: int = 32, valid: Any | None = None) -> dict[str, np.ndarray]:
    """Deletion and insertion AUC per image, raw and relative to the intact image.

    deletion_auc / insertion_auc: areas under the target-class probability curves (lower /
    higher: the map found what the model uses). The *_norm variants divide the curve by the
    target's probability on the intact image (the deletion curve's first point), so a model that
    has merely lost confidence does not score a lower deletion AUC for free. Non-finite maps
    and an intact probability of 0 give NaN. `valid` as in perturbation_curves: padding is
    never changed and non-finite values there do not count.
    """
    return perturbation_scores_by_method(model, x, {"": maps}, targets, steps=steps, batch_size=batch_size,
                                         valid=valid)[""]


def perturbation_scores_by_method(model: torch.nn.Module, x: torch.Tensor, maps_by_method: Mapping[str, Any],
                                  targets: torch.Tensor, *, steps: int, batch_size: int = 32,
                                  valid: Any | None = None) -> dict[str, dict[str, np.ndarray]]:
    """`perturbation_scores` of every method's maps of the same images, method -> scores; the
    images that do not depend on the map run once (perturbation_curves_of_maps)."""
    n, _, h, w = x.shape
    inside = _valid_pixels(valid, n, h, w).numpy()
    n_pixels = inside.sum(axis=1)
    curves = perturbation_curves_of_maps(model, x, list(maps_by_method.values()), targets,
                                         modes=("deletion", "insertion"), steps=steps, batch_size=batch_size,
                                         valid=valid)
    result = {}
    for (method, maps), curve in zip(maps_by_method.items(), curves):
        finite = (np.isfinite(_as_numpy(maps, np.float64).reshape(n, -1)) | ~inside).all(axis=1)
        intact = curve["deletion"][:, 0]
        scores = {"deletion_auc": _auc_of_curves(curve["deletion"], steps, n_pixels),
                  "insertion_auc": _auc_of_curves(curve["insertion"], steps, n_pixels)}
        with np.errstate(invalid="ignore", divide="ignore"):
            for name in ("deletion_auc", "insertion_auc"):
                scores[f"{name}_norm"] = np.where(intact > 0, scores[name] / np.where(intact > 0, intact, 1.0),
                                                  np.nan)
        result[method] = {name: np.where(finite, values, np.nan) for name, values in scores.items()}
    return result


def deletion_auc(model: torch.nn.Module, x: torch.Tensor, maps: Any, targets: torch.Tensor, *,
                 steps: int, batch_size: int = 32) -> np.ndarray:
    """Area under the deletion curve per image (lower: the map found what the model uses)."""
    return _area(model, x, maps, targets, "deletion", steps, batch_size)


def insertion_auc(model: torch.nn.Module, x: torch.Tensor, maps: Any, targets: torch.Tensor, *,
                  steps: int, batch_size: int = 32) -> np.ndarray:
    """Area under the insertion curve per image (higher: the map found what the model uses)."""
    return _area(model, x, maps, targets, "insertion", steps, batch_size)


def _area(model: torch.nn.Module, x: torch.Tensor, maps: Any, targets: torch.Tensor, mode: str, steps: int,
          batch_size: int) -> np.ndarray:
    curves = perturbation_curves(model, x, maps, targets, mode=mode, steps=steps, batch_size=batch_size)
    finite = np.isfinite(_as_numpy(maps, np.float64).reshape(x.shape[0], -1)).all(axis=1)
    return np.where(finite, _auc_of_curves(curves, steps, np.full(x.shape[0], x.shape[-2] * x.shape[-1])), np.nan)
