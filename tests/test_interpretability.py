"""Attribution maps, the interpretability task and the gallery on tiny timm models (48 px)."""

from __future__ import annotations

import matplotlib.image as mpimg
import numpy as np
import pandas as pd
import pytest
import timm
import torch
from torch import nn

from sweetspot import attributions as A
from sweetspot.catalog import METRICS
from sweetspot.contract import TASK_COLUMNS
from sweetspot.data.samples import Sample
from sweetspot.analysis.gallery import column_label, render
from sweetspot.metrics.localization import deletion_auc, rma
from sweetspot.models import Preprocess, family
from sweetspot.tasks import interpretability

torch.set_num_threads(1)

CFG = dict(methods=list(A.METHODS), n_images=3, batch_size=2, target="predicted", pooling="l2sq", ig_steps=4,
           smoothgrad_samples=2, smoothgrad_stdev=0.2, deletion_steps=4, gallery_images=2, seed=0)
SIZE = 48


def make(name: str) -> nn.Module:
    torch.manual_seed(0)
    kwargs = dict(img_size=SIZE, patch_size=6) if name == "test_vit" else {}
    return timm.create_model(name, num_classes=5, **kwargs).eval()


@pytest.fixture(scope="module", params=["test_resnet", "test_vit"])
def model(request):
    return make(request.param)


@pytest.fixture(scope="module")
def batch():
    return torch.randn(3, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(1))


def predicted(model, x):
    with torch.no_grad():
        return model(x).argmax(1)


def test_every_applicable_method_gives_finite_non_negative_maps(model, batch):
    targets = predicted(model, batch)
    methods = [m for m in A.METHODS if A.applicable(m, family(model))]
    assert len(methods) == 5  # cnn: all but attention; vit: all but guided_gradcam
    for method in methods:
        maps = A.attribute(model, batch, targets, method, CFG)
        assert maps.shape == (3, SIZE, SIZE) and maps.dtype == torch.float32, method
        assert torch.isfinite(maps).all() and (maps >= 0).all(), method
        assert (maps.flatten(1).amax(1) > 0).all(), f"{method}: an all-zero map"


@pytest.mark.parametrize("method", ["saliency", "gradcam"])
def test_batching_does_not_change_maps(model, batch, method):
    targets = predicted(model, batch)
    together = A.attribute(model, batch, targets, method, CFG)
    alone = torch.cat([A.attribute(model, batch[i:i + 1], targets[i:i + 1], method, CFG) for i in range(3)])
    torch.testing.assert_close(together, alone, rtol=1e-4, atol=1e-6 * float(alone.abs().max()))


def test_attribution_leaves_the_model_unchanged(model, batch):
    before = model(batch)
    for method in ("gradcam", "attention" if family(model) == "vit" else "guided_gradcam"):
        A.attribute(model, batch, predicted(model, batch), method, CFG)
    torch.testing.assert_close(model(batch), before)


def test_smoothgrad_noise_is_seeded(batch):
    model = make("test_resnet")
    targets = predicted(model, batch)
    first = A.attribute(model, batch, targets, "ig_smoothgrad", CFG)
    torch.testing.assert_close(first, A.attribute(model, batch, targets, "ig_smoothgrad", CFG), rtol=0, atol=0)
    other = A.attribute(model, batch, targets, "ig_smoothgrad", {**CFG, "seed": 1})
    assert not torch.equal(first, other)


def test_vit_gradcam_equals_a_hand_computed_grad_cam(batch):
    model = make("test_vit")
    targets = predicted(model, batch)
    tokens = {}
    handle = model.blocks[-1].norm1.register_forward_hook(lambda m, i, out: tokens.setdefault("a", out))
    logits = model(batch)
    handle.remove()
    grads = torch.autograd.grad(logits.gather(1, targets[:, None]).sum(), tokens["a"])[0][:, 1:]
    acts = tokens["a"][:, 1:]  # (N, 64, D), class token dropped
    cam = torch.relu((acts * grads.mean(dim=1, keepdim=True)).sum(-1)).reshape(3, 1, 8, 8)
    want = torch.nn.functional.interpolate(cam, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    torch.testing.assert_close(A.attribute(model, batch, targets, "gradcam", CFG), want.detach(), rtol=1e-4, atol=1e-7)


def test_attention_equals_the_explicit_attention_matrix(batch):
    model = make("test_vit")
    attn = model.blocks[-1].attn
    seen = {}
    attn.fused_attn = False  # timm's unfused path forms softmax(q k^T * scale) and passes it to attn_drop
    handle = attn.attn_drop.register_forward_hook(lambda m, i, out: seen.setdefault("w", out))
    with torch.no_grad():
        model(batch)
    handle.remove()
    cls_row = seen["w"][:, :, 0, 1:].mean(1).reshape(3, 1, 8, 8)
    want = torch.nn.functional.interpolate(cls_row, size=(SIZE, SIZE), mode="bilinear", align_corners=False)[:, 0]
    attn.fused_attn = True
    torch.testing.assert_close(A.attribute(model, batch, predicted(model, batch), "attention", CFG), want)


class ReluAfterFeatures(nn.Module):
    """A CNN whose head applies a ReLU after the Grad-CAM layer (like a VGG classifier)."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(inplace=True), nn.Conv2d(8, 8, 3, 2, 1))
        self.head = nn.Sequential(nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 5))

    def forward_features(self, x):
        return self.features(x)

    def forward(self, x):
        return self.head(self.forward_features(x))


@pytest.mark.parametrize("target", ["predicted", "true"])
def test_the_shared_pass_gives_each_methods_own_maps_and_targets(model, batch, target):
    """attribute_batch (one forward pass for the targets and every single-pass method) equals
    the targets of a separate forward pass and `attribute` run method by method (captum)."""
    labels = [4, 0, 2]
    pick = lambda logits: A.choose_targets(logits, labels, target)  # noqa: E731
    methods = [m for m in A.METHODS if A.applicable(m, family(model))]
    targets, maps = A.attribute_batch(model, batch, methods, CFG, pick)
    with torch.no_grad():
        assert torch.equal(targets, pick(model(batch)))
    assert list(maps) == methods
    for method in methods:
        torch.testing.assert_close(maps[method], A.attribute(model, batch, targets, method, CFG), rtol=1e-5,
                                   atol=1e-8, msg=method)
    _, alone = A.attribute_batch(model, batch, ["gradcam"], CFG, pick)
    torch.testing.assert_close(alone["gradcam"], maps["gradcam"], rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("name", ["test_resnet", "resnet18", "relu_after_features"])
def test_guided_gradcam_equals_captums_two_pass_result(batch, name):
    """Guided Grad-CAM alone and off the shared pass (beside saliency) equals captum's
    GuidedGradCam; guided backprop clamps every ReLU, including one after the Grad-CAM layer."""
    from captum.attr import GuidedGradCam

    torch.manual_seed(0)
    net = ReluAfterFeatures().eval() if name == "relu_after_features" else make(name)
    targets = predicted(net, batch)
    reference = GuidedGradCam(net, A.gradcam_layer(net, batch)).attribute(
        batch.clone().requires_grad_(True), target=targets, interpolate_mode="bilinear")
    want = A.pool_channels(reference, CFG["pooling"])
    alone = A.attribute(net, batch, targets, "guided_gradcam", CFG)
    _, shared = A.attribute_batch(net, batch, ["saliency", "guided_gradcam"], CFG, lambda logits: logits.argmax(1))
    assert want.sum() > 0
    for ours in (alone, shared["guided_gradcam"]):
        torch.testing.assert_close(ours, want, rtol=1e-5, atol=1e-14)


def test_gradcam_layer_is_the_last_stage():
    x = torch.zeros(1, 3, SIZE, SIZE)
    resnet = make("test_resnet")
    assert A.gradcam_layer(resnet, x) is resnet.layer4
    effnet = timm.create_model("test_efficientnet", num_classes=5).eval()
    assert A.gradcam_layer(effnet, x) is effnet.bn2
    assert A.gradcam_layer(resnet, x, "layer3") is resnet.layer3
    with pytest.raises(ValueError, match="not a module"):
        A.gradcam_layer(resnet, x, "layer9")


def test_applicability_and_bad_names():
    assert A.applicable("guided_gradcam", "cnn") and not A.applicable("guided_gradcam", "vit")
    assert A.applicable("attention", "vit") and not A.applicable("attention", "cnn")
    with pytest.raises(ValueError, match="unknown attribution method"):
        A.applicable("lrp", "cnn")
    with pytest.raises(ValueError, match="does not apply"):
        A.attribute(make("test_resnet"), torch.zeros(1, 3, SIZE, SIZE), torch.zeros(1, dtype=torch.long),
                    "attention", CFG)
    with pytest.raises(ValueError, match="pooling"):
        A.pool_channels(torch.ones(1, 3, 2, 2), "max")


def test_pooling_definitions():
    a = torch.tensor([1.0, -3.0, 1.0]).view(1, 3, 1, 1)
    assert A.pool_channels(a, "l2sq").item() == 11.0
    assert A.pool_channels(a, "abs_sum").item() == 1.0
    assert A.pool_channels(a, "sum_pos").item() == 0.0


def test_choose_targets():
    logits = torch.tensor([[0.0, 5.0, 1.0, 2.0], [3.0, 0.0, 4.0, 1.0]])
    assert A.choose_targets(logits, [0, 0], "predicted").tolist() == [1, 2]
    assert A.choose_targets(logits, [3, 0], "true").tolist() == [3, 0]
    groups = [[0, 1], [2, 3]]  # dataset label -> model classes
    assert A.choose_targets(logits, [1, 0], "true", groups).tolist() == [3, 0]
    with pytest.raises(ValueError, match="labels"):
        A.choose_targets(logits, [-1, 0], "true")
    with pytest.raises(ValueError, match="target"):
        A.choose_targets(logits, [0, 0], "best")


class RegionModel(nn.Module):
    """Logits that depend only on the energy of a known square of pixels."""

    region = (slice(10, 22), slice(20, 36))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x[:, :, self.region[0], self.region[1]].pow(2).mean(dim=(1, 2, 3))
        return torch.stack([8 * (s - 0.5), -8 * (s - 0.5)], dim=1)


def test_saliency_mass_lies_where_the_model_looks():
    model = RegionModel().eval()
    x = torch.randn(2, 3, SIZE, SIZE, generator=torch.Generator().manual_seed(0))
    mask = np.zeros((2, SIZE, SIZE), bool)
    mask[:, RegionModel.region[0], RegionModel.region[1]] = True
    targets = torch.zeros(2, dtype=torch.long)
    for method in ("saliency", "ig"):
        maps = A.attribute(model, x, targets, method, CFG)
        np.testing.assert_allclose(rma(maps, mask), 1.0, err_msg=method)
    saliency = A.attribute(model, x, targets, "saliency", CFG).numpy()
    reversed_map = saliency.max() - saliency
    good = deletion_auc(model, x, saliency, targets, steps=8)
    assert (good < deletion_auc(model, x, reversed_map, targets, steps=8)).all()


def samples_with_masks(n: int = 4) -> list[Sample]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        mask = np.zeros((SIZE, SIZE), bool)
        mask[8:30, 10 + i:34] = True
        ignore = np.zeros((SIZE, SIZE), bool)
        ignore[8, :] = True
        out.append(Sample(item=f"img{i}", image=rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8), label=i % 5,
                          mask=mask if i != 1 else None, ignore=ignore))
    return out


PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=SIZE)


def test_evaluate_rows_and_skipped(model):
    samples = samples_with_masks()
    frame, skipped = interpretability.evaluate(model, samples, "toy", CFG, preprocess=PRE, device=torch.device("cpu"))
    assert skipped == ["img1"]  # the first 3 samples are used; img1 has no mask
    assert list(frame.columns) == list(TASK_COLUMNS)
    methods = {m for m in A.METHODS if A.applicable(m, family(model))}
    assert set(frame["variant"]) == methods
    metrics = {"rma", "rra", "pointing_game", "deletion_auc", "insertion_auc", "deletion_auc_norm", "insertion_auc_norm",
               "flag_zero_map", "flag_nonfinite_map"}
    assert set(frame["metric"]) == metrics and metrics <= set(METRICS)
    assert set(frame["item"]) == {"img0", "img2"}
    assert len(frame) == 2 * len(methods) * len(metrics)
    relative = frame["metric"].str.endswith("_norm")  # relative to the intact image: insertion can pass 1
    assert frame.loc[~relative, "value"].between(0, 1).all() and (frame.loc[relative, "value"] >= 0).all()
    raw = frame.pivot_table(index=["variant", "item"], columns="metric", values="value")
    assert ((raw["deletion_auc_norm"] >= raw["deletion_auc"]) & (raw["insertion_auc_norm"] >= raw["insertion_auc"])).all()
    again, _ = interpretability.evaluate(model, samples, "toy", CFG, preprocess=PRE, device=torch.device("cpu"))
    np.testing.assert_array_equal(frame["value"].to_numpy(), again["value"].to_numpy())  # deterministic on CPU


def test_evaluate_true_target_with_class_groups():
    model = make("test_resnet")
    samples = [s for s in samples_with_masks() if s.mask is not None]
    for s in samples:
        s.label = 1
    cfg = {**CFG, "target": "true", "methods": ["gradcam"]}
    frame, skipped = interpretability.evaluate(model, samples, "toy", cfg, preprocess=PRE, device=torch.device("cpu"),
                                               class_groups=[[0], [2, 4]])
    assert skipped == [] and len(frame) == 3 * 9


def test_gallery_maps_and_render(tmp_path, model):
    samples = samples_with_masks()
    maps = interpretability.gallery_maps(model, samples, CFG, preprocess=PRE, device=torch.device("cpu"))
    assert set(maps) == {m for m in A.METHODS if A.applicable(m, family(model))}
    for m in maps.values():
        assert m.shape == (2, SIZE, SIZE) and m.dtype == np.float32 and m.min() >= 0 and m.max() <= 1
    images = np.stack([s.image for s in samples[:2]])
    path = tmp_path / "gallery.png"
    columns = ["dense", "control-finetune", "50%"]
    render(images, {"gradcam": {"50%": maps["gradcam"], "dense": maps["saliency"]}, "saliency": {"dense": maps["saliency"]}},
           columns, "gradcam", path)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="shape"):
        render(images, {"gradcam": {"dense": maps["gradcam"][:1]}}, ["dense"], "bad", tmp_path / "bad.png")
    assert [column_label(m, s) for m, s in (("dense", 0.0), ("control-snip", 0.0), ("snip", 0.875))] == \
        ["dense", "control-snip", "87.5%"]


def test_a_gallery_of_a_large_study_stays_within_a_screen(tmp_path):
    """The paper preset's shape: 6 methods x 4 images as rows, dense, control and 14 IMP levels as columns."""
    images = np.zeros((4, 224, 224, 3), np.uint8)
    columns = ["dense", "control-finetune", *[f"{l}%" for l in range(14)]]
    maps = {m: {c: np.zeros((4, 224, 224), np.float32) for c in columns} for m in A.METHODS}
    render(images, maps, columns, "large", tmp_path / "large.png")
    height, width = mpimg.imread(tmp_path / "large.png").shape[:2]
    assert max(height, width) <= 1600 and min(height, width) >= 1000, (width, height)


def test_costly_methods_can_explain_fewer_images(model):
    samples = [s for s in samples_with_masks() if s.mask is not None]
    cfg = {**CFG, "methods": ["saliency", "ig"], "n_images_by_method": {"ig": 1}}
    frame, _ = interpretability.evaluate(model, samples, "toy", cfg, preprocess=PRE, device=torch.device("cpu"))
    items = frame.groupby("variant")["item"].unique()
    assert len(items["saliency"]) == len(samples) and list(items["ig"]) == [samples[0].item]
    full, _ = interpretability.evaluate(model, samples, "toy", {**CFG, "methods": ["saliency", "ig"]},
                                        preprocess=PRE, device=torch.device("cpu"))
    keys = ["variant", "metric", "item"]
    expected = full[(full["variant"] == "saliency") | (full["item"] == samples[0].item)]
    pd.testing.assert_frame_equal(frame.sort_values(keys).reset_index(drop=True),
                                  expected.sort_values(keys).reset_index(drop=True))  # the same scores where both explain
