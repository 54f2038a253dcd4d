"""Models: any timm architecture by name, its preprocessing, weight sources and checkpoints.

Checkpoints are safetensors (pruned weights with zeros applied) plus a JSON sidecar that
records what the weights are; nothing here ever unpickles a file.
"""

from __future__ import annotations

import copy
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

from . import artifacts as io, timm_names


class CheckpointError(ValueError):
    """A checkpoint that does not match what the job expects."""


@dataclass(frozen=True)
class Preprocess:
    """uint8 NHWC images -> normalised float NCHW tensors, as the model was trained."""

    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    image_size: int

    def __call__(self, images: np.ndarray, device: torch.device | str = "cpu") -> torch.Tensor:
        x = torch.as_tensor(np.ascontiguousarray(images), device=device).permute(0, 3, 1, 2).float().div_(255.0)
        mean = torch.tensor(self.mean, device=device).view(1, 3, 1, 1)
        std = torch.tensor(self.std, device=device).view(1, 3, 1, 1)
        return (x - mean) / std


def family(model: torch.nn.Module) -> str:
    """'vit' for transformer models with patch tokens, 'cnn' otherwise."""
    if hasattr(model, "patch_embed") and hasattr(model, "blocks"):
        return "vit"
    return "cnn"


def create(arch_cfg: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """A freshly initialised timm model from an architecture config entry."""
    timm_names.check(arch_cfg["timm"])
    return timm_model(arch_cfg["timm"], num_classes, arch_cfg.get("kwargs") or {})


def timm_model(name: str, num_classes: int, kwargs: Mapping[str, Any], *, pretrained: bool = False) -> torch.nn.Module:
    """timm.create_model; vision transformers are built with `dynamic_img_size`.

    With it a ViT takes any input whose sides are multiples of its patch size (the position
    embeddings are resampled to the input's grid), which native-resolution evaluation needs. At
    the size it was built for nothing is resampled: outputs are bit-identical, in training too
    (tests/test_native_resolution.py). Architectures without the option refuse the keyword at
    once, before any weights are read, and are built without it; `kwargs` may set it explicitly.
    """
    import timm

    if "dynamic_img_size" not in kwargs:
        try:
            return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, dynamic_img_size=True,
                                     **kwargs)
        except TypeError as err:
            if "dynamic_img_size" not in str(err):
                raise
    return timm.create_model(name, pretrained=pretrained, num_classes=num_classes, **kwargs)


def input_multiple(model: torch.nn.Module) -> int:
    """The side lengths of an input must be multiples of this for the model's grid to tile it
    exactly: a ViT's patch size, a CNN's feature stride (the reduction timm records for its last
    stage, which counts a dilated stage: 16 for a ResNet built with output_stride=16)."""
    if family(model) == "vit":
        patch = model.patch_embed.patch_size
        return math.lcm(*patch) if isinstance(patch, (tuple, list)) else int(patch)
    info = getattr(model, "feature_info", None)
    if not isinstance(info, list) or not info or "reduction" not in info[-1]:
        raise ValueError(f"{type(model).__name__} does not record its feature stride (timm's feature_info); "
                         "evaluate it at a fixed size: native_resolution: false")
    return int(info[-1]["reduction"])


def initial_model(arch_cfg: Mapping[str, Any], num_classes: int, seed: int) -> torch.nn.Module:
    """The seed's initialisation of the architecture; the global RNG is left as it was.

    Every model trained here from scratch starts from this, so a SNIP model and its dense
    control start from identical weights.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(int(seed))
        return create(arch_cfg, num_classes)


def reset_zero_init_norms(model: torch.nn.Module) -> list[str]:
    """Set norm scales that are initialised to exactly zero back to one; returns their names.

    timm zero-initialises the last norm scale of every residual block (`zero_init_last`), so
    every weight inside a residual branch gets an exactly zero gradient at initialisation and
    SNIP cannot rank it. torchvision, and the SNIP paper, initialise these scales to one; that
    is what this gives (norm scales draw nothing from the RNG, so nothing else changes).
    """
    reset = []
    with torch.no_grad():
        for name, module in model.named_modules():
            scale = getattr(module, "weight", None)
            is_norm = isinstance(module, (torch.nn.modules.batchnorm._NormBase, torch.nn.GroupNorm, torch.nn.LayerNorm))
            if is_norm and isinstance(scale, torch.Tensor) and scale.numel() and not scale.any():
                scale.fill_(1.0)
                reset.append(name)
    return reset


def preprocess_for(model: torch.nn.Module, arch_cfg: Mapping[str, Any], image_size: int) -> Preprocess:
    """The model's own normalisation (timm's data config) at the study's image size.

    Models trained here from scratch use timm's default for the architecture; pretrained
    models use the statistics their weights were trained with.
    """
    import timm.data

    data_cfg = timm.data.resolve_data_config({}, model=model)
    mean = tuple(arch_cfg.get("mean") or data_cfg["mean"])
    std = tuple(arch_cfg.get("std") or data_cfg["std"])
    return Preprocess(mean=mean, std=std, image_size=image_size)


def prunable_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().contiguous().cpu() for k, v in model.state_dict().items()}


CROSSFIT_PREFIX = "crossfit."  # buffers of the model calibrated on the other half of its calibration items


def save_checkpoint(path: str | os.PathLike, model: torch.nn.Module, sidecar: Mapping[str, Any],
                    extra_tensors: Mapping[str, torch.Tensor] | None = None) -> None:
    """Write weights as safetensors and the sidecar as `<path>.json`, both atomically.

    The sidecar is written first; the weights file is the rule's output, so a job killed
    between the two leaves no file that Snakemake would take as finished. `extra_tensors`
    (named with CROSSFIT_PREFIX) ride along in the same file.
    """
    path = Path(path)
    io.write_json(sidecar_path(path), dict(sidecar))
    state = {**prunable_state(model), **{k: v.detach().contiguous().cpu() for k, v in (extra_tensors or {}).items()}}
    with io.atomic_path(path) as tmp:
        save_file(state, str(tmp), metadata={"arch": str(sidecar.get("arch", "")), "format": "sweetspot"})


def sidecar_path(path: str | os.PathLike) -> Path:
    return Path(str(path) + ".json")


MAX_CLASSES = 100_000  # ImageNet-21k has 21843; more is an edited file, and a classifier that big fills the memory
# Sidecar fields a job relies on: (JSON types, whether the value is in range, the range in words).
SIDECAR_FIELDS: dict[str, tuple[tuple[type, ...], Any, str]] = {
    "num_classes": ((int,), lambda v: 2 <= v <= MAX_CLASSES, f"an integer from 2 to {MAX_CLASSES}"),
    "arch": ((str,), bool, "a non-empty string"),
    "method": ((str,), bool, "a non-empty string"),
    "sparsity": ((int, float), lambda v: 0 <= v < 1, "a number from 0 to below 1"),
    "sparsity_actual": ((int, float), lambda v: 0 <= v <= 1, "a number from 0 to 1"),
    "seed": ((int,), lambda v: v >= 0, "an integer of at least 0"),
}


def read_sidecar(path: str | os.PathLike) -> dict[str, Any]:
    """A checkpoint's sidecar, its fields' types and ranges checked (SIDECAR_FIELDS; num_classes
    is required): an edited or foreign sidecar is refused naming the file and the field."""
    source = sidecar_path(path)
    sidecar = io.read_json(source)
    fix = (f"the sidecar was edited or written by another tool: delete {path} and {source} and run snakemake "
           "again, which rebuilds them")
    if not isinstance(sidecar, dict):
        raise CheckpointError(f"{source}: expected a JSON object of fields; {fix}")
    if "num_classes" not in sidecar:
        raise CheckpointError(f"{source}: no num_classes; {fix}")
    for key, (types, in_range, expected) in SIDECAR_FIELDS.items():
        if key not in sidecar:
            continue
        value = sidecar[key]
        if isinstance(value, bool) or not isinstance(value, types) or not in_range(value):
            raise CheckpointError(f"{source}: {key} is {value!r} ({type(value).__name__}), expected {expected}; {fix}")
    return sidecar


def load_state(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a safetensors file; anything else (a pickle, a zip) is refused unread."""
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"{path}: checkpoint not found")
    with open(path, "rb") as fh:
        head = fh.read(8)
    if head[:1] == b"\x80" or head[:2] == b"PK":
        raise CheckpointError(
            f"{path}: looks like a pickle/torch.save file, which sweetspot never unpickles; "
            "convert it to safetensors (safetensors.torch.save_file) and point the config at that")
    try:
        with safe_open(str(path), framework="pt") as fh:
            return {k: fh.get_tensor(k) for k in fh.keys()}
    except Exception as err:  # safetensors raises its own error types
        raise CheckpointError(f"{path}: not a valid safetensors file ({err})") from None


def load_into(model: torch.nn.Module, state: Mapping[str, torch.Tensor], source: str) -> None:
    """Load `state` strictly, with an error that names what differs."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    mismatched = [k for k in own if k in state and tuple(own[k].shape) != tuple(state[k].shape)]
    if missing or unexpected or mismatched:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if mismatched:
            k = mismatched[0]
            parts.append(f"{len(mismatched)} of other shape (e.g. {k}: {tuple(state[k].shape)} vs {tuple(own[k].shape)})")
        raise CheckpointError(f"{source}: weights do not fit this architecture: {'; '.join(parts)}; "
                              "is it a checkpoint of another architecture or class count?")
    model.load_state_dict(dict(state), strict=True)


def load_checkpoint(path: str | os.PathLike, arch_cfg: Mapping[str, Any], num_classes: int | None = None,
                    expect: Mapping[str, Any] | None = None) -> tuple[torch.nn.Module, dict[str, Any]]:
    """Create the architecture, load a sweetspot checkpoint into it, check its sidecar.

    `num_classes` defaults to the sidecar's. `expect` holds sidecar fields (arch, method,
    sparsity, seed) the caller relies on; a checkpoint that disagrees is refused rather than
    evaluated under the wrong name.
    """
    sidecar = read_sidecar(path)
    for key, want in (expect or {}).items():
        have = sidecar.get(key)
        same = np.isclose(float(have), float(want)) if isinstance(want, float) and have is not None else have == want
        if not same:
            raise CheckpointError(f"{path}: sidecar says {key}={have!r} but this job expects {want!r}; "
                                  "the file belongs to another run: delete it and rerun")
    model = create(arch_cfg, sidecar["num_classes"] if num_classes is None else num_classes)
    state = load_state(path)
    load_into(model, {k: v for k, v in state.items() if not k.startswith(CROSSFIT_PREFIX)}, str(path))
    model.eval()
    return model, sidecar


def crossfit_twin(model: torch.nn.Module, path: str | os.PathLike) -> torch.nn.Module | None:
    """The checkpoint's model with the buffers calibrated on the other half (None without cross-fitting)."""
    state = {k[len(CROSSFIT_PREFIX):]: v for k, v in load_state(path).items() if k.startswith(CROSSFIT_PREFIX)}
    if not state:
        return None
    twin = copy.deepcopy(model)
    buffers = dict(twin.named_buffers())
    unknown = sorted(set(state) - set(buffers))
    if unknown:
        raise CheckpointError(f"{path}: cross-fitting buffers {unknown[:3]} are not buffers of this architecture")
    with torch.no_grad():
        for name, value in state.items():
            buffers[name].copy_(value)
    return twin
