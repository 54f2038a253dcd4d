"""BatchNorm folding for the attribution passes: same function, no BatchNorm, never stale."""

from __future__ import annotations

import gc
import logging
import weakref

import pytest
import timm
import torch
from captum.attr import Saliency
from torch import nn

from sweetspot import attributions as A
from sweetspot.bn_folding import folded

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


def batchnorms(model: nn.Module) -> int:
    return sum(isinstance(m, nn.BatchNorm2d) for m in model.modules())


@pytest.mark.parametrize("name", ["test_resnet", "test_efficientnet"])  # plain BatchNorm2d, timm's BatchNormAct2d
def test_the_folded_copy_has_no_batchnorm_and_the_models_logits(name):
    model = make(name)
    copy_ = folded(model, X)
    assert copy_ is not model and batchnorms(model) > 0 and batchnorms(copy_) == 0
    with torch.no_grad():
        torch.testing.assert_close(copy_(X), model(X), rtol=1e-5, atol=1e-5)
    assert folded(model, X) is copy_  # cached


def test_saliency_through_the_folded_copy_equals_captum_on_the_model():
    model = make("resnet18")
    targets = model(X).argmax(1)
    want = Saliency(model).attribute(X.clone().requires_grad_(True), target=targets, abs=False)
    torch.testing.assert_close(A.attribute(model, X, targets, "saliency", {"pooling": "l2sq"}),
                               A.pool_channels(want, "l2sq"), rtol=1e-4, atol=1e-10)


def test_the_copy_follows_new_weights_and_eval_mode():
    model, other = make("test_resnet", seed=0), make("test_resnet", seed=1)
    first = folded(model, X)
    model.load_state_dict(other.state_dict())
    second = folded(model, X)
    assert second is not first
    with torch.no_grad():
        torch.testing.assert_close(second(X), other(X), rtol=1e-5, atol=1e-5)
    assert folded(model.train(), X) is model


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
    with caplog.at_level(logging.WARNING, logger="sweetspot.bn_folding"):
        assert folded(model, X) is model
    assert "changed the logits" in caplog.text


def test_models_without_batchnorm_are_used_as_they_are_and_can_be_freed():
    vit = timm.create_model("test_vit", num_classes=5, img_size=48, patch_size=6).eval()
    assert folded(vit, X) is vit
    resnet = make("test_resnet")
    folded(resnet, X)
    refs = [weakref.ref(vit), weakref.ref(resnet)]
    del vit, resnet
    gc.collect()
    assert all(ref() is None for ref in refs)  # the cache holds no model alive
