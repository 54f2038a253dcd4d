"""LOST single-object discovery (Simeoni et al., BMVC 2021), batched, and its scores.

Definition (docs/methods.md, "discovery"), with the choices of the authors' public code made explicit:

- A = F F^T per image. Degree of a patch = number of OTHER patches with A > 0 (the
  reference code zeroes the diagonal before counting).
- Patches are ranked by increasing degree with a stable sort, so ties go to the lower
  patch index (row-major grid order); the seed is the first.
- Among the k first patches (k capped at the number of patches) those with
  A[seed, p] > 0 (strictly, as in the reference code) are kept, the seed itself included;
  their rows of A are summed into a map M.
- The 4-connected component (scipy.ndimage.label's default structure, as in the reference
  code) of M > 0 containing the seed is the object. M[seed] > 0 whenever the seed's feature
  is non-zero; for an all-zero seed feature the object is the seed cell alone.
- Box = the component's bounding cells scaled to pixels, x0, y0, x1, y1 with x1, y1
  exclusive; a cell is image size / grid pixels.

CorLoc: a hit when the box has IoU >= 0.5 with at least one ground-truth box.
"""

from __future__ import annotations

import numpy as np
import scipy.ndimage
import torch
from torchvision.ops import box_iou

CORLOC_IOU = 0.5
# scipy.ndimage.label's default 2-D structure (4-connected) in the middle plane of a 3-D one.
_FOUR_CONNECTED_IN_EACH_IMAGE = np.stack([np.zeros((3, 3), bool), scipy.ndimage.generate_binary_structure(2, 1),
                                          np.zeros((3, 3), bool)])


def lost(features: torch.Tensor, grid: tuple[int, int], image_size: tuple[int, int],
         k: int = 100) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """LOST on a batch of patch features (N, P, C), P = h*w in row-major order.

    Returns boxes (N, 4) float64 pixel x0, y0, x1, y1 (exclusive), seeds (N,) int64 patch
    indices and the object components as bool grid masks (N, h, w), all on the CPU.
    """
    n, p, _ = features.shape
    h, w = grid
    if h * w != p:
        raise ValueError(f"grid {h}x{w} does not hold the {p} patches of the features")
    if k < 1:
        raise ValueError(f"k_patches must be >= 1, got {k}")
    # Half precision would flip signs of near-zero affinities; LOST is defined on exact signs.
    feats = features if features.dtype in (torch.float32, torch.float64) else features.float()
    affinity = torch.bmm(feats, feats.transpose(1, 2))
    positive = affinity > 0
    degree = positive.sum(-1) - positive.diagonal(dim1=1, dim2=2).long()
    order = torch.sort(degree, dim=1, stable=True).indices
    seeds = order[:, 0]
    candidates = order[:, : min(k, p)]
    seed_rows = affinity[torch.arange(n, device=affinity.device), seeds]  # (N, P)
    kept = torch.gather(seed_rows, 1, candidates) > 0
    weights = torch.zeros_like(seed_rows).scatter_(1, candidates, kept.to(seed_rows.dtype))
    score_map = (weights.unsqueeze(1) @ affinity).squeeze(1)  # sum of the kept rows of A
    positive_maps = (score_map > 0).reshape(n, h, w).cpu().numpy()
    seeds = seeds.cpu()
    # One label call for the batch: the structure links cells within an image only, so every
    # image's components get labels of their own.
    labels, _ = scipy.ndimage.label(positive_maps, structure=_FOUR_CONNECTED_IN_EACH_IMAGE)
    images, (seed_ys, seed_xs) = np.arange(n), np.divmod(seeds.numpy(), w)
    seed_labels = labels[images, seed_ys, seed_xs][:, None, None]
    masks = (labels == seed_labels) & (seed_labels > 0)
    masks[images, seed_ys, seed_xs] = True  # a seed outside M > 0 is the object alone
    masks_t = torch.from_numpy(masks)
    return grid_boxes(masks_t, image_size), seeds, masks_t


def grid_boxes(masks: torch.Tensor, image_size: tuple[int, int]) -> torch.Tensor:
    """Pixel boxes (N, 4) x0, y0, x1, y1 (exclusive) bounding non-empty bool grid masks (N, h, w)."""
    n, h, w = masks.shape
    rows, cols = masks.any(2), masks.any(1)
    if not bool(rows.any(1).all()):
        raise ValueError("grid_boxes needs a non-empty mask per image")
    y0 = rows.to(torch.uint8).argmax(1)
    y1 = h - rows.flip(1).to(torch.uint8).argmax(1)
    x0 = cols.to(torch.uint8).argmax(1)
    x1 = w - cols.flip(1).to(torch.uint8).argmax(1)
    cell_h, cell_w = image_size[0] / h, image_size[1] / w
    cells = torch.stack([x0, y0, x1, y1], 1).double()
    return cells * torch.tensor([cell_w, cell_h, cell_w, cell_h], dtype=torch.float64)


def corloc_hits(pred_boxes: torch.Tensor, gt_boxes_list: list) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image: CorLoc hit (1.0/0.0) and the best IoU of the predicted box with any gt box.

    An image without gt boxes counts as a miss (hit 0, as the LOST evaluation counts it in the
    denominator) with IoU NaN (undefined); callers that should not score it skip it first.
    """
    pred = torch.as_tensor(pred_boxes, dtype=torch.float64).reshape(-1, 4)
    if len(gt_boxes_list) != len(pred):
        raise ValueError(f"{len(pred)} predicted boxes but {len(gt_boxes_list)} gt box lists")
    gts = [torch.as_tensor(np.asarray(gt if gt is not None else np.zeros((0, 4))), dtype=torch.float64).reshape(-1, 4)
           for gt in gt_boxes_list]
    owner = torch.repeat_interleave(torch.arange(len(pred)), torch.tensor([len(gt) for gt in gts], dtype=torch.long))
    best = torch.full((len(pred),), float("nan"), dtype=torch.float64)
    if len(owner):
        # One box_iou call for the batch (a call per image cost more than LOST itself on small
        # grids); each gt box's IoU with its own image's prediction, the best per image.
        paired = box_iou(pred, torch.cat(gts))[owner, torch.arange(len(owner))]
        best = best.scatter_reduce(0, owner, paired, "amax", include_self=False)
    hits = (best >= CORLOC_IOU).double()  # NaN compares False: a miss
    return hits, best


def upsample_grid_mask(mask: np.ndarray | torch.Tensor, image_size: tuple[int, int]) -> np.ndarray:
    """A bool grid mask (h, w) at pixel resolution: pixel (y, x) takes cell (y*h//H, x*w//W).

    The same cell-to-pixel mapping as the boxes, so a component's pixels lie inside its box.
    """
    mask = np.asarray(mask, dtype=bool)
    h, w = mask.shape
    height, width = image_size
    rows = np.arange(height) * h // height
    cols = np.arange(width) * w // width
    return mask[rows[:, None], cols[None, :]]


def mask_iou(pred_mask: np.ndarray, gt_mask: np.ndarray, ignore: np.ndarray | None = None) -> float:
    """IoU of two same-size bool pixel masks; pixels marked in `ignore` count for neither."""
    pred_mask, gt_mask = np.asarray(pred_mask, dtype=bool), np.asarray(gt_mask, dtype=bool)
    if pred_mask.shape != gt_mask.shape:
        raise ValueError(f"mask_iou: predicted mask {pred_mask.shape} and gt mask {gt_mask.shape} differ in size")
    if ignore is not None:
        keep = ~np.asarray(ignore, dtype=bool)
        pred_mask, gt_mask = pred_mask & keep, gt_mask & keep
    union = np.count_nonzero(pred_mask | gt_mask)
    return float(np.count_nonzero(pred_mask & gt_mask) / union) if union else float("nan")
