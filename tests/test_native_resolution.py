"""Native resolution: interpretability and LOST on images of their own (non-square) sizes.

Each image keeps its size, padded (interpretability) or cropped (LOST) to the model's stride or
patch size; maps and grids have the image's own shape, masks and boxes stay pixel-exact, padding
counts for no metric, and nothing is transposed on a non-square image.
"""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch
import torch.nn.functional as F

from sweetspot import attributions as A
from sweetspot import models
from sweetspot.data.samples import Sample
from sweetspot.features import patch_features
from sweetspot.metrics.localization import perturbation_curves, perturbation_scores
from sweetspot.models import Preprocess
from sweetspot.tasks import discovery, interpretability
from sweetspot.tasks.inputs import batches

torch.set_num_threads(1)

CPU = torch.device("cpu")
PRE = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), image_size=48)
CFG = dict(methods=list(A.METHODS), n_images=10, batch_size=4, target="predicted", pooling="l2sq", ig_steps=2,
           smoothgrad_samples=1, smoothgrad_stdev=0.2, deletion_steps=3, seed=0, native_resolution=True)


def create(name: str, **kwargs) -> torch.nn.Module:
    torch.manual_seed(0)
    return models.create({"timm": name, "kwargs": kwargs}, 4).eval()


def block_sample(item: str, height: int, width: int, top: int, left: int, size: tuple[int, int] = (16, 24),
                 void: bool = False) -> Sample:
    """A dark image with a bright block object of `size` (rows, columns) at (top, left); with
    `void`, a one-pixel VOC-style ignore band around it."""
    image = np.zeros((height, width, 3), dtype=np.uint8)
    mask = np.zeros((height, width), dtype=bool)
    mask[top:top + size[0], left:left + size[1]] = True
    image[mask] = 255
    ignore = None
    if void:
        ignore = np.zeros((height, width), dtype=bool)
        ignore[max(top - 1, 0):top + size[0] + 1, max(left - 1, 0):left + size[1] + 1] = True
        ignore &= ~mask
    box = np.array([[left, top, left + size[1], top + size[0]]], dtype=np.float64)
    return Sample(item=item, image=image, label=1, mask=mask, boxes=box, ignore=ignore)


def test_vits_take_any_multiple_of_their_patch_and_are_bit_identical_at_their_size():
    vit = create("test_vit", img_size=48, patch_size=8)
    plain = timm.create_model("test_vit", num_classes=4, img_size=48, patch_size=8).eval()
    plain.load_state_dict(vit.state_dict())
    x = torch.randn(2, 3, 48, 48, generator=torch.Generator().manual_seed(0))
    assert torch.equal(vit(x), plain(x))
    assert vit(torch.randn(1, 3, 40, 72)).shape == (1, 4)  # a 5x9 grid
    assert models.create({"timm": "test_resnet"}, 4).num_classes == 4  # CNNs are built without the option


def test_input_multiple_is_the_patch_size_or_the_feature_stride():
    assert models.input_multiple(create("test_vit", img_size=48, patch_size=8)) == 8
    assert models.input_multiple(create("test_resnet")) == 32
    assert models.input_multiple(create("test_resnet", output_stride=16)) == 16  # LOST's dilated ResNet


def test_padded_batches_group_by_size_keep_masks_exact_and_ignore_only_the_padding():
    samples = [block_sample("wide", 37, 70, 8, 40, void=True), block_sample("tall", 50, 35, 0, 8),
               block_sample("wide2", 37, 70, 16, 8)]
    vit = create("test_vit", img_size=48, patch_size=8)
    found = list(batches(vit, samples, native=True, mode="pad", batch_size=4, preprocess=PRE, device=CPU))
    assert [[s.item for s in b.samples] for b in found] == [["wide", "wide2"], ["tall"]]
    wide, tall = found
    assert wide.x.shape == (2, 3, 40, 72) and wide.extent == (37, 70)
    assert tall.x.shape == (1, 3, 56, 40) and tall.extent == (50, 35)
    for batch, originals in ((wide, [samples[0], samples[2]]), (tall, [samples[1]])):
        h, w = batch.extent
        assert (batch.x[:, :, h:] == 0).all() and (batch.x[:, :, :, w:] == 0).all()  # the normalised mean
        assert torch.equal(batch.x[:, :, :h, :w], PRE(np.stack([s.image for s in originals])))
        for fitted, original in zip(batch.samples, originals):
            assert np.array_equal(fitted.mask[:h, :w], original.mask) and not fitted.mask[h:].any()
            expected_ignore = np.ones(fitted.mask.shape, bool)
            expected_ignore[:h, :w] = False if original.ignore is None else original.ignore
            assert np.array_equal(fitted.ignore, expected_ignore)
            assert np.array_equal(fitted.boxes, original.boxes)
        expected_valid = torch.zeros(batch.x.shape[0], *batch.x.shape[-2:], dtype=torch.bool)
        expected_valid[:, :h, :w] = True
        assert torch.equal(batch.valid(), expected_valid)


@pytest.mark.parametrize("name,kwargs", [("test_resnet", {}), ("test_vit", {"img_size": 48, "patch_size": 8})])
def test_interpretability_at_native_size_scores_every_image_with_maps_of_its_own_shape(name, kwargs):
    model = create(name, **kwargs)
    samples = [block_sample("wide", 37, 70, 8, 40, void=True), block_sample("tall", 50, 35, 0, 8)]
    methods = [m for m in A.METHODS if A.applicable(m, models.family(model))]
    for batch in batches(model, samples, native=True, mode="pad", batch_size=4, preprocess=PRE, device=CPU):
        _, maps = A.attribute_batch(model, batch.x, methods, CFG, lambda logits: logits.argmax(1))
        for method, found in maps.items():
            assert found.shape == (1, *batch.x.shape[-2:]), method
            assert torch.isfinite(found).all() and found.flatten(1).amax(1).gt(0).all(), method
    frame, skipped = interpretability.evaluate(model, samples, "native", CFG, preprocess=PRE, device=CPU)
    assert skipped == [] and set(frame["item"]) == {"wide", "tall"} and set(frame["variant"]) == set(methods)
    assert frame["value"].notna().all()


def attention_to_bright_patches() -> torch.nn.Module:
    """A one-block ViT whose class token attends to the patches of bright pixels: patch embedding
    dimension 0 is a patch's mean intensity, dimension 1 its negative (LayerNorm keeps the sign);
    every query is e0, each key is the normalised dimension 0."""
    model = create("test_vit", img_size=32, patch_size=8, depth=1, num_heads=1)
    dim = model.embed_dim
    with torch.no_grad():
        for parameter in model.parameters():
            parameter.zero_()
        model.patch_embed.proj.weight[0] = 1 / (3 * 64)
        model.patch_embed.proj.weight[1] = -1 / (3 * 64)
        block = model.blocks[0]
        block.norm1.weight.fill_(1)
        block.attn.qkv.bias[0] = 10.0  # the query
        block.attn.qkv.weight[dim, 0] = 1.0  # the key: normalised dimension 0
    return model


def test_attention_follows_the_object_on_a_non_square_image():
    """A 37x70 image (padded to a 5x9 grid) with the object in the top right: the map must peak
    there, which a (9, 5) reading of the row-major tokens would not."""
    model = attention_to_bright_patches()
    sample = block_sample("wide", 37, 70, 8, 40)
    cfg = {**CFG, "methods": ["attention"]}
    frame, _ = interpretability.evaluate(model, [sample], "native", cfg, preprocess=PRE, device=CPU)
    scores = frame.set_index("metric")["value"]
    assert scores["pointing_game"] == 1.0 and scores["rma"] > 0.6 and scores["rra"] > 0.6
    (batch,) = batches(model, [sample], native=True, mode="pad", batch_size=1, preprocess=PRE, device=CPU)
    grid = F.avg_pool2d(A.attribute(model, batch.x, torch.zeros(1, dtype=torch.long), "attention", cfg)[:, None], 8)
    assert grid.shape == (1, 1, 5, 9)
    rows, cols = np.unravel_index(int(grid.flatten().argmax()), (5, 9))
    assert 1 <= rows <= 2 and 5 <= cols <= 7  # the object's patches: rows 8-23, columns 40-63


class CellColour(torch.nn.Module):
    """A 'CNN' whose features are the mean colour of 8x8 cells, with timm's stride record."""

    feature_info = [{"module": "pool", "num_chs": 3, "reduction": 8}]

    def forward_features(self, x):
        return F.avg_pool2d(x, 8)

    def forward(self, x):
        return self.forward_features(x).mean((2, 3))


def coloured(sample: Sample) -> Sample:
    """The block sample in discovery's colours: a red object on blue (centred features anti-correlate)."""
    image = np.zeros_like(sample.image)
    image[..., 2] = 255
    image[sample.mask] = (255, 0, 0)
    sample.image = image
    return sample


def test_lost_at_native_size_crops_to_the_stride_and_finds_the_box_on_non_square_images():
    samples = [coloured(block_sample("wide", 45, 70, 8, 40)), coloured(block_sample("tall", 50, 35, 0, 8))]
    cfg = {"n_images": 2, "k_patches": 100, "feature_layer": "auto", "batch_size": 4, "baselines": False,
           "native_resolution": True}
    pre = Preprocess(mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), image_size=48)
    frame, skipped = discovery.evaluate(CellColour(), samples, "native", cfg, preprocess=pre, device=CPU)
    values = frame.set_index(["item", "metric"])["value"]
    assert skipped == []
    for item in ("wide", "tall"):  # the found box is the object's, exactly
        assert values[(item, "iou")] == 1.0 and values[(item, "corloc")] == 1.0 and values[(item, "mask_iou")] == 1.0
    assert values[("wide", "k_effective")] == 5 * 8 and values[("tall", "k_effective")] == 6 * 4  # 40x64, 48x32
    fitted = {b.samples[0].item: b.samples[0]
              for b in batches(CellColour(), samples, native=True, mode="crop", batch_size=4, preprocess=pre,
                               device=CPU)}
    wide = fitted["wide"]
    assert wide.image.shape == (40, 64, 3) and np.array_equal(wide.mask, samples[0].mask[:40, :64])
    found, grid_masks, _ = discovery.discover(CellColour(), pre(wide.image[None], CPU))
    np.testing.assert_array_equal(found.numpy(), samples[0].boxes)
    assert grid_masks.shape == (1, 5, 8)


@pytest.mark.parametrize("name,kwargs,grid", [("test_vit", {"img_size": 48, "patch_size": 8}, (5, 8)),
                                              ("test_resnet", {"output_stride": 16}, (2, 4))])
def test_lost_grids_have_the_cropped_images_shape(name, kwargs, grid):
    """ViT keys and a dilated ResNet's last stage on a 45x70 image: cropped to 40x64 or 32x64."""
    model = create(name, **kwargs)
    sample = coloured(block_sample("wide", 45, 70, 8, 40))
    (batch,) = batches(model, [sample], native=True, mode="crop", batch_size=1, preprocess=PRE, device=CPU)
    assert batch.x.shape[-2:] == tuple(8 * g if name == "test_vit" else 16 * g for g in grid)
    _, found_grid, _ = patch_features(model, batch.x)
    assert found_grid == grid
    cfg = {"n_images": 1, "k_patches": 100, "feature_layer": "auto", "baselines": False, "native_resolution": True}
    frame, _ = discovery.evaluate(model, [sample], "native", cfg, preprocess=PRE, device=CPU)
    assert frame.set_index("metric").loc["k_effective", "value"] == grid[0] * grid[1]


class Recorder(torch.nn.Module):
    """Logits from the mean intensity; remembers every input."""

    def __init__(self):
        super().__init__()
        self.seen: list[torch.Tensor] = []

    def forward(self, x):
        self.seen.append(x.clone())
        return torch.stack([x.mean((1, 2, 3)), -x.mean((1, 2, 3))], 1)


@pytest.mark.parametrize("mode", ["deletion", "insertion"])
def test_deletion_and_insertion_never_touch_padding_and_count_only_the_images_pixels(mode):
    x = torch.randn(1, 3, 8, 12, generator=torch.Generator().manual_seed(0))
    x[:, :, 6:] = 0  # padding below row 6 and right of column 9
    x[:, :, :, 9:] = 0
    valid = torch.zeros(1, 8, 12, dtype=torch.bool)
    valid[:, :6, :9] = True
    maps = torch.rand(1, 8, 12, generator=torch.Generator().manual_seed(1))
    maps[~valid] = 10.0  # the most "relevant" pixels, were they counted
    model = Recorder()
    perturbation_curves(model, x, maps, torch.zeros(1, dtype=torch.long), mode=mode, steps=3, valid=valid)
    seen = torch.cat(model.seen)
    assert (seen[:, :, 6:] == 0).all() and (seen[:, :, :, 9:] == 0).all()
    intact = x[0, :, :6, :9]
    changed = (seen[:, :, :6, :9] != intact).any(1).flatten(1).sum(1).tolist()
    # one image per step, a third of the 54 pixels apart (deleted, or still blurred in insertion)
    assert sorted(changed) == [0, 18, 36, 54]
    scores = perturbation_scores(model, x, maps, torch.zeros(1, dtype=torch.long), steps=3, valid=valid)
    assert all(np.isfinite(v).all() for v in scores.values())


def test_a_task_reads_native_sizes_capped_at_max_side(tmp_path):
    from paper_fixtures import write_voc
    from sweetspot.tasks.context import EvalContext

    write_voc(tmp_path / "VOC2012", ("2007_000032", "2007_000033"), segmentation=True)
    data = {"benchmark": "paper", "data_dir": str(tmp_path), "image_size": 48,
            "datasets": {"voc12": str(tmp_path / "VOC2012")}}
    ctx = EvalContext(model=create("test_resnet"), arch_cfg={"timm": "test_resnet"}, method="dense", seed=0, data=data,
                      device=CPU)
    assert [s.image.shape for s in ctx.task_samples("voc12-trainval", {})] == [(48, 48, 3)] * 2
    native = ctx.task_samples("voc12-trainval", {"native_resolution": True})
    assert [s.image.shape[:2] for s in native] == [(60, 80), (76, 60)]
    capped = ctx.task_samples("voc12-trainval", {"native_resolution": True, "max_side": 40})
    assert [s.image.shape[:2] for s in capped] == [(30, 40), (40, 32)]
    np.testing.assert_allclose(capped[0].boxes, native[0].boxes / 2)
    with pytest.raises(ValueError, match="needs native_resolution: true"):
        ctx.task_samples("voc12-trainval", {"max_side": 40})
