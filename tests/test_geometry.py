"""Sample geometry: the size a loader returns, fitting to a model's stride, batching by size."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from sweetspot.data.geometry import fit_to_multiple, group_by_size, output_size, resize_labels, resize_rgb, scale_boxes
from sweetspot.data.samples import Sample, stack_images


def test_output_size_fixed_native_and_capped():
    assert output_size(500, 375, 224) == (224, 224)
    assert output_size(500, 375) == (500, 375)
    assert output_size(500, 375, max_side=224) == (224, 168)  # 375 * 224 / 500 = 168
    assert output_size(333, 500, max_side=224) == (149, 224)  # 333 * 0.448 = 149.2
    assert output_size(100, 60, max_side=224) == (100, 60)  # never enlarged
    with pytest.raises(ValueError, match="not both"):
        output_size(500, 375, 224, max_side=224)
    with pytest.raises(ValueError, match="max_side=0"):
        output_size(500, 375, max_side=0)


def test_resizing_follows_pil_and_keeps_dtypes():
    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, (30, 40, 3), dtype=np.uint8)
    assert np.array_equal(resize_rgb(image, 20, 15), np.asarray(Image.fromarray(image).resize((20, 15), Image.BILINEAR)))
    assert resize_rgb(image, 40, 30) is image
    labels = rng.integers(0, 256, (30, 40)).astype(np.int64)
    small = resize_labels(labels, 20, 15)
    assert small.dtype == np.int64
    assert np.array_equal(small, np.asarray(Image.fromarray(labels.astype(np.uint8)).resize((20, 15), Image.NEAREST)))
    mask = labels > 128
    assert resize_labels(mask, 20, 15).dtype == bool and np.array_equal(resize_labels(mask, 20, 15), small > 128)
    with pytest.raises(ValueError, match="0..255"):
        resize_labels(labels + 300, 20, 15)
    boxes = np.array([[4.0, 2.0, 24.0, 12.0]])
    assert scale_boxes(boxes, (40, 20), (20, 10)).tolist() == [[2, 1, 12, 6]]
    assert scale_boxes(np.zeros((0, 4)), (40, 20), (20, 10)).shape == (0, 4)


def _sample(height: int, width: int, seed: int = 0, ignore: bool = True) -> Sample:
    rng = np.random.default_rng(seed)
    mask = np.zeros((height, width), bool)
    mask[2:6, 3:9] = True
    band = np.zeros((height, width), bool)
    band[6, 3:9] = True
    return Sample(item=f"s{seed}", image=rng.integers(0, 256, (height, width, 3), dtype=np.uint8), label=1,
                  mask=mask, ignore=band if ignore else None, boxes=np.array([[3.0, 2.0, 9.0, 6.0]]),
                  extra={"source": "x"})


def test_pad_to_multiple_marks_padding_ignored_and_keeps_boxes():
    sample = _sample(10, 13)
    padded = fit_to_multiple(sample, 8, fill=(124, 116, 104))
    assert padded.image.shape == (16, 16, 3)
    expected = np.pad(sample.image, ((0, 6), (0, 3), (0, 0)))
    expected[10:, :] = expected[:, 13:] = (124, 116, 104)
    assert np.array_equal(padded.image, expected)
    assert np.array_equal(padded.mask, np.pad(sample.mask, ((0, 6), (0, 3)), constant_values=False))
    assert np.array_equal(padded.ignore, np.pad(sample.ignore, ((0, 6), (0, 3)), constant_values=True))
    assert padded.boxes.tolist() == sample.boxes.tolist() and padded.label == 1 and padded.item == "s0"
    assert sample.image.shape == (10, 13, 3) and sample.ignore.sum() == 6  # the input is not modified
    padded.extra["x"] = 1
    assert "x" not in sample.extra
    no_band = fit_to_multiple(_sample(10, 13, ignore=False), 8)
    assert no_band.ignore.sum() == 16 * 16 - 10 * 13 and (no_band.image[10:] == 0).all()
    assert fit_to_multiple(sample, 1) is sample


def test_crop_to_multiple_like_lost():
    sample = _sample(10, 13)
    cropped = fit_to_multiple(sample, 4, mode="crop")
    assert cropped.image.shape == (8, 12, 3)
    assert np.array_equal(cropped.image, sample.image[:8, :12])
    assert np.array_equal(cropped.mask, sample.mask[:8, :12]) and np.array_equal(cropped.ignore, sample.ignore[:8, :12])
    assert cropped.boxes.tolist() == sample.boxes.tolist()
    with pytest.raises(ValueError, match="s0: 13x10 is smaller than one 16-pixel patch"):
        fit_to_multiple(sample, 16, mode="crop")
    with pytest.raises(ValueError, match="'pad' or 'crop'"):
        fit_to_multiple(sample, 4, mode="reflect")
    with pytest.raises(ValueError, match="fill"):
        fit_to_multiple(sample, 4, fill=300)


def test_group_by_size_is_stable_and_each_group_stacks():
    samples = [_sample(8, 8, 0), _sample(8, 12, 1), _sample(8, 8, 2), _sample(12, 8, 3), _sample(8, 12, 4)]
    groups = group_by_size(samples)
    assert [[s.item for s in g] for g in groups] == [["s0", "s2"], ["s1", "s4"], ["s3"]]
    assert [stack_images(g).shape for g in groups] == [(2, 8, 8, 3), (2, 8, 12, 3), (1, 12, 8, 3)]
    assert group_by_size([]) == []
    with pytest.raises(ValueError, match="group_by_size"):
        stack_images(samples)
