"""Training loop, BatchNorm re-estimation and inference on in-memory uint8 images."""

import logging

import numpy as np
import pytest
import timm
import torch
from torch import nn

from sweetspot import pruning
from sweetspot.models import Preprocess
from sweetspot.training import _augment, bn_reestimate, predict_logits, train

torch.set_num_threads(1)

PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=48)


def resnet():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", num_classes=2)


def noise_images(n, seed=0, side=48):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, size=(n, side, side, 3), dtype=np.uint8), rng.integers(0, 2, size=n)


def colour_images(n, seed=0):
    """Class 0 reddish, class 1 bluish, with noise: separable by colour alone."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 2
    images = rng.integers(0, 120, size=(n, 48, 48, 3))
    images[labels == 0, :, :, 0] += 130
    images[labels == 1, :, :, 2] += 130
    return images.astype(np.uint8), labels


def run(model, images, labels, **kwargs):
    options = dict(preprocess=PRE, epochs=2, batch_size=8, lr=1e-3, weight_decay=0.05, device="cpu")
    return train(model, images, labels, **(options | kwargs))


def test_same_seed_gives_identical_weights_and_the_global_rng_is_untouched():
    images, labels = noise_images(20)
    a, b, c = resnet(), resnet(), resnet()
    rng_state = torch.get_rng_state()
    history_a = run(a, images, labels, seed=5)
    assert torch.equal(torch.get_rng_state(), rng_state)
    history_b = run(b, images, labels, seed=5)
    run(c, images, labels, seed=6)
    assert history_a == history_b
    state_a, state_b, state_c = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(state_a[k], state_b[k]) for k in state_a)
    assert not all(torch.equal(state_a[k], state_c[k]) for k in state_a)


def test_a_separable_problem_is_learned(caplog):
    images, labels = colour_images(48)
    model = resnet()
    records = []
    with caplog.at_level(logging.INFO, logger="sweetspot.training"):
        history = run(model, images, labels, epochs=6, batch_size=16, lr=3e-3, log=records.append)
    assert len(history["loss"]) == len(history["train_acc"]) == 6
    assert history["loss"][-1] < history["loss"][0]
    assert history["train_acc"][-1] >= 0.9
    assert [r["epoch"] for r in records] == list(range(1, 7))
    assert records[-1]["lr"] == pytest.approx(0.0, abs=1e-12)
    assert records[0]["lr"] > records[1]["lr"] > records[-1]["lr"]
    assert "epoch 6/6" in caplog.text
    logits = predict_logits(model, images, preprocess=PRE, batch_size=16, device="cpu")
    assert (logits.argmax(1).numpy() == labels).mean() >= 0.9


def test_pruning_masks_stay_in_force_during_training():
    images, labels = noise_images(16)
    model = timm.create_model("test_vit", num_classes=2, img_size=48, patch_size=6)
    pruning.magnitude(model, 0.7)
    zeros = {n: ~m for n, m in pruning.masks_of(model).items()}
    run(model, images, labels, epochs=1)
    for name, kept in pruning.masks_of(model).items():
        assert not (kept & zeros[name]).any(), name


def test_zero_epochs_changes_nothing():
    images, labels = noise_images(8)
    model = resnet()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    history = run(model, images, labels, epochs=0)
    assert history == {"loss": [], "train_acc": []}
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_bad_inputs_are_named():
    images, labels = noise_images(8)
    with pytest.raises(ValueError, match="uint8"):
        run(resnet(), images.astype(np.float32), labels)
    with pytest.raises(ValueError, match="labels"):
        run(resnet(), images, labels[:-1])


def test_augment_only_flips_and_shifts():
    x = torch.randn(6, 3, 16, 16)
    out = _augment(x, np.random.default_rng(0))
    pad = 2
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    for i in range(len(x)):
        candidates = [view[:, dy:dy + 16, dx:dx + 16]
                      for view in (padded[i], padded[i].flip(2))
                      for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)]
        assert any(torch.equal(out[i], c) for c in candidates), i
    assert not torch.equal(out, x)


class ConvBN(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3)
        self.bn = nn.BatchNorm2d(4, momentum=0.3)

    def forward(self, x):
        return self.bn(self.conv(x))


@pytest.mark.parametrize("batch_size", [12, 4])
def test_bn_reestimate_matches_statistics_computed_directly(batch_size):
    images, _ = noise_images(12, side=10)
    model = ConvBN().eval()
    model.bn.running_mean.fill_(5.0)
    bn_reestimate(model, images, preprocess=PRE, batch_size=batch_size, device="cpu")
    with torch.no_grad():
        features = [model.conv(PRE(images[i:i + batch_size])) for i in range(0, 12, batch_size)]
    all_features = torch.cat(features)
    # the mean of equal-size batch means is the overall mean; variances average per batch
    expected_mean = all_features.mean(dim=(0, 2, 3))
    expected_var = torch.stack([f.var(dim=(0, 2, 3), unbiased=True) for f in features]).mean(0)
    assert torch.allclose(model.bn.running_mean, expected_mean, atol=1e-5)
    assert torch.allclose(model.bn.running_var, expected_var, atol=1e-5)
    if batch_size == 12:
        assert torch.allclose(model.bn.running_var, all_features.var(dim=(0, 2, 3), unbiased=True), atol=1e-5)
    assert model.bn.momentum == 0.3 and not model.training


def test_bn_reestimate_without_batchnorm_is_a_logged_no_op(caplog):
    model = timm.create_model("test_vit", num_classes=2, img_size=48, patch_size=6)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with caplog.at_level(logging.INFO, logger="sweetspot.training"):
        bn_reestimate(model, noise_images(4)[0], preprocess=PRE, batch_size=4, device="cpu")
    assert "no BatchNorm" in caplog.text
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items())


def test_predict_logits_matches_an_eval_forward_and_restores_the_mode():
    images, _ = noise_images(10)
    model = resnet().train()
    logits = predict_logits(model, images, preprocess=PRE, batch_size=4, device="cpu")
    assert logits.shape == (10, 2) and logits.dtype == torch.float32 and logits.device.type == "cpu"
    assert model.training
    with torch.no_grad():
        expected = model.eval()(PRE(images))
    assert torch.allclose(logits, expected, atol=1e-5)


def test_sgd_with_step_decay_is_torchs_sgd_and_step_lr():
    """optimizer sgd + lr_schedule step (the paper's recipe) equals torch's SGD with momentum and a
    StepLR stepped per epoch, on the same batches (weight decay on matrices and kernels only)."""
    images, labels = noise_images(12)
    model, reference = resnet(), resnet()
    lrs = []
    run(model, images, labels, epochs=3, batch_size=6, lr=0.1, optimizer="sgd", momentum=0.9, weight_decay=1e-4,
        lr_schedule="step", step_epochs=2, step_gamma=0.1, warmup_fraction=0.0, augment=False, seed=3,
        log=lambda record: lrs.append(record["lr"]))
    decay = [p for n, p in reference.named_parameters() if p.ndim > 1]
    rest = [p for n, p in reference.named_parameters() if p.ndim <= 1]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": 1e-4}, {"params": rest, "weight_decay": 0.0}],
                                lr=0.1, momentum=0.9)
    schedule = torch.optim.lr_scheduler.StepLR(optimizer, step_size=2, gamma=0.1)
    rng = np.random.default_rng(3)
    reference.train()
    for _ in range(3):
        for index in np.array_split(rng.permutation(12), 2):
            loss = nn.functional.cross_entropy(reference(PRE(images[index])), torch.as_tensor(labels[index]))
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
        schedule.step()
    for key, value in reference.state_dict().items():
        torch.testing.assert_close(model.state_dict()[key], value, rtol=1e-5, atol=1e-6, msg=key)
    assert lrs == pytest.approx([0.1, 0.01, 0.01])  # the rate set for the next epoch, after each epoch


def test_images_that_crop_themselves_are_trained_on_random_resized_crops():
    """A LazyImages-like split: each batch is images.random_crops(index, rng), drawn from the run's
    generator right after the shuffle, instead of the tensor flips and shifts."""

    class Crops:
        def __init__(self, images):
            self.images, self.shape, self.dtype = images, images.shape, images.dtype
            self.calls = []

        def __len__(self):
            return len(self.images)

        def __getitem__(self, index):
            raise AssertionError("training with augment must not read the evaluation view")

        def random_crops(self, index, rng):
            self.calls.append((np.asarray(index).tolist(), int(rng.integers(1000))))
            return self.images[index]

    images, labels = noise_images(8)
    crops = Crops(images)
    run(resnet(), crops, labels, epochs=1, batch_size=4, seed=2)
    rng = np.random.default_rng(2)
    expected = [(index.tolist(), int(rng.integers(1000))) for index in np.array_split(rng.permutation(8), 2)]
    assert crops.calls == expected
    with pytest.raises(ValueError, match="lr_schedule 'linear' unknown"):
        run(resnet(), images, labels, lr_schedule="linear")
    with pytest.raises(ValueError, match="optimizer 'adam' unknown"):
        run(resnet(), images, labels, optimizer="adam")
