"""ImageNet preprocessing: the evaluation crop and the training crops against torchvision's own transforms."""

from __future__ import annotations

import numpy as np
import pytest
import torchvision.transforms.functional as TF
from PIL import Image
from torchvision import transforms

from sweetspot.data import imagefolder
from sweetspot.data.imagefolder import center_crop, default_resize_size, random_crop_box, random_resized_crop

SIZES = [(500, 375), (375, 500), (256, 256), (300, 257), (224, 224), (1000, 220), (231, 300), (97, 61)]


def _image(width: int, height: int, seed: int = 0) -> Image.Image:
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8))


@pytest.mark.parametrize("width, height", SIZES)
def test_evaluation_crop_equals_torchvision_resize_and_center_crop(width, height):
    image = _image(width, height)
    expected = transforms.Compose([transforms.Resize(256), transforms.CenterCrop(224)])(image)
    assert np.array_equal(center_crop(image, 256, 224), np.asarray(expected))
    small = transforms.Compose([transforms.Resize(73), transforms.CenterCrop(64)])(image)
    assert np.array_equal(center_crop(image, 73, 64), np.asarray(small))


def test_default_resize_is_the_standard_ratio():
    assert default_resize_size(224) == 256 and default_resize_size(288) == 329 and default_resize_size(32) == 36
    with pytest.raises(ValueError, match="crop_size=224 exceeds resize_size=200"):
        center_crop(_image(300, 300), 200, 224)


@pytest.mark.parametrize("width, height", SIZES)
def test_training_crop_equals_torchvision_resized_crop_and_flip(width, height):
    image = _image(width, height, seed=1)
    for seed in range(6):
        top, left, crop_h, crop_w = random_crop_box(width, height, np.random.default_rng(seed))
        expected = np.asarray(TF.resized_crop(image, top, left, crop_h, crop_w, [32, 32]))
        ours = random_resized_crop(image, 32, np.random.default_rng(seed))
        flipped = np.asarray(TF.hflip(Image.fromarray(expected)))
        assert np.array_equal(ours, expected) or np.array_equal(ours, flipped)


def test_crop_boxes_follow_the_scale_and_ratio_ranges_as_torchvision_does():
    import torch

    width, height = 500, 375
    rng = np.random.default_rng(0)
    ours = np.array([random_crop_box(width, height, rng) for _ in range(4000)])
    torch.manual_seed(0)
    image = _image(width, height)
    theirs = np.array([transforms.RandomResizedCrop.get_params(image, [0.08, 1.0], [3 / 4, 4 / 3]) for _ in range(4000)])
    for boxes in (ours, theirs):
        top, left, crop_h, crop_w = boxes.T
        assert (top >= 0).all() and (left >= 0).all()
        assert (top + crop_h <= height).all() and (left + crop_w <= width).all()
        assert (crop_w / crop_h).min() > 0.74 and (crop_w / crop_h).max() < 1.35
    # boxes too large for the image are redrawn, so the area is not uniform on (0.08, 1): compare the laws
    area = [b[:, 2] * b[:, 3] / (width * height) for b in (ours, theirs)]
    log_aspect = [np.log(b[:, 3] / b[:, 2]) for b in (ours, theirs)]
    assert abs(area[0].mean() - area[1].mean()) < 0.02 and abs(np.median(area[0]) - np.median(area[1])) < 0.03
    assert abs(log_aspect[0].mean() - log_aspect[1].mean()) < 0.02
    centre = [(b[:, 1] + b[:, 3] / 2).mean() for b in (ours, theirs)]
    assert abs(centre[0] - centre[1]) < 5


@pytest.mark.parametrize("width, height", [(400, 100), (100, 400), (120, 100)])
def test_fallback_box_equals_torchvision(width, height):
    # an area beyond the image never fits: both fall back to the central box with the aspect clamped
    ours = random_crop_box(width, height, np.random.default_rng(0), scale=(2.0, 3.0))
    expected = transforms.RandomResizedCrop.get_params(_image(width, height), scale=[2.0, 3.0], ratio=[3 / 4, 4 / 3])
    assert ours == tuple(expected)


@pytest.fixture
def split(tmp_path):
    sizes = [(50, 40), (40, 60), (64, 64), (90, 33)]
    for i, (w, h) in enumerate(sizes):
        folder = tmp_path / ("a" if i < 2 else "b")
        folder.mkdir(exist_ok=True)
        _image(w, h, seed=i).save(folder / f"{i}.JPEG", format="JPEG", quality=95)
    return tmp_path


def test_lazy_split_evaluation_view_is_the_center_crop(split):
    images, labels, items, classes = imagefolder.lazy_split(split, 32, resize_size=36)
    assert images.shape == (4, 32, 32, 3) and labels.tolist() == [0, 0, 1, 1] and items[0] == "a/0.JPEG"
    for i, item in enumerate(items):
        expected = transforms.Compose([transforms.Resize(36), transforms.CenterCrop(32)])(Image.open(split / item).convert("RGB"))
        assert np.array_equal(images[i], np.asarray(expected))
    assert np.array_equal(images[[3, 1]], images[np.array([3, 1])]) and images[1:3].shape == (2, 32, 32, 3)
    with pytest.raises(ValueError, match="resize_size=20 is smaller than the crop size 32"):
        imagefolder.lazy_split(split, 32, resize_size=20)


def test_random_crops_are_reproducible_from_the_generator(split):
    images, _, items, _ = imagefolder.lazy_split(split, 24, resize_size=27)
    first = images.random_crops(np.array([2, 0, 3]), np.random.default_rng(7))
    assert first.shape == (3, 24, 24, 3) and first.dtype == np.uint8
    again = imagefolder.LazyImages(images.paths, 24, workers=1).random_crops(np.array([2, 0, 3]), np.random.default_rng(7))
    assert np.array_equal(first, again)  # one worker or many: the same batch
    other = images.random_crops(np.array([2, 0, 3]), np.random.default_rng(8))
    assert not np.array_equal(first, other)
    # each image's crop is its own seeded draw from the batch generator, in index order
    seeds = np.random.default_rng(7).integers(0, 2**63, size=3)
    expected = random_resized_crop(Image.open(split / items[0]).convert("RGB"), 24, np.random.default_rng(seeds[1]))
    assert np.array_equal(first[1], expected)
    assert images.random_crops(slice(0, 0), np.random.default_rng(0)).shape == (0, 24, 24, 3)


def test_imagenet_val_accuracy_scores_the_resize_and_center_crop_of_each_file(tmp_path):
    """Through the study's data params and the accuracy task: resize_size 40, crop 32."""
    import torch

    from paper_fixtures import write_imagenet
    from sweetspot import models, study
    from sweetspot.tasks import accuracy
    from sweetspot.tasks.context import EvalContext

    write_imagenet(tmp_path / "imagenet")
    data = study.data_params({"benchmark": "paper", "data_dir": str(tmp_path), "image_size": 32, "resize_size": 40,
                              "datasets": {"imagenet": str(tmp_path / "imagenet")}})
    arch = {"timm": "test_resnet"}
    torch.manual_seed(0)
    ctx = EvalContext(model=models.create(arch, 3).eval(), arch_cfg=arch, method="dense", seed=0, data=data,
                      device=torch.device("cpu"))
    samples = ctx.samples("imagenet-val")
    crop = transforms.Compose([transforms.Resize(40), transforms.CenterCrop(32)])
    expected = np.stack([np.asarray(crop(Image.open(tmp_path / "imagenet" / "val" / s.item).convert("RGB")))
                         for s in samples])
    assert np.array_equal(np.stack([s.image for s in samples]), expected)
    assert [s.label for s in samples] == [0, 0, 1, 1, 2, 2]
    frame = accuracy.run(ctx, "imagenet-val", samples, {"datasets": ["imagenet-val"]})
    with torch.no_grad():
        predicted = ctx.model(ctx.preprocess(expected)).argmax(1).numpy()
    top1 = frame[frame["metric"] == "top1"].set_index("item")["value"]
    assert top1.to_dict() == {s.item: float(p == s.label) for s, p in zip(samples, predicted)}
