"""Localisation and faithfulness metrics against direct implementations of their definitions (docs/methods.md) and Quantus."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from sweetspot.metrics import localization as L

torch.set_num_threads(1)


# Direct, one-image-at-a-time implementations of the definitions (with the documented tie
# rule: a tie is broken uniformly at random and the expected score is reported).
def ref_rma(r: np.ndarray, m: np.ndarray, ign: np.ndarray) -> float:
    valid = [(float(r[i, j]), bool(m[i, j])) for i in range(r.shape[0]) for j in range(r.shape[1]) if not ign[i, j]]
    total = sum(v for v, _ in valid)
    inside = sum(v for v, in_mask in valid if in_mask)
    if total == 0:
        return sum(in_mask for _, in_mask in valid) / len(valid)
    return inside / total


def ref_rra(r: np.ndarray, m: np.ndarray, ign: np.ndarray) -> float:
    valid = [(float(r[i, j]), bool(m[i, j])) for i in range(r.shape[0]) for j in range(r.shape[1]) if not ign[i, j]]
    k = sum(in_mask for _, in_mask in valid)
    values = sorted((v for v, _ in valid), reverse=True)
    kth = values[k - 1]
    greater = sum(v > kth for v in values)
    equal = sum(v == kth for v in values)
    hits = 0.0
    for v, in_mask in valid:
        if in_mask:
            hits += 1.0 if v > kth else ((k - greater) / equal if v == kth else 0.0)
    return hits / k


def ref_pointing(r: np.ndarray, m: np.ndarray, ign: np.ndarray) -> float:
    valid = [(float(r[i, j]), bool(m[i, j])) for i in range(r.shape[0]) for j in range(r.shape[1]) if not ign[i, j]]
    top = max(v for v, _ in valid)
    tied = [in_mask for v, in_mask in valid if v == top]
    return sum(tied) / len(tied)


def random_case(seed: int, n: int = 5, size: int = 12, ties: bool = False, with_ignore: bool = False):
    rng = np.random.default_rng(seed)
    maps = rng.random((n, size, size)) ** 3
    if ties:
        maps = np.round(maps * 3)  # few distinct values: many ties, some zero pixels
    masks = rng.random((n, size, size)) < rng.uniform(0.1, 0.6, size=(n, 1, 1))
    masks[:, 0, 0] = True  # never empty
    ignore = (rng.random((n, size, size)) < 0.15) if with_ignore else np.zeros_like(masks)
    ignore[:, 0, 0] = False
    return maps, masks, ignore


CASES = [dict(seed=s, ties=t, with_ignore=i) for s in range(3) for t in (False, True) for i in (False, True)]


@pytest.mark.parametrize("case", CASES, ids=lambda c: f"seed{c['seed']}-ties{c['ties']}-ignore{c['with_ignore']}")
def test_metrics_equal_direct_definitions(case):
    maps, masks, ignore = random_case(**case)
    got = L.localization_scores(maps, masks, ignore if case["with_ignore"] else None)
    for metric, ref in (("rma", ref_rma), ("rra", ref_rra), ("pointing_game", ref_pointing)):
        want = [ref(maps[i], masks[i], ignore[i]) for i in range(len(maps))]
        np.testing.assert_allclose(got[metric], want, rtol=0, atol=1e-6, err_msg=metric)


def test_ignored_pixels_leave_map_and_mask():
    maps = np.zeros((1, 4, 4))
    masks = np.zeros((1, 4, 4), bool)
    maps[0, 0, 0], maps[0, 3, 3] = 10.0, 1.0
    masks[0, 3, 3] = masks[0, 0, 0] = True
    ignore = np.zeros((1, 4, 4), bool)
    ignore[0, 0, 0] = True  # the strongest pixel and a mask pixel, both gone
    scores = L.localization_scores(maps, masks, ignore)
    assert scores["rma"][0] == 1.0 and scores["rra"][0] == 1.0 and scores["pointing_game"][0] == 1.0


def test_torch_and_numpy_inputs_agree():
    maps, masks, ignore = random_case(7, with_ignore=True)
    a = L.localization_scores(maps, masks, ignore)
    b = L.localization_scores(torch.as_tensor(maps), torch.as_tensor(masks), torch.as_tensor(ignore))
    for metric in a:
        np.testing.assert_array_equal(a[metric], b[metric])


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_agrees_with_quantus(seed):
    quantus = pytest.importorskip("quantus")
    maps, masks, _ = random_case(seed, n=6, size=10)  # continuous maps: no ties, where conventions differ
    x = np.random.default_rng(seed).random((6, 3, 10, 10))
    y = np.zeros(6, dtype=int)
    ours = L.localization_scores(maps, masks)
    # Quantus normalises by the max and may take abs by default; our maps are already the
    # non-negative relevance, so both are switched off to compare the same definitions.
    for metric, cls in (("rma", quantus.RelevanceMassAccuracy), ("rra", quantus.RelevanceRankAccuracy),
                        ("pointing_game", quantus.PointingGame)):
        scorer = cls(abs=False, normalise=False, disable_warnings=True, display_progressbar=False)
        theirs = scorer(model=None, x_batch=x, y_batch=y, a_batch=maps[:, None], s_batch=masks[:, None].astype(float),
                        channel_first=True)
        np.testing.assert_allclose(ours[metric], np.asarray(theirs, dtype=float), atol=1e-6, err_msg=metric)


def test_degenerate_maps_are_flagged_and_scored_not_crashing():
    rng = np.random.default_rng(0)
    masks = rng.random((5, 8, 8)) < 0.3
    masks[:, 0, 0] = True
    chance = masks.reshape(5, -1).mean(axis=1)
    maps = rng.random((5, 8, 8))
    maps[0] = 0.0
    maps[1] = 2.5
    maps[2, 3, 3] = np.nan
    maps[3, 1, 1] = np.inf
    scores = L.localization_scores(maps, masks)
    np.testing.assert_array_equal(scores["flag_zero_map"], [1, 0, 0, 0, 0])
    np.testing.assert_array_equal(scores["flag_nonfinite_map"], [0, 0, 1, 1, 0])
    for metric in ("rma", "rra", "pointing_game"):
        # zero and constant maps rank nothing: every tie rule gives the chance level
        np.testing.assert_allclose(scores[metric][:2], chance[:2], err_msg=metric)
        assert np.isnan(scores[metric][2:4]).all(), metric
        assert np.isfinite(scores[metric][4]), metric


def test_non_finite_pixels_under_ignore_do_not_count():
    maps = np.ones((1, 4, 4))
    maps[0, 0, 0] = np.nan
    masks = np.zeros((1, 4, 4), bool)
    masks[0, 1, 1] = True
    ignore = np.zeros((1, 4, 4), bool)
    ignore[0, 0, 0] = True
    scores = L.localization_scores(maps, masks, ignore)
    assert scores["flag_nonfinite_map"][0] == 0 and np.isfinite(scores["rma"][0])


def test_empty_mask_gives_nan_and_negative_map_is_refused():
    maps = np.random.default_rng(0).random((2, 4, 4))
    masks = np.zeros((2, 4, 4), bool)
    masks[1, 2, 2] = True
    assert np.isnan(L.rma(maps, masks)[0]) and np.isfinite(L.rma(maps, masks)[1])
    with pytest.raises(ValueError, match="non-negative"):
        L.rma(-maps, masks)
    with pytest.raises(ValueError, match="must both be"):
        L.rra(maps, masks[:, :3])


class RegionModel(nn.Module):
    """Two logits that depend only on the energy s = mean(x^2) of a known square: +-8(s - 1/2)."""

    region = (slice(8, 20), slice(8, 20))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, self.region[0], self.region[1]].pow(2).mean(dim=(1, 2, 3))
        return torch.stack([8 * (s - 0.5), -8 * (s - 0.5)], dim=1)


def checkerboard(n: int, size: int = 32) -> torch.Tensor:
    """+-1 pixels: energy 1 everywhere, but a blur (insertion's start) or the baseline 0 removes it."""
    ij = torch.arange(size)
    board = ((ij[:, None] + ij[None, :]) % 2 * 2 - 1).float()
    return board.expand(n, 3, size, size).clone()


def region_map(n: int = 2, size: int = 32) -> np.ndarray:
    maps = np.random.default_rng(0).random((n, size, size)) * 0.1
    maps[:, RegionModel.region[0], RegionModel.region[1]] += 1.0
    return maps


def test_deletion_and_insertion_prefer_the_true_map():
    model = RegionModel().eval()
    x = checkerboard(2)
    targets = torch.zeros(2, dtype=torch.long)
    perfect = region_map()
    reversed_map = perfect.max() - perfect
    d_good = L.deletion_auc(model, x, perfect, targets, steps=16)
    d_bad = L.deletion_auc(model, x, reversed_map, targets, steps=16)
    i_good = L.insertion_auc(model, x, perfect, targets, steps=16)
    i_bad = L.insertion_auc(model, x, reversed_map, targets, steps=16)
    assert (d_good < d_bad - 0.3).all()
    assert (i_good > i_bad + 0.3).all()


def test_perturbation_curves_endpoints_and_chunking():
    model = RegionModel().eval()
    x = checkerboard(3)
    targets = torch.zeros(3, dtype=torch.long)
    maps = region_map(3)
    curves = L.perturbation_curves(model, x, maps, targets, mode="deletion", steps=8, batch_size=5)
    full = torch.softmax(model(x), 1)[:, 0].numpy()
    np.testing.assert_allclose(curves[:, 0], full, rtol=1e-6)
    np.testing.assert_allclose(curves[:, -1], torch.sigmoid(torch.tensor(-8.0)).item(), rtol=1e-5)  # all at 0
    assert (np.diff(curves, axis=1) <= 1e-7).all()  # deleting this model's evidence never helps it
    same = L.perturbation_curves(model, x, maps, targets, mode="deletion", steps=8, batch_size=64)
    np.testing.assert_allclose(curves, same, rtol=1e-6)
    insertion = L.perturbation_curves(model, x, maps, targets, mode="insertion", steps=8, batch_size=7)
    np.testing.assert_allclose(insertion[:, -1], full, rtol=1e-6)


def test_auc_of_non_finite_map_is_nan():
    model = RegionModel().eval()
    maps = region_map()
    maps[1, 0, 0] = np.nan
    auc = L.deletion_auc(model, checkerboard(2), maps, torch.zeros(2, dtype=torch.long), steps=4)
    assert np.isfinite(auc[0]) and np.isnan(auc[1])


class CountingRegionModel(RegionModel):
    """RegionModel that counts the images it scores."""

    def __init__(self):
        super().__init__()
        self.images = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.images += x.shape[0]
        return super().forward(x)


def test_curves_of_several_maps_equal_each_maps_own_curves_and_share_the_map_free_images():
    x = checkerboard(3)
    targets = torch.zeros(3, dtype=torch.long)
    rng = np.random.default_rng(1)
    maps_list = [region_map(3), rng.random((3, 32, 32)), np.zeros((3, 32, 32))]  # the zero map: all pixels tie
    model = CountingRegionModel().eval()
    together = L.perturbation_curves_of_maps(model, x, maps_list, targets, modes=("deletion", "insertion"), steps=8,
                                             batch_size=7)
    # per image: intact, deleted and blurred once, then 7 inner steps per map and mode
    assert model.images == 3 * 3 + 3 * len(maps_list) * 2 * 7
    for maps, curves in zip(maps_list, together):
        for mode in ("deletion", "insertion"):
            alone = L.perturbation_curves(RegionModel().eval(), x, maps, targets, mode=mode, steps=8, batch_size=5)
            np.testing.assert_allclose(curves[mode], alone, rtol=1e-6)
    scores = L.perturbation_scores_by_method(model, x, {"a": maps_list[0], "b": maps_list[1]}, targets, steps=8)
    np.testing.assert_allclose(scores["b"]["insertion_auc_norm"],
                               L.perturbation_scores(model, x, maps_list[1], targets, steps=8)["insertion_auc_norm"],
                               rtol=1e-6)
