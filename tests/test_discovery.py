"""Patch features of timm models and the discovery task's frame, baselines and cost."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from sweetspot.catalog import METRICS
from sweetspot.data.samples import Sample
from sweetspot.features import output_at, patch_features
from sweetspot.models import Preprocess
from sweetspot.tasks.discovery import box_mask, center_box, evaluate

torch.set_num_threads(1)


def tiny(name, **kwargs):
    torch.manual_seed(0)
    return timm.create_model(name, pretrained=False, num_classes=4, **kwargs).eval()


@pytest.mark.parametrize("kwargs,grid", [({}, (2, 2)), ({"output_stride": 8}, (6, 6))])
def test_resnet_features_are_last_stage_cells_in_row_major_order(kwargs, grid):
    model = tiny("test_resnet", **kwargs)
    x = torch.randn(3, 3, 48, 48)
    feats, got_grid, layer = patch_features(model, x)
    fmap = model.forward_features(x)
    assert got_grid == grid and layer == "forward_features"
    assert feats.shape == (3, grid[0] * grid[1], fmap.shape[1])
    r, c = grid[0] - 1, 0
    torch.testing.assert_close(feats[2, r * grid[1] + c], fmap[2, :, r, c], rtol=0, atol=0)


def test_vit_features_are_the_last_blocks_keys_without_prefix_tokens():
    model = tiny("test_vit", img_size=48, patch_size=6)
    block = model.blocks[-1]
    normed, after_keys = [], []
    handles = [block.norm1.register_forward_hook(lambda _m, _i, out: normed.append(out))]
    handles += [m.register_forward_hook(lambda m, _i, _o: after_keys.append(m)) for m in (block.mlp, model.norm)]
    x = torch.randn(2, 3, 48, 48)
    feats, grid, layer = patch_features(model, x)
    for handle in handles:
        handle.remove()
    assert after_keys == []  # the forward pass ends at the keys: LOST pays for no more of the model
    assert not model.blocks[-1].attn.qkv._forward_hooks  # and leaves no hook behind
    dim = block.attn.num_heads * block.attn.head_dim
    weight, bias = block.attn.qkv.weight, block.attn.qkv.bias
    with torch.no_grad():
        keys = normed[0] @ weight[dim : 2 * dim].T + bias[dim : 2 * dim]
    assert grid == (8, 8) and layer == f"blocks.{len(model.blocks) - 1}.attn.qkv:keys"
    assert feats.shape == (2, 64, dim)
    torch.testing.assert_close(feats, keys[:, model.num_prefix_tokens :], rtol=1e-5, atol=1e-6)


def test_output_at_names_a_module_the_pass_never_reaches():
    model = tiny("test_resnet")
    unused = torch.nn.Linear(2, 2)
    with pytest.raises(ValueError, match="Linear was not called"):
        output_at(unused, lambda: model(torch.randn(1, 3, 48, 48)))
    assert not unused._forward_hooks


def test_named_layer_and_unknown_layer():
    model = tiny("test_resnet")
    feats, grid, layer = patch_features(model, torch.randn(1, 3, 48, 48), layer="layer2")
    assert layer == "layer2" and grid == (6, 6) and feats.shape[:2] == (1, 36)
    with pytest.raises(ValueError, match="not a module"):
        patch_features(model, torch.randn(1, 3, 48, 48), layer="layer9")


def test_center_box_geometry():
    box = center_box((48, 64), 0.5)  # (H, W)
    assert box.tolist() == [16.0, 12.0, 48.0, 36.0]
    assert center_box((48, 48), 1.0).tolist() == [0.0, 0.0, 48.0, 48.0]
    mask = box_mask(box, (48, 64))
    assert mask.sum() == 32 * 24 and mask[12, 16] and not mask[36, 48] and not mask[11, 16]
    with pytest.raises(ValueError, match="center_box_fraction"):
        center_box((48, 48), 0.0)


class CellColour(torch.nn.Module):
    """A 'CNN' whose features are the mean colour of 8x8 cells: LOST must find a colour blob."""

    def __init__(self):
        super().__init__()
        self.calls = 0

    def forward_features(self, x):
        self.calls += 1
        return F.avg_pool2d(x, 8)

    def forward(self, x):
        return self.forward_features(x).mean((2, 3))


def blob_sample(item, top, left, *, with_mask=True, with_box=True):
    """Purple-blue 48x48 image with a red object of 16x24 px aligned to the 8 px cells.

    Raw colours all have positive dot products; only LOST's centring of CNN features
    (discover) makes object and background anti-correlated.
    """
    image = np.zeros((48, 48, 3), dtype=np.uint8)
    image[..., 0], image[..., 2] = 60, 255
    mask = np.zeros((48, 48), dtype=bool)
    mask[top : top + 16, left : left + 24] = True
    image[mask] = (255, 0, 0)
    boxes = np.array([[left, top, left + 24, top + 16]], dtype=np.float64) if with_box else None
    return Sample(item=item, image=image, mask=mask if with_mask else None, boxes=boxes)


def test_evaluate_finds_planted_objects_with_baselines_and_skips_boxless_images():
    samples = [blob_sample("a", 0, 8), blob_sample("b", 24, 24, with_mask=False),
               blob_sample("c", 8, 0, with_box=False), blob_sample("d", 16, 16), blob_sample("not-used", 0, 0)]
    model, untrained = CellColour(), CellColour()
    cfg = {"n_images": 4, "k_patches": 100, "feature_layer": "auto", "batch_size": 2,
           "center_box_fraction": 0.5, "baselines": True}
    preprocess = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), image_size=48)
    frame, skipped = evaluate(model, samples, "blobs", cfg, preprocess=preprocess, device="cpu",
                              baseline_model=untrained)
    assert skipped == ["c"]
    assert model.calls == 2 and untrained.calls == 2  # one forward per batch of 2 scored images
    assert list(frame.columns) == ["dataset", "variant", "metric", "item", "value"]
    assert set(frame["metric"]) <= set(METRICS) and set(frame["dataset"]) == {"blobs"}
    lost_rows = frame[frame.variant == "lost"].set_index(["item", "metric"])["value"]
    # k_effective: k_patches=100 capped at the 6x6 grid's 36 patches
    assert lost_rows.to_dict() == {("a", "corloc"): 1.0, ("a", "iou"): 1.0, ("a", "mask_iou"): 1.0,
                                   ("b", "corloc"): 1.0, ("b", "iou"): 1.0,
                                   ("d", "corloc"): 1.0, ("d", "iou"): 1.0, ("d", "mask_iou"): 1.0,
                                   ("a", "k_effective"): 36.0, ("b", "k_effective"): 36.0, ("d", "k_effective"): 36.0}
    assert set(frame[frame.variant == "random_init"]["item"]) == {"a", "b", "d"}

    center = frame[frame.variant == "center_box"].set_index(["item", "metric"])["value"]
    # centre box (12, 12, 36, 36) vs d's object (16, 16, 40, 32): intersection 20 x 16
    expected = 20 * 16 / (24 * 24 + 24 * 16 - 20 * 16)
    assert center[("d", "iou")] == pytest.approx(expected)
    assert center[("d", "corloc")] == float(expected >= 0.5)
    assert center[("d", "mask_iou")] == pytest.approx(expected)
    assert ("b", "mask_iou") not in center.index


def test_evaluate_costs_one_forward_pass_per_image_on_a_timm_model():
    model = tiny("test_vit", img_size=48, patch_size=6)
    passes = []
    model.patch_embed.register_forward_hook(lambda _m, inp, _o: passes.append(len(inp[0])))
    rng = np.random.default_rng(0)
    samples = [Sample(item=str(i), image=rng.integers(0, 256, (48, 48, 3), dtype=np.uint8),
                      boxes=np.array([[0.0, 0.0, 24.0, 24.0]])) for i in range(5)]
    cfg = {"n_images": 5, "k_patches": 100, "feature_layer": "auto", "batch_size": 2, "baselines": False}
    preprocess = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=48)
    frame, skipped = evaluate(model, samples, "noise", cfg, preprocess=preprocess, device="cpu")
    assert skipped == [] and passes == [2, 2, 1]
    assert set(frame["variant"]) == {"lost"} and len(frame) == 5 * 3
    scores = frame[frame["metric"] != "k_effective"]
    assert scores["value"].between(0, 1).all()
    assert (frame.loc[frame["metric"] == "k_effective", "value"] == 64).all()  # 8x8 patches, fewer than 100


class NormInHead(torch.nn.Module):
    """forward_features ends at a convolution whose BatchNorm sits in the head: folding moves it in."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn, self.fc = torch.nn.Conv2d(3, 4, 3, stride=4), torch.nn.BatchNorm2d(4), torch.nn.Linear(4, 2)

    def forward_features(self, x):
        return self.conv(x)

    def forward(self, x):
        return self.fc(self.bn(self.forward_features(x)).mean(dim=(2, 3)))


def test_lost_reads_a_cnns_faster_copy_only_where_its_features_are_the_models():
    from sweetspot.speedups.faster_copy import faster_copy
    from sweetspot.tasks.context import EvalContext
    from sweetspot.tasks.discovery import _features_model

    def features_model(model, **settings):
        ctx = EvalContext(model=model, arch_cfg={}, method="dense", seed=0, data={"image_size": 48},
                          device=torch.device("cpu"))
        return _features_model(ctx, model, settings)

    resnet = tiny("test_resnet", output_stride=8)
    fast = features_model(resnet)
    assert fast is not resnet and not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())
    x = torch.randn(2, 3, 48, 48)
    torch.testing.assert_close(patch_features(fast, x)[0], patch_features(resnet, x)[0], rtol=1e-4, atol=1e-4)
    assert features_model(resnet, feature_layer="layer4.0.conv1") is resnet  # folding would change that output
    head_norm = NormInHead().eval()
    with torch.no_grad():
        head_norm.bn.running_mean.fill_(0.5)
    assert faster_copy(head_norm, x) is not head_norm  # the model's logits,
    assert features_model(head_norm) is head_norm  # not its features
    vit = tiny("test_vit", img_size=48, patch_size=8)
    assert features_model(vit) is vit
