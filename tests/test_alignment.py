"""Distortions and the alignment task on a tiny model."""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
import pytest
import timm
import torch
from sklearn.metrics import cohen_kappa_score

from sweetspot.catalog import METRICS
from sweetspot.contract import TASK_COLUMNS
from sweetspot.data import distortions
from sweetspot.data.samples import Sample
from sweetspot.metrics import human
from sweetspot.models import Preprocess
from sweetspot.tasks import alignment

torch.set_num_threads(1)
SIZE = 48
PREPROCESS = Preprocess(mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25), image_size=SIZE)
CPU = torch.device("cpu")


def _images(n: int = 4, seed: int = 0, grey: bool = False) -> np.ndarray:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, SIZE, SIZE, 3), dtype=np.uint8)
    if grey:
        images[..., 1] = images[..., 2] = images[..., 0]
    return images


def _high_frequency_fraction(images: np.ndarray) -> float:
    grey = images[..., 0].astype(np.float64)
    power = np.abs(np.fft.fftshift(np.fft.fft2(grey - grey.mean(axis=(1, 2), keepdims=True)), axes=(1, 2))) ** 2
    yy, xx = np.mgrid[:SIZE, :SIZE] - SIZE // 2
    return float(power[:, np.hypot(yy, xx) > SIZE / 4].sum() / power.sum())


# --- distortions -------------------------------------------------------------------------

def test_every_default_condition_keeps_shape_dtype_and_is_deterministic():
    images = _images()
    names = []
    for name, levels in distortions.DEFAULT_LEVELS.items():
        for level in levels:
            out = distortions.apply(images, name, level, seed=3)
            assert out.shape == images.shape and out.dtype == np.uint8
            assert np.array_equal(out, distortions.apply(images, name, level, seed=3))
            names.append(distortions.condition_name(name, level))
    assert all(re.fullmatch(r"[a-z]+-[a-z0-9]+", n) for n in names)
    assert len(set(names)) == len(names)
    noisy = [distortions.apply(images, "noise", 0.2, seed=s) for s in (1, 2)]
    assert not np.array_equal(*noisy)


def test_condition_names():
    assert distortions.condition_name("contrast", 0.05) == "contrast-c05"
    assert distortions.condition_name("contrast", 1.0) == "contrast-c100"
    assert distortions.condition_name("lowpass", 3) == "lowpass-s3"
    assert distortions.condition_name("highpass", 0.55) == "highpass-s0p55"
    assert distortions.condition_name("highpass", "inf") == "highpass-sinf"
    assert distortions.condition_name("noise", 0.35) == "noise-w0p35"
    assert distortions.condition_name("rotation", 90) == "rotation-r90"


def test_identity_levels_return_the_input():
    colour = _images()
    assert np.array_equal(distortions.apply(colour, "greyscale", 0), colour)
    assert np.array_equal(distortions.apply(colour, "falsecolour", 0), colour)
    grey = _images(grey=True)  # greyscale conversion leaves grey images as they are
    for name, level in (("greyscale", 1), ("contrast", 1.0), ("lowpass", 0), ("phase", 0),
                        ("rotation", 0), ("power", 0)):
        assert np.array_equal(distortions.apply(grey, name, level), grey), (name, level)
    # power equalisation of a single image to its own mean spectrum changes nothing
    assert np.array_equal(distortions.apply(grey[:1], "power", 1), grey[:1])


def test_contrast_shrinks_deviations_around_mid_grey():
    grey = _images(grey=True).astype(np.float64)
    out = distortions.apply(grey.astype(np.uint8), "contrast", 0.1).astype(np.float64)
    assert np.allclose(out, 127.5 + 0.1 * (grey - 127.5), atol=0.51)
    assert out.std() == pytest.approx(0.1 * grey.std(), rel=0.05)


def test_lowpass_removes_and_highpass_keeps_high_frequencies():
    grey = _images(grey=True)
    before = _high_frequency_fraction(grey)
    assert _high_frequency_fraction(distortions.apply(grey, "lowpass", 10)) < 0.05 * before
    assert _high_frequency_fraction(distortions.apply(grey, "highpass", 3)) > before


def test_rotation_phase_and_false_colour():
    grey = _images(grey=True)
    assert np.array_equal(distortions.apply(grey, "rotation", 180), grey[:, ::-1, ::-1])
    assert np.array_equal(distortions.apply(grey, "rotation", 90), np.rot90(grey, 1, axes=(1, 2)))
    scrambled = distortions.apply(grey, "phase", 90, seed=0).astype(np.float64)
    assert not np.array_equal(scrambled, grey)
    assert scrambled.mean() == pytest.approx(grey.mean(), abs=2.0)  # the DC term is never shifted
    # opponent colours: grey stays grey; inverting twice restores in-gamut colours
    assert np.abs(distortions.apply(grey, "falsecolour", 1).astype(int) - grey).max() <= 1
    muted = (112 + _images() // 8).astype(np.uint8)  # stays inside the gamut after inversion
    flipped = distortions.apply(muted, "falsecolour", 1)
    assert np.abs(flipped.astype(int) - muted).max() > 10
    assert np.abs(distortions.apply(flipped, "falsecolour", 1).astype(int) - muted).max() <= 2


def test_resolve_levels_and_bad_levels():
    assert distortions.resolve_levels("default") == distortions.DEFAULT_LEVELS
    assert distortions.resolve_levels({"contrast": [1.0, 0.5]}) == {"contrast": [1.0, 0.5]}
    with pytest.raises(ValueError, match="unknown distortion 'blur'"):
        distortions.resolve_levels({"blur": [1]})
    with pytest.raises(ValueError, match="contrast"):
        distortions.apply(_images(), "contrast", 2.0)
    with pytest.raises(ValueError, match="uint8"):
        distortions.apply(_images().astype(np.float32), "contrast", 0.5)


# --- the task ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return timm.create_model("test_resnet", pretrained=False, num_classes=10).eval()


def _decisions(model, images, groups=None):
    with torch.inference_mode():
        return human.decide(model(PREPROCESS(images)), groups)


def _samples(images, labels, textures=None):
    textures = [-1] * len(labels) if textures is None else textures
    return [Sample(item=f"cue-conflict/c{l}/img{i}.png", image=img, label=int(l), texture_label=int(t))
            for i, (img, l, t) in enumerate(zip(images, labels, textures))]


def _values(frame, metric, variant=""):
    rows = frame[(frame["metric"] == metric) & (frame["variant"] == variant)]
    return rows.set_index("item")["value"]


def test_cue_conflict_rows_match_direct_computation(model):
    images = _images(12, seed=1)
    groups = [[0, 1], [2, 3, 4], [5], [6, 7, 8, 9]]
    decisions = _decisions(model, images, groups)
    labels = np.arange(12) % 4
    textures = (labels + 1) % 4
    textures[:3] = np.where(decisions[:3] != labels[:3], decisions[:3], textures[:3])  # some texture decisions
    textures[10:] = labels[10:]  # no conflict: excluded from shape bias
    samples = _samples(images, labels, textures)
    frame = alignment.evaluate(model, samples, "cue-conflict", {"batch_size": 5}, preprocess=PREPROCESS,
                               device=CPU, class_groups=groups)
    assert list(frame.columns) == list(TASK_COLUMNS)
    assert set(frame["metric"]) <= set(METRICS)
    correct = _values(frame, "correct")
    assert correct.tolist() == (decisions == labels).astype(float).tolist()
    assert _values(frame, "accuracy")[""] == pytest.approx(correct.mean())
    conflict = textures != labels
    assert len(_values(frame, "shape_decision")) == conflict.sum()
    assert _values(frame, "texture_decision").tolist() == (decisions == textures)[conflict].astype(float).tolist()
    shape_bias = _values(frame, "shape_bias")
    expected = human.shape_bias(decisions, labels, textures)
    assert (np.isnan(shape_bias[""]) and np.isnan(expected)) or shape_bias[""] == pytest.approx(expected)
    assert _values(frame, "shape_or_texture")[""] == pytest.approx(human.shape_or_texture(decisions, labels, textures))


def test_consistency_rows_against_human_trials(model):
    images = _images(10, seed=2)
    labels = np.arange(10) % 10
    samples = _samples(images, labels)
    model_correct = (_decisions(model, images) == labels).astype(int)
    rng = np.random.default_rng(5)
    subjects = {"subject-01": rng.integers(0, 2, 10), "subject-02": rng.integers(0, 2, 10)}
    trials = pd.DataFrame([{"experiment": "cue-conflict", "subject": s, "condition": "0", "item": samples[i].item,
                            "category": "x", "texture": "", "response": "x", "correct": int(c[i])}
                           for s, c in subjects.items() for i in range(10)]
                          + [{"experiment": "cue-conflict", "subject": "subject-01", "condition": "0",
                              "item": "cue-conflict/other.png", "category": "x", "texture": "", "response": "y",
                              "correct": 0}])  # a stimulus the model never saw is ignored
    frame = alignment.evaluate(model, samples, "cue-conflict", {}, preprocess=PREPROCESS, device=CPU, trials=trials)
    kappas = [cohen_kappa_score(model_correct, c) for c in subjects.values()]
    assert _values(frame, "error_consistency")[""] == pytest.approx(np.mean(kappas))
    assert _values(frame, "observed_consistency")[""] == pytest.approx(
        np.mean([np.mean(model_correct == c) for c in subjects.values()]))
    assert _values(frame, "accuracy_difference")[""] == pytest.approx(
        np.mean([(model_correct.mean() - c.mean()) ** 2 for c in subjects.values()]))
    assert "shape_bias" not in set(frame["metric"])


def test_synthetic_distortions_evaluates_every_condition(model):
    images = _images(8, seed=3)
    labels = np.arange(8) % 10
    samples = _samples(images, labels)
    cfg = {"n_images": 6, "distortions": {"contrast": [1.0, 0.1], "noise": [0.2]}}
    frame = alignment.evaluate(model, samples, "synthetic-distortions", cfg, preprocess=PREPROCESS, device=CPU,
                               distortion_seed=4)
    assert set(frame["variant"]) == {"contrast-c100", "contrast-c10", "noise-w0p2"}
    for variant in ("contrast-c10", "noise-w0p2"):
        name, level = {"contrast-c10": ("contrast", 0.1), "noise-w0p2": ("noise", 0.2)}[variant]
        expected = _decisions(model, distortions.apply(images[:6], name, level, seed=4)) == labels[:6]
        assert _values(frame, "correct", variant).tolist() == expected.astype(float).tolist()
    default = alignment.evaluate(model, samples, "synthetic-distortions", {"n_images": 2, "distortions": "default"},
                                 preprocess=PREPROCESS, device=CPU)
    assert default["variant"].nunique() == sum(len(v) for v in distortions.DEFAULT_LEVELS.values())


def test_conditions_from_samples_and_missing_labels(model):
    images = _images(4, seed=4)
    samples = _samples(images, [0, 1, 2, 3])
    for sample, condition in zip(samples, ["c10", "c10", "c50", "c50"]):
        sample.extra["condition"] = condition
    frame = alignment.evaluate(model, samples, "contrast", {}, preprocess=PREPROCESS, device=CPU)
    assert set(frame["variant"]) == {"c10", "c50"}
    samples[0].label = -1
    with pytest.raises(ValueError, match="label"):
        alignment.evaluate(model, samples, "contrast", {}, preprocess=PREPROCESS, device=CPU)
