"""The attribution passes' copy: BatchNorm folded (CNNs), the last block trimmed to the class token
(ViTs); the same function, never stale, never keeping a model alive."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import timm
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from sweetspot import attributions as A
from sweetspot.speedups.pass_copy import pass_copy
from sweetspot.speedups.vit_trimming import _ClassTokenBlock, _PatchMatmul

X = torch.randn(3, 3, 48, 48, generator=torch.Generator().manual_seed(0))


def make(name: str, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    model = timm.create_model(name, num_classes=5).eval()
    with torch.no_grad():  # non-trivial statistics, as a trained model has
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    return model


def make_vit(seed: int = 0, **kwargs) -> nn.Module:
    torch.manual_seed(seed)
    return timm.create_model("test_vit", num_classes=5, img_size=48, patch_size=8, depth=3, embed_dim=48,
                             num_heads=3, **kwargs).eval()


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])  # plain BatchNorm2d, timm's BatchNormAct2d
def test_the_folded_copy_has_no_batchnorm_and_the_models_logits(name):
    model = make(name)
    copy_ = pass_copy(model, X)
    assert copy_ is not model and batchnorms(model) > 0 and batchnorms(copy_) == 0
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)
    assert pass_copy(model, X) is copy_  # cached


def test_saliency_through_the_folded_copy_equals_captum_on_the_model():
    model = make("resnet18")
    targets = model(X).argmax(1)
    want = Saliency(model).attribute(X.clone().requires_grad_(True), target=targets, abs=False)
    torch.testing.assert_close(A.attribute(model, X, targets, "saliency", {"pooling": "l2sq"}),
                               A.pool_channels(want, "l2sq"), rtol=1e-4, atol=1e-10)


def test_the_copy_follows_new_weights_and_eval_mode():
    model, other = make("test_resnet", seed=0), make("test_resnet", seed=1)
    first = pass_copy(model, X)
    model.load_state_dict(other.state_dict())
    second = pass_copy(model, X)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(X), other(X), rtol=1e-5, atol=1e-5)
    assert pass_copy(model.train(), X) is model


class ConvOutputReadTwice(nn.Module):
    """The BatchNorm's input (a conv output) is also added to its output: folding would change that."""

    def __init__(self):
        super().__init__()
        self.conv, self.bn = nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4)
        self.head = nn.Linear(4, 5)

    def forward(self, x):
        y = self.conv(x)
        return self.head((self.bn(y) + y).mean(dim=(2, 3)))


def test_a_conv_output_read_elsewhere_keeps_the_model(caplog):
    model = ConvOutputReadTwice().eval()
    with torch.no_grad():
        model.bn.running_mean.fill_(0.3)
        model.bn.running_var.fill_(2.0)
    with caplog.at_level(logging.WARNING, logger="sweetspot.speedups.pass_copy"):
        assert pass_copy(model, X) is model
    assert "changed the logits" in caplog.text


def test_models_nothing_applies_to_are_used_as_they_are_and_copies_free_their_models():
    plain = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Linear(4, 5)).eval()
    assert pass_copy(plain, X) is plain
    vit, resnet = make_vit(), make("test_resnet")
    pass_copy(vit, X)
    pass_copy(resnet, X)
    refs = [weakref.ref(vit), weakref.ref(resnet), weakref.ref(plain)]
    del vit, resnet, plain
    gc.collect()
    assert all(ref() is None for ref in refs)  # the cache holds no model alive


def test_the_vit_copy_computes_the_class_token_alone_with_the_models_logits():
    model = make_vit()
    copy_ = pass_copy(model, X)
    assert isinstance(copy_.blocks[-1], _ClassTokenBlock) and isinstance(copy_.patch_embed.proj, _PatchMatmul)
    assert not any(isinstance(m, (_ClassTokenBlock, _PatchMatmul)) for m in model.modules())  # model untouched
    with torch.no_grad():
        assert copy_.forward_features(X).shape[1] == 1  # one token leaves the last block
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)
    for block in copy_.blocks, model.blocks:  # both attention paths of the trimmed block
        for b in block:
            b.attn.fused_attn = False
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)


def test_gradient_maps_through_the_vit_copy_equal_captum_on_the_model():
    model = make_vit()
    targets = model(X).argmax(1)
    cfg = {"pooling": "l2sq", "ig_steps": 4, "ig_internal_batch_size": 12}
    x = X.clone().requires_grad_(True)
    torch.testing.assert_close(A.attribute(model, X, targets, "saliency", cfg),
                               A.pool_channels(Saliency(model).attribute(x, target=targets, abs=False), "l2sq"),
                               rtol=1e-4, atol=1e-12)
    want_ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(X), target=targets, n_steps=4)
    torch.testing.assert_close(A.attribute(model, X, targets, "ig", cfg), A.pool_channels(want_ig, "l2sq"),
                               rtol=1e-4, atol=1e-12)
    with A.gradcam_target(model, X) as layer:  # Grad-CAM at the tokens entering the last attention
        cam = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    want_cam = A.LayerAttribution.interpolate(cam, (48, 48), interpolate_mode="bilinear")[:, 0]
    _, maps = A.attribute_batch(model, X, ["gradcam", "attention"], cfg, lambda logits: logits.argmax(1))
    torch.testing.assert_close(maps["gradcam"], want_cam, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(maps["attention"], A.attribute(model, X, targets, "attention", cfg),
                               rtol=1e-5, atol=1e-8)


def test_a_vit_whose_head_reads_every_token_keeps_its_last_block():
    model = make_vit(global_pool="avg")
    copy_ = pass_copy(model, X)
    assert not isinstance(copy_.blocks[-1], _ClassTokenBlock)  # average pooling reads every patch token
    assert isinstance(copy_.patch_embed.proj, _PatchMatmul)
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)


def test_a_rewrite_that_fails_on_a_model_leaves_the_model_in_charge(caplog, monkeypatch):
    monkeypatch.setattr(_ClassTokenBlock, "forward", lambda self, x: x.no_such_attribute)  # e.g. another timm
    model = make_vit()
    with caplog.at_level(logging.WARNING, logger="sweetspot.speedups.pass_copy"):
        assert pass_copy(model, X) is model
    assert "fails on this model" in caplog.text
    targets = model(X).argmax(1)
    torch.testing.assert_close(A.attribute(model, X, targets, "saliency", {"pooling": "l2sq"}),
                               A.pool_channels(Saliency(model).attribute(X.clone().requires_grad_(True),
                                                                         target=targets, abs=False), "l2sq"),
                               rtol=1e-5, atol=1e-12)
