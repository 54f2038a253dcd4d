"""Patch features of timm models: one feature row per cell of the model's spatial grid.

What LOST (Simeoni et al., BMVC 2021) reads from a backbone: for CNNs the output of the
last convolutional stage (`forward_features`, NCHW), for vision transformers the keys of
the last attention block. One forward pass per batch, under `torch.inference_mode`; for
ViTs it ends at the last block's qkv projection (`output_at`), since nothing after it changes the keys.
"""

from __future__ import annotations

from typing import Any, Callable, Sequence

import torch

from .models import family

AUTO = "auto"


def patch_features(model: torch.nn.Module, x: torch.Tensor,
                   layer: str = AUTO) -> tuple[torch.Tensor, tuple[int, int], str]:
    """Features (N, h*w, C) of the batch `x` (N, 3, H, W), the grid (h, w) and the layer used.

    Rows are grid cells in row-major order (index = row * w + col). `layer="auto"` takes
    the last stage for CNNs and the last block's keys for ViTs; any other value is the
    dotted name of a module (as in `model.named_modules()`) whose output is taken: NCHW
    maps become rows per cell, token sequences (N, T, C) lose their prefix tokens.
    """
    if x.ndim != 4:
        raise ValueError(f"patch_features expects a batch (N, 3, H, W), got shape {tuple(x.shape)}")
    with torch.inference_mode():
        if layer != AUTO:
            return _module_output(model, x, layer)
        if family(model) == "vit":
            return _vit_keys(model, x)
        fmap = model.forward_features(x)
        if fmap.ndim != 4:
            raise ValueError(f"{type(model).__name__}.forward_features returned shape {tuple(fmap.shape)}, "
                             "not an NCHW map; name a convolutional module with feature_layer")
        return *_rows_of_map(fmap), "forward_features"


def _rows_of_map(fmap: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
    h, w = fmap.shape[-2:]
    return fmap.flatten(2).transpose(1, 2).float(), (h, w)


def patch_grid(model: torch.nn.Module, image_hw: Sequence[int]) -> tuple[int, int]:
    """The (rows, columns) of patches a ViT cuts an image of `image_hw` pixels into (row-major tokens)."""
    patch = model.patch_embed.patch_size
    ph, pw = (patch, patch) if isinstance(patch, int) else patch
    return int(image_hw[0]) // ph, int(image_hw[1]) // pw


def _patch_tokens(model: torch.nn.Module, tokens: torch.Tensor, source: str,
                  image_hw: Sequence[int]) -> tuple[torch.Tensor, tuple[int, int]]:
    """Drop the prefix (class, register) tokens and check the rest fill the input's patch grid."""
    h, w = patch_grid(model, image_hw)
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    if tokens.shape[1] != prefix + h * w:
        raise ValueError(f"{source}: {tokens.shape[1]} tokens, expected {prefix} prefix + {h}x{w} patches; "
                         "a ViT not built with dynamic_img_size takes only its img_size (sweetspot.models.timm_model)")
    return tokens[:, prefix:].float(), (h, w)


class _Stop(Exception):
    """Raised by a forward hook to end a forward pass once the tensor it needs exists."""


def output_at(module: torch.nn.Module, forward: Callable[[], Any]) -> torch.Tensor:
    """The output of `module` in the forward pass `forward()`, which ends there: the layers after
    it are not run. `module` must be called once per pass (its first call is taken)."""
    captured: list[torch.Tensor] = []

    def stop(_module: torch.nn.Module, _inputs: Any, out: torch.Tensor) -> None:
        captured.append(out)
        raise _Stop

    handle = module.register_forward_hook(stop)
    try:
        forward()
    except _Stop:
        pass
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"{type(module).__name__} was not called in the forward pass")
    return captured[0]


def _vit_keys(model: torch.nn.Module, x: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int], str]:
    # LOST uses the keys of the last block (its default `which_features="k"`).
    attn = model.blocks[-1].attn
    if not hasattr(attn, "qkv"):
        raise ValueError(f"{type(attn).__name__} of the last block has no fused `qkv` projection; "
                         "name the module to read with feature_layer")
    layer = f"blocks.{len(model.blocks) - 1}.attn.qkv:keys"
    qkv = output_at(attn.qkv, lambda: model.forward_features(x))
    n, t, _ = qkv.shape
    heads, head_dim = attn.num_heads, attn.head_dim
    # timm's layout: (q | k | v) along the last axis, each split into heads x head_dim.
    keys = qkv.reshape(n, t, 3, heads, head_dim)[:, :, 1]
    keys = attn.k_norm(keys.transpose(1, 2)).transpose(1, 2)  # the keys attention uses (Identity unless qk_norm)
    feats, grid = _patch_tokens(model, keys.reshape(n, t, heads * head_dim), layer, x.shape[-2:])
    return feats, grid, layer


def _module_output(model: torch.nn.Module, x: torch.Tensor, layer: str) -> tuple[torch.Tensor, tuple[int, int], str]:
    try:
        module = model.get_submodule(layer)
    except AttributeError:
        raise ValueError(f"feature_layer {layer!r} is not a module of {type(model).__name__}; "
                         "choose one of the names in model.named_modules() or 'auto'") from None
    captured: list[torch.Tensor] = []
    handle = module.register_forward_hook(lambda _m, _i, out: captured.append(out))
    try:
        model(x)
    finally:
        handle.remove()
    if not captured:
        raise ValueError(f"feature_layer {layer!r} was not called in the forward pass")
    out = captured[-1]
    if out.ndim == 4:
        return *_rows_of_map(out), layer
    if out.ndim == 3 and family(model) == "vit":
        return *_patch_tokens(model, out, layer, x.shape[-2:]), layer
    raise ValueError(f"feature_layer {layer!r} outputs shape {tuple(out.shape)}; need an NCHW map or ViT tokens (N, T, C)")
