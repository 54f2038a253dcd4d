"""A vision transformer rewritten to skip work that never reaches its logits (one of
sweetspot.speedups.faster_copy's rewrites).

- With class-token pooling only the class token leaves the last block. Every patch token's
  attention output, output projection and MLP there is computed and then thrown away. The
  trimmed last block computes keys and values for all tokens but the rest for the class token
  alone. It still calls the block's own `norm1` and `attn.qkv`, so hooks on them still fire
  (Grad-CAM reads the tokens entering the last attention, the attention map reads qkv), and
  the gradient reaching them is unchanged: the patch tokens' queries and outputs never touch
  the logits.
- A patch embedding is a convolution whose kernel equals its stride, which is one matrix
  product over the flattened patches. On CPU that product's backward pass costs a fraction
  of the convolution's (the convolution's took 10 % of a saliency pass of the default ViT).

Both together make the study's gradient passes (IG step batches and the shared saliency pass)
1.2-1.3x faster on CPU, for timm's vit_base_patch32_224 at 224 px as for the default study's
ViT; each alone gains about 1.1x on one of the two, so neither goes without the other
(benchmarks/pass_copy_gain.py; the measurements and the rule in benchmarks/README.md).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def trim_vit(model: nn.Module) -> list[str]:
    """Apply the rewrites that fit `model` (a timm VisionTransformer) in place; what was changed."""
    changed = []
    proj = getattr(getattr(model, "patch_embed", None), "proj", None)
    if _is_patch_conv(proj):
        model.patch_embed.proj = _PatchMatmul(proj)
        changed.append("patch embedding as a matrix product")
    blocks = getattr(model, "blocks", None)
    if _class_token_pooling(model) and isinstance(blocks, nn.Sequential) and len(blocks) and _is_plain_block(blocks[-1]):
        blocks[-1] = _ClassTokenBlock(blocks[-1])
        changed.append("last block for the class token only")
    return changed


def _is_patch_conv(module: object) -> bool:
    return (type(module) is nn.Conv2d and module.kernel_size == module.stride and module.padding == (0, 0)
            and module.dilation == (1, 1) and module.groups == 1)


def _class_token_pooling(model: nn.Module) -> bool:
    """The head reads the first token alone (timm's global_pool "token", no attention pooling)."""
    return (getattr(model, "global_pool", None) == "token" and getattr(model, "attn_pool", None) is None
            and getattr(model, "cls_token", None) is not None)


def _is_plain_block(block: nn.Module) -> bool:
    """timm's own Block with its own Attention (subclasses may compute something else), no gating."""
    from timm.layers import Attention
    from timm.models.vision_transformer import Block

    attn = getattr(block, "attn", None)
    return type(block) is Block and type(attn) is Attention and getattr(attn, "gate", None) is None


class _PatchMatmul(nn.Module):
    """A convolution whose kernel equals its stride as one matrix product over flattened patches;
    output (N, out_channels, h, w) as the convolution's."""

    def __init__(self, conv: nn.Conv2d):
        super().__init__()
        self.patch = conv.kernel_size
        weight = conv.weight.detach()
        # (out, c, ph, pw) -> (out, ph * pw * c), the order of the channels-last patches below
        self.weight = nn.Parameter(weight.permute(0, 2, 3, 1).reshape(weight.shape[0], -1).clone())
        self.bias = None if conv.bias is None else nn.Parameter(conv.bias.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, c, h, w = x.shape
        (ph, pw), gh, gw = self.patch, h // self.patch[0], w // self.patch[1]
        patches = (x[:, :, :gh * ph, :gw * pw].permute(0, 2, 3, 1).reshape(n, gh, ph, gw, pw, c)
                   .transpose(2, 3).reshape(n, gh, gw, ph * pw * c))
        return F.linear(patches, self.weight, self.bias).permute(0, 3, 1, 2)


class _ClassTokenBlock(nn.Module):
    """timm's Block (eval mode) returning only the class token: (N, T, D) -> (N, 1, D)."""

    def __init__(self, block: nn.Module):
        super().__init__()
        for name, child in block.named_children():  # same names: blocks[-1].attn, .norm1 still resolve
            self.add_module(name, child)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        attn = self.attn
        tokens = self.norm1(x)
        n, t, _ = tokens.shape
        qkv = attn.qkv(tokens).reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        q, k = attn.q_norm(q[:, :, :1]), attn.k_norm(k)
        if attn.fused_attn:
            out = F.scaled_dot_product_attention(q, k, v)
        else:
            out = ((q * attn.scale) @ k.transpose(-2, -1)).softmax(dim=-1) @ v
        out = attn.proj_drop(attn.proj(attn.norm(out.transpose(1, 2).reshape(n, 1, -1))))
        cls = x[:, :1] + self.drop_path1(self.ls1(out))
        return cls + self.drop_path2(self.ls2(self.mlp(self.norm2(cls))))
