"""A copy of a model that computes the same logits with less work.

Rewrites, each applied where it fits:
- CNNs: eval-mode BatchNorm folded into the convolutions (sweetspot.speedups.bn_folding);
- vision transformers with class-token pooling: a last block that computes the class token
  alone and a patch embedding that is one matrix product (sweetspot.speedups.vit_trimming);
- models that still have 2-D convolutions: weights in channels-last memory format, the layout
  CPU convolutions run fastest in. The tasks' batches are channels-last already
  (sweetspot.models.Preprocess), which makes a model's convolutions run channels-last anyway;
  the weights' layout gains on NCHW inputs (SmoothGrad's noisy copies, a caller's tensors):
  1.35-1.5x on top of folding for EfficientNet-Lite0 at 224 px, 1.2-1.3x for ResNet-50
  (forward and saliency passes, 1 thread; benchmarks/pass_copy_gain.py, benchmarks/README.md).

The copy is kept only if its logits match the model's on the example it was built for. That
also catches a rewrite that does not fit a model, e.g. a convolution output that something
besides its BatchNorm reads. It is not cached: an evaluation job builds it once
(sweetspot.tasks.context.EvalContext.fast_model) and passes it to the passes that read no more
than the copy keeps (listed in sweetspot.speedups).
It shares no tensor with the model, so changing the model afterwards leaves the copy stale.
"""

from __future__ import annotations

import copy
import logging

import torch
from torch import nn

from .bn_folding import fold_batchnorm
from .vit_trimming import trim_vit

log = logging.getLogger(__name__)


def faster_copy(model: nn.Module, example: torch.Tensor) -> nn.Module:
    """The rewritten copy of eval-mode `model`, or `model` itself when no rewrite applies, when it
    is in training mode, or when the copy's logits on `example` (N, 3, H, W) differ from its own."""
    if model.training:
        return model
    rewritten = copy.deepcopy(model)
    changes = []
    folded = fold_batchnorm(rewritten, example)
    if folded:
        changes.append(f"{folded} BatchNorm folded")
    changes += trim_vit(rewritten)
    if any(isinstance(m, nn.Conv2d) for m in rewritten.modules()):
        rewritten.to(memory_format=torch.channels_last)  # 4-D parameters and buffers only
        changes.append("channels-last weights")
    if not changes:
        return model
    with torch.no_grad():
        want = model(example)
        try:
            got = rewritten(example)
        except Exception as error:  # a rewrite this model's modules do not support (another timm version)
            log.warning("the faster copy (%s) fails on this model (%s); the model is used as it is",
                        ", ".join(changes), error)
            return model
    tolerance = 1e-4 * (1.0 + float(want.abs().max()))
    if want.shape != got.shape or not float((want - got).abs().max()) <= tolerance:
        log.warning("the faster copy (%s) changed the logits; the model is used as it is", ", ".join(changes))
        return model
    return rewritten
