"""LOST, CorLoc and mask IoU against direct implementations of their definitions (docs/methods.md)."""

from __future__ import annotations

from collections import deque

import numpy as np
import pytest
import torch
from torchvision.ops import box_iou

from sweetspot.metrics.lost import corloc_hits, grid_boxes, lost, mask_iou, upsample_grid_mask

torch.set_num_threads(1)


def reference_lost(feats: np.ndarray, grid, image_size, k):
    """LOST for one image, written as the definition reads: loops, no batching, own flood fill."""
    h, w = grid
    p = len(feats)
    a = feats @ feats.T
    degree = [sum(1 for j in range(p) if j != i and a[i, j] > 0) for i in range(p)]
    order = sorted(range(p), key=lambda i: (degree[i], i))
    seed = order[0]
    kept = [q for q in order[: min(k, p)] if a[seed, q] > 0]
    score = np.zeros(p)
    for q in kept:
        score = score + a[q]
    positive = (score > 0).reshape(h, w)
    mask = np.zeros((h, w), dtype=bool)
    start = divmod(seed, w)
    mask[start] = True
    if positive[start]:
        todo = deque([start])
        while todo:
            r, c = todo.popleft()
            for rr, cc in ((r - 1, c), (r + 1, c), (r, c - 1), (r, c + 1)):
                if 0 <= rr < h and 0 <= cc < w and positive[rr, cc] and not mask[rr, cc]:
                    mask[rr, cc] = True
                    todo.append((rr, cc))
    rows, cols = np.nonzero(mask)
    ch, cw = image_size[0] / h, image_size[1] / w
    box = [cols.min() * cw, rows.min() * ch, (cols.max() + 1) * cw, (rows.max() + 1) * ch]
    return np.array(box), seed, mask


CASES = [  # (grid, channels, k, kind)
    ((2, 2), 3, 100, "int"), ((3, 5), 4, 2, "int"), ((6, 6), 2, 100, "int"), ((6, 6), 8, 10, "int"),
    ((7, 4), 5, 1, "int"), ((8, 8), 3, 100, "int"), ((8, 8), 16, 7, "normal"), ((5, 9), 6, 100, "normal"),
    ((1, 6), 2, 3, "int"), ((6, 1), 2, 100, "int"),
]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_batched_lost_equals_reference_loop(case):
    grid, channels, k, kind = CASES[case]
    gen = torch.Generator().manual_seed(case)
    n, p = 12, grid[0] * grid[1]
    if kind == "int":  # small integers: exact arithmetic, many degree ties, some all-zero rows
        feats = torch.randint(-1, 2, (n, p, channels), generator=gen).float()
        feats[0] = 0.0  # every patch zero: the seed cell alone
        feats[1, : p // 2] = 0.0
    else:
        feats = torch.randn(n, p, channels, generator=gen, dtype=torch.float64)
    image_size = (48, 64)
    boxes, seeds, masks = lost(feats, grid, image_size, k=k)
    assert boxes.shape == (n, 4) and seeds.shape == (n,) and masks.shape == (n, *grid) and masks.dtype == torch.bool
    for i in range(n):
        box, seed, mask = reference_lost(feats[i].double().numpy(), grid, image_size, k)
        assert int(seeds[i]) == seed
        np.testing.assert_array_equal(masks[i].numpy(), mask)
        np.testing.assert_array_equal(boxes[i].numpy(), box)


def test_ties_go_to_the_lowest_patch_index():
    # Every feature identical: all degrees tie, so the seed is patch 0 and everything is one object.
    feats = torch.ones(1, 6, 2)
    boxes, seeds, masks = lost(feats, (2, 3), (20, 30))
    assert int(seeds[0]) == 0
    assert masks.all()
    assert boxes[0].tolist() == [0.0, 0.0, 30.0, 20.0]


def planted_features(grid, rect, channels=8, seed=0):
    """Background cells share one direction; the object's cells share another, opposed to it."""
    gen = torch.Generator().manual_seed(seed)
    h, w = grid
    background, obj = torch.zeros(channels), torch.zeros(channels)
    background[0], obj[1], obj[0] = 1.0, 1.0, -0.3
    r0, c0, r1, c1 = rect
    feats = background.repeat(h, w, 1)
    feats[r0:r1, c0:c1] = obj
    feats = feats + 0.05 * torch.randn(h, w, channels, generator=gen)
    return feats.reshape(1, h * w, channels)


@pytest.mark.parametrize("k", [100, 3])
def test_planted_object_is_found(k):
    grid, rect = (6, 8), (2, 3, 4, 6)  # rows 2-3, cols 3-5
    boxes, seeds, masks = lost(planted_features(grid, rect), grid, (48, 64), k=k)
    expected = torch.zeros(grid, dtype=torch.bool)
    expected[2:4, 3:6] = True
    assert torch.equal(masks[0], expected)
    assert expected.flatten()[seeds[0]]
    assert boxes[0].tolist() == [3 * 8.0, 2 * 8.0, 6 * 8.0, 4 * 8.0]


def test_lost_rejects_a_grid_that_does_not_hold_the_patches():
    with pytest.raises(ValueError, match="grid"):
        lost(torch.randn(1, 10, 3), (3, 3), (30, 30))


def test_grid_boxes_bound_the_mask_and_scale_by_cell_size():
    masks = torch.zeros(2, 4, 4, dtype=torch.bool)
    masks[0, 1, 2] = True
    masks[1, 0:3, 1] = True
    masks[1, 2, 3] = True
    boxes = grid_boxes(masks, (40, 20))  # cells are 10 px high, 5 px wide
    assert boxes.tolist() == [[10.0, 10.0, 15.0, 20.0], [5.0, 0.0, 20.0, 30.0]]


def test_corloc_hits_match_box_iou_by_hand():
    gen = torch.Generator().manual_seed(0)

    def random_boxes(n):
        xy = torch.rand(n, 2, generator=gen) * 40
        return torch.cat([xy, xy + 5 + torch.rand(n, 2, generator=gen) * 10], 1).double()

    pred = random_boxes(30)
    gts = [torch.cat([random_boxes(int(m)), pred[i : i + 1] + torch.rand(1, 4, generator=gen).double() * 6])
           for i, m in enumerate(torch.randint(0, 3, (30,), generator=gen))]
    hits, ious = corloc_hits(pred, gts)
    for i in range(30):
        best = box_iou(pred[i : i + 1], gts[i]).max().item()
        assert ious[i].item() == best
        assert hits[i].item() == float(best >= 0.5)
    assert 0 < hits.sum() < 30  # both outcomes exercised


def test_corloc_threshold_is_inclusive_and_empty_gt_is_a_miss():
    pred = torch.tensor([[0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0], [0.0, 0.0, 10.0, 10.0]])
    gts = [np.array([[0.0, 0.0, 10.0, 5.0]]),  # IoU exactly 0.5: a hit
           np.array([[50.0, 50.0, 60.0, 60.0], [1.0, 0.0, 10.0, 10.0]]),  # best of several: 0.9
           np.zeros((0, 4))]
    hits, ious = corloc_hits(pred, gts)
    assert hits.tolist() == [1.0, 1.0, 0.0]
    assert ious[0].item() == 0.5 and ious[1].item() == pytest.approx(0.9)
    assert np.isnan(ious[2].item())


def test_upsampled_component_lies_in_its_box_and_mask_iou_counts_pixels():
    grid_mask = np.zeros((2, 3), dtype=bool)
    grid_mask[1, 1:] = True
    pixels = upsample_grid_mask(grid_mask, (10, 12))  # cells of 5 x 4 px
    expected = np.zeros((10, 12), dtype=bool)
    expected[5:, 4:] = True
    np.testing.assert_array_equal(pixels, expected)
    box = grid_boxes(torch.from_numpy(grid_mask)[None], (10, 12))[0].tolist()
    assert box == [4.0, 5.0, 12.0, 10.0]

    gt = np.zeros((10, 12), dtype=bool)
    gt[5:, 8:] = True  # half of the prediction
    assert mask_iou(pixels, gt) == 20 / 40
    ignore = np.zeros((10, 12), dtype=bool)
    ignore[:, 4:8] = True  # the half the gt misses: neither side counts it
    assert mask_iou(pixels, gt, ignore) == 1.0
    with pytest.raises(ValueError, match="differ in size"):
        mask_iou(pixels, gt[:5])
