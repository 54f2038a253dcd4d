"""The parametric image distortions of model-vs-human, applied to uint8 RGB batches.

Definitions and levels follow Geirhos et al., "Generalisation in humans and deep neural
networks", NeurIPS 2018 (github.com/rgeirhos/generalisation-humans-DNNs, code/image_manipulation.py)
and the conditions model-vs-human evaluates (modelvshuman/datasets/experiments.py):

- greyscale: 0 keeps the image, 1 converts it to grey (model-vs-human "colour": cr / bw).
- contrast c: grey, then (1 - c)/2 + c * grey (nominal contrast 100% ... 1%).
- lowpass s: grey, Gaussian blur of standard deviation s pixels, padded with the mean grey 0.4423.
- highpass s: grey minus its Gaussian blur (s pixels; inf = no blur), shifted to mean 0.4423.
- noise w: grey at 30% contrast plus uniform noise in [-w, w] per pixel.
- phase d: grey with every Fourier phase shifted by a uniform random angle in [-d, d] degrees
  (conjugate frequencies shifted oppositely so the image stays real).
- power: 0 keeps the grey image, 1 replaces each image's Fourier amplitudes by the mean
  amplitude spectrum of the images passed in one call (the original used the mean over all
  its stimuli: call apply once on the whole set).
- rotation r: grey, rotated counter-clockwise by r in {0, 90, 180, 270} degrees.
- falsecolour: 0 keeps the image, 1 inverts both colour-opponent channels (L-M and S-(L+M)) in
  the DKL space of Brainard (1996) around mid-grey, keeping luminance ("opponent colour").

All but greyscale-0 and falsecolour keep the 2018 convention of greyscale stimuli. Values are
clipped to [0, 1] as in the original. Levels in pixels (lowpass, highpass) are defined for
224-pixel images and scaled by H / 224. Eidolon distortions need the Eidolon toolbox and are
not provided. Deviation: the original inverted its measured monitor gamma for false colour; we
use the sRGB transfer function as that non-linearity.
"""

from __future__ import annotations

import math
from typing import Any, Callable, Mapping

import numpy as np
from scipy import ndimage

REFERENCE_SIZE = 224  # pixel levels are defined for 224 x 224 stimuli
LUMA = np.array([0.2125, 0.7154, 0.0721])  # skimage rgb2gray weights (Rec. 709), as in the original
BACKGROUND_GREY = 0.4423  # the original's mean pixel value over its stimuli: filter padding and high-pass mean
NOISE_CONTRAST = 0.3  # uniform noise is added to images at 30% contrast (Geirhos et al. 2018)

# Cone excitations from linear RGB and DKL opponent channels from cone contrasts, as given in
# the original code (Stiles & Burch 2-deg fundamentals for its monitor; Brainard 1996).
_RGB_TO_LMS = np.array([[0.1619982647, 0.208049264, 0.0389347448],
                        [0.0330275785, 0.2496504557, 0.0618343518],
                        [0.0015524055, 0.0198861001, 0.1890224274]])
_LMS_TO_DKL = np.array([[9.27590805, 9.27590805, 0.0],
                        [7.86421647, -9.33587662, 0.0],
                        [-3.39709047, -3.39709047, 12.16230246]])
_FLIP_OPPONENTS = np.diag([1.0, -1.0, -1.0])  # keep luminance, invert L-M and S-(L+M)
_FALSE_COLOUR = (np.linalg.inv(_RGB_TO_LMS) @ np.linalg.inv(_LMS_TO_DKL) @ _FLIP_OPPONENTS
                 @ _LMS_TO_DKL @ _RGB_TO_LMS)

DEFAULT_LEVELS: dict[str, list] = {
    "greyscale": [0, 1],
    "contrast": [1.0, 0.5, 0.3, 0.15, 0.1, 0.05, 0.03, 0.01],
    "lowpass": [0, 1, 3, 5, 7, 10, 15, 40],
    "highpass": [math.inf, 3.0, 1.5, 1.0, 0.7, 0.55, 0.45, 0.4],
    "noise": [0.0, 0.03, 0.05, 0.1, 0.2, 0.35, 0.6, 0.9],
    "phase": [0, 30, 60, 90, 120, 150, 180],
    "power": [0, 1],
    "rotation": [0, 90, 180, 270],
    "falsecolour": [0, 1],
}

def _grey(images: np.ndarray) -> np.ndarray:
    return images @ LUMA


def _contrast(grey: np.ndarray, level: float) -> np.ndarray:
    return (1.0 - level) / 2.0 + grey * level


def _greyscale(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    return images if level == 0 else _grey(images)


def _contrast_op(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    return _contrast(_grey(images), level)


def _lowpass(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _grey(images)
    sigma = level * size / REFERENCE_SIZE
    if sigma == 0:
        return grey
    return ndimage.gaussian_filter(grey, sigma=(0, sigma, sigma), mode="constant", cval=BACKGROUND_GREY)


def _highpass(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _grey(images)
    if math.isinf(level):
        detail = grey - BACKGROUND_GREY  # an infinitely wide blur is the flat padding value
    else:
        sigma = level * size / REFERENCE_SIZE
        detail = grey - ndimage.gaussian_filter(grey, sigma=(0, sigma, sigma), mode="constant", cval=BACKGROUND_GREY)
    return detail - detail.mean(axis=(1, 2), keepdims=True) + BACKGROUND_GREY


def _noise(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _contrast(_grey(images), NOISE_CONTRAST)
    if level == 0:
        return grey
    return grey + rng.uniform(-level, level, size=grey.shape)


def _conjugate(field: np.ndarray) -> np.ndarray:
    """field[(-k) mod N] over the two spatial axes of an (N, H, W) array."""
    return np.roll(np.flip(field, axis=(1, 2)), 1, axis=(1, 2))


def _phase(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _grey(images)
    if level == 0:
        return grey
    _, h, w = grey.shape
    shifts = rng.uniform(-1.0, 1.0, size=grey.shape) * np.deg2rad(level)
    # One free shift per conjugate pair of frequencies, the partner gets its negative; the
    # self-conjugate ones (DC, Nyquist) stay: the image stays real and keeps its mean.
    index = np.arange(h * w).reshape(1, h, w)
    partner = _conjugate(index)
    antisymmetric = np.where(index < partner, shifts, np.where(index == partner, 0.0, -_conjugate(shifts)))
    spectrum = np.fft.fft2(grey, axes=(1, 2)) * np.exp(1j * antisymmetric)
    return np.fft.ifft2(spectrum, axes=(1, 2)).real


def _power(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _grey(images)
    if level == 0:
        return grey
    spectrum = np.fft.fft2(grey, axes=(1, 2))
    mean_amplitude = np.abs(spectrum).mean(axis=0, keepdims=True)
    return np.fft.ifft2(mean_amplitude * np.exp(1j * np.angle(spectrum)), axes=(1, 2)).real


def _rotation(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    grey = _grey(images)
    if level in (90, 270) and grey.shape[1] != grey.shape[2]:
        raise ValueError(f"rotation by {level} degrees needs square images; got {grey.shape[1]}x{grey.shape[2]}")
    return np.rot90(grey, k=int(level) // 90, axes=(1, 2))


def _srgb_to_linear(x: np.ndarray) -> np.ndarray:
    return np.where(x <= 0.04045, x / 12.92, ((x + 0.055) / 1.055) ** 2.4)


def _linear_to_srgb(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0.0, 1.0)
    return np.where(x <= 0.0031308, x * 12.92, 1.055 * x ** (1 / 2.4) - 0.055)


def _falsecolour(images: np.ndarray, level: float, size: int, rng: np.random.Generator) -> np.ndarray:
    if level == 0:
        return images
    linear = _srgb_to_linear(images)
    return _linear_to_srgb((linear - 0.5) @ _FALSE_COLOUR.T + 0.5)


def _binary(level: float) -> bool:
    return level in (0, 1)


# name -> (operation, level check, condition code of a level)
_DISTORTIONS: dict[str, tuple[Callable, Callable[[float], bool], Callable[[float], str]]] = {
    "greyscale": (_greyscale, _binary, lambda v: f"{int(v)}"),
    "contrast": (_contrast_op, lambda v: 0 < v <= 1, lambda v: "c" + _percent(v)),
    "lowpass": (_lowpass, lambda v: 0 <= v < math.inf, lambda v: "s" + _number(v)),
    "highpass": (_highpass, lambda v: v > 0, lambda v: "s" + _number(v)),
    "noise": (_noise, lambda v: 0 <= v < math.inf, lambda v: "w" + _number(v)),
    "phase": (_phase, lambda v: 0 <= v <= 180, lambda v: "d" + _number(v)),
    "power": (_power, _binary, lambda v: f"{int(v)}"),
    "rotation": (_rotation, lambda v: v in (0, 90, 180, 270), lambda v: "r" + _number(v)),
    "falsecolour": (_falsecolour, _binary, lambda v: f"{int(v)}"),
}
_LEVEL_HELP = {
    "greyscale": "0 or 1", "contrast": "in (0, 1]", "lowpass": "a finite sigma >= 0 in pixels at 224 px",
    "highpass": "a sigma > 0 in pixels at 224 px, or inf", "noise": "a width >= 0", "phase": "degrees in [0, 180]",
    "power": "0 or 1", "rotation": "0, 90, 180 or 270", "falsecolour": "0 or 1",
}


def _number(value: float) -> str:
    if math.isinf(value):
        return "inf"
    return f"{value:g}".replace(".", "p")


def _percent(value: float) -> str:
    percent = round(value * 100, 6)
    return f"{int(percent):02d}" if percent == int(percent) else _number(percent)


def _level(name: str, level: Any) -> float:
    if name not in _DISTORTIONS:
        raise ValueError(f"unknown distortion {name!r}; known: {', '.join(_DISTORTIONS)}")
    try:
        value = float(level)
    except (TypeError, ValueError):
        value = math.nan
    if math.isnan(value) or not _DISTORTIONS[name][1](value):
        raise ValueError(f"distortion {name!r}: level {level!r} is invalid; use {_LEVEL_HELP[name]}")
    return value


def condition_name(name: str, level: Any) -> str:
    """A stable, filename-safe condition name, e.g. contrast-c05, lowpass-s3, highpass-s0p55."""
    value = _level(name, level)
    return f"{name}-{_DISTORTIONS[name][2](value)}"


def apply(images: np.ndarray, name: str, level: Any, seed: int = 0) -> np.ndarray:
    """Distorted copy of uint8 RGB images (N, H, W, 3); same shape and dtype.

    Deterministic for the same images, level and seed (noise and phase draw from
    numpy.random.default_rng(seed)); power equalisation uses the mean spectrum of `images`.
    """
    images = np.asarray(images)
    if images.dtype != np.uint8 or images.ndim != 4 or images.shape[-1] != 3:
        raise ValueError(f"distortions take uint8 RGB images (N, H, W, 3); got {images.dtype} {images.shape}")
    value = _level(name, level)
    rng = np.random.default_rng(seed)
    result = _DISTORTIONS[name][0](images.astype(np.float64) / 255.0, value, images.shape[1], rng)
    if result.ndim == 3:  # grey results are shown as RGB with equal channels
        result = np.repeat(result[..., None], 3, axis=-1)
    return np.round(np.clip(result, 0.0, 1.0) * 255.0).astype(np.uint8)


def resolve_levels(spec: str | Mapping[str, list] | None) -> dict[str, list]:
    """The distortion levels a config asks for: "default" (or None) = DEFAULT_LEVELS, or a
    mapping name -> list of levels (only those distortions are evaluated)."""
    if spec is None or spec == "default":
        return {name: list(levels) for name, levels in DEFAULT_LEVELS.items()}
    if not isinstance(spec, Mapping):
        raise ValueError(f"distortions must be 'default' or a mapping name -> list of levels; got {spec!r}")
    resolved = {}
    for name, levels in spec.items():
        if not isinstance(levels, (list, tuple)) or not levels:
            raise ValueError(f"distortions.{name}: give a non-empty list of levels")
        names = [condition_name(name, level) for level in levels]  # validates every level
        if len(set(names)) != len(names):
            raise ValueError(f"distortions.{name}: levels {levels} repeat a condition")
        resolved[name] = [_level(name, level) for level in levels]
    return resolved
