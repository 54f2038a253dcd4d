"""A cached copy of a model that computes the same logits with less work, for the attribution passes.

CNNs get their eval-mode BatchNorm folded into the convolutions (sweetspot.speedups.bn_folding). Vision
transformers with class-token pooling get a last block that computes the class token alone and
a patch embedding that is one matrix product (sweetspot.speedups.vit_trimming). The copy is kept only if
its logits match the model's on the batch it was built for. That also catches a rewrite that
does not fit a model, e.g. a convolution output that something besides its BatchNorm reads.
One copy per model is cached and rebuilt when any parameter or buffer of the model changes.
"""

from __future__ import annotations

import copy
import logging
import weakref
from typing import Hashable

import torch
from torch import nn

from .bn_folding import fold_batchnorm
from .vit_trimming import trim_vit

log = logging.getLogger(__name__)

# model -> (fingerprint of its tensors when copied, the copy or None for "use the model");
# never the model itself, which would keep its own weak key alive.
_COPIES: weakref.WeakKeyDictionary[nn.Module, tuple[Hashable, nn.Module | None]] = weakref.WeakKeyDictionary()


def _fingerprint(model: nn.Module) -> Hashable:
    """Changes when a parameter or buffer is replaced, moved or modified in place (load_state_dict, a step)."""
    tensors = [*model.parameters(), *model.buffers()]
    return model.training, tuple((id(t), t._version, t.device, t.dtype) for t in tensors)


def pass_copy(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The cheaper copy of `model` (cached), or `model` itself when no rewrite applies, when it is
    in training mode, or when the copy's logits on `example` differ from its own."""
    if model.training:
        return model
    fingerprint = _fingerprint(model)
    cached = _COPIES.get(model)
    if cached is None or cached[0] != fingerprint:
        cached = _COPIES[model] = (fingerprint, _build(model, example))
    return model if cached[1] is None else cached[1]


def _build(model: nn.Module, example: torch.Tensor) -> nn.Module | None:
    rewritten = copy.deepcopy(model)
    changes = []
    folded = fold_batchnorm(rewritten, example)
    if folded:
        changes.append(f"{folded} BatchNorm folded")
    changes += trim_vit(rewritten)
    if not changes:
        return None
    with torch.no_grad():
        want = model(example)
        try:
            got = rewritten(example)
        except Exception as error:  # a rewrite this model's modules do not support (another timm version)
            log.warning("the attribution copy (%s) fails on this model (%s); attributions use the model as it is",
                        ", ".join(changes), error)
            return None
    tolerance = 1e-4 * (1.0 + float(want.abs().max()))
    if want.shape != got.shape or not float((want - got).abs().max()) <= tolerance:
        log.warning("the attribution copy (%s) changed the logits; attributions use the model as it is",
                    ", ".join(changes))
        return None
    return rewritten
