"""Eval-mode BatchNorm folded into the convolution before it (one of sweetspot.speedups.faster_copy's rewrites).

In eval mode a BatchNorm right after a convolution is a fixed affine map per channel, so the
pair is one convolution with rescaled weights and a bias (torch.nn.utils.fusion). The folded
model computes the same function up to float rounding and skips the BatchNorm's forward and
backward passes: a saliency pass (forward + backward to the input) runs 1.17-1.19x faster for
ResNet-50 at 224 px (batch 16) and 1.17-1.21x for the default study's test_resnet (batch 64),
IG step batches 1.06-1.17x and 1.15-1.19x, on the 2-core development CPU
(benchmarks/pass_copy_gain.py, benchmarks/README.md).

Pairs come from one traced forward pass: a BatchNorm2d (or timm's BatchNormAct2d, whose
dropout and activation stay) whose input is the output of a Conv2d, each called once.
A convolution output that something besides the BatchNorm reads would change the function;
faster_copy's logits check catches it.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_weights


def fold_batchnorm(model: nn.Module, example: torch.Tensor) -> int:
    """Fold every conv -> BatchNorm pair of eval-mode `model` in place; the number of pairs folded."""
    pairs = _foldable_pairs(model, example)
    for conv_name, bn_name in pairs:
        conv, bn = model.get_submodule(conv_name), model.get_submodule(bn_name)
        conv.weight, conv.bias = fuse_conv_bn_weights(conv.weight, conv.bias, bn.running_mean, bn.running_var,
                                                      bn.eps, bn.weight, bn.bias)
        # timm's BatchNormAct2d applies dropout and an activation after the normalisation
        rest = nn.Sequential(bn.drop, bn.act) if type(bn) is not nn.BatchNorm2d else nn.Identity()
        parent_name, _, child = bn_name.rpartition(".")
        setattr(model.get_submodule(parent_name), child, rest)
    return len(pairs)


def _foldable_pairs(model: nn.Module, example: torch.Tensor) -> list[tuple[str, str]]:
    """(conv name, BatchNorm name) pairs where the BatchNorm reads the conv's output, each called once."""
    if not any(_is_batchnorm(m) for m in model.modules()):
        return []  # no forward pass needed (a ViT)
    produced_by: dict[int, str] = {}
    keep_alive: list[torch.Tensor] = []  # no recorded id may be reused by a later tensor
    calls: dict[str, int] = {}
    reads: dict[str, int] = {}
    handles = []
    for name, module in model.named_modules():
        if isinstance(module, nn.Conv2d):  # subclasses too (timm Conv2dSame); the logits check guards
            def conv_hook(_m, _inputs, out, name=name):
                calls[name] = calls.get(name, 0) + 1
                produced_by[id(out)] = name
                keep_alive.append(out)
            handles.append(module.register_forward_hook(conv_hook))
        elif _is_batchnorm(module):
            def bn_hook(_m, inputs, _out, name=name):
                calls[name] = calls.get(name, 0) + 1
                reads[name] = id(inputs[0])
                keep_alive.append(inputs[0])
            handles.append(module.register_forward_hook(bn_hook))
    try:
        with torch.no_grad():
            model(example[:1])
    finally:
        for handle in handles:
            handle.remove()
    pairs = []
    for bn_name, tensor_id in reads.items():
        conv_name = produced_by.get(tensor_id)
        if conv_name is not None and calls[conv_name] == 1 and calls[bn_name] == 1:
            pairs.append((conv_name, bn_name))
    return pairs


def _is_batchnorm(module: nn.Module) -> bool:
    """A BatchNorm2d with running statistics that folding can replace: plain, or timm's BatchNormAct2d."""
    if not isinstance(module, nn.BatchNorm2d) or module.running_mean is None:
        return False
    return type(module) is nn.BatchNorm2d or type(module).__name__ == "BatchNormAct2d"
