"""Attribution maps for a batch of images: one call shape for every method, captum underneath.

`attribute(model, x, targets, method, cfg)` returns non-negative float32 maps (N, H, W) at
the input resolution, one value per pixel, ready for the localisation metrics (docs/methods.md,
"interpretability": one non-negative value per pixel).
`attribute_batch(model, x, methods, cfg, pick_targets)` gives the same maps for several
methods at once, the single-pass ones (saliency, Grad-CAM, guided Grad-CAM, attention) from
one shared forward pass that also picks the targets (tests check it against `attribute`).

Choices worth knowing:
- Integrated Gradients integrates from the all-zero input in the *normalised* space, which
  is the dataset mean colour (the captum default, as in the paper's code).
- Pixel attributions (saliency, ig, ig_smoothgrad, guided_gradcam) keep their sign (as
  captum computes them) and are pooled over colour channels by `cfg["pooling"]`:
  "l2sq" sum_c a_c^2 (CLEVR-XAI's "l2-norm,sq", the paper's pooling for IG),
  "abs_sum" |sum_c a_c| (CLEVR-XAI's "sum,abs"), "sum_pos" max(sum_c a_c, 0) ("sum,pos").
- Grad-CAM takes the module whose output *is* `forward_features`' output (the last stage:
  `layer4` in ResNets, `bn2` in EfficientNets) unless `cfg["gradcam_layer"]` names one.
  For vision transformers it runs on the patch tokens entering the last block's attention
  (the output of `blocks[-1].norm1`, pytorch-grad-cam's recipe): with class-token pooling
  the last block's *output* patch tokens never reach the logits, so their gradient, and
  Grad-CAM there, is exactly zero. A forward hook passes those tokens through an identity
  module as an (N, D, h, w) grid, which captum's LayerGradCam hooks like a convolutional
  layer; values are unchanged.
  The map is ReLU'd and upsampled bilinearly (captum's LayerAttribution.interpolate).
- Attention is the class token's attention to the patches in the last block, averaged over
  heads, recomputed from that block's qkv projection (timm's fused kernel never forms the
  matrix), then upsampled bilinearly. It does not depend on the target class.

Every pass runs on the model given. For speed, callers pass a copy that computes the same
logits with less work (sweetspot.speedups.faster_copy: BatchNorm folded and channels-last
weights in CNNs, a last block that computes the class token alone in ViTs), built once per job
(sweetspot.tasks.context.EvalContext.fast_model); the maps and the targets of `attribute_batch`
then come from that copy, the same up to float rounding.

Maps are not min-max normalised: the paper's evaluation rescales Grad-CAM and attention maps
to [0, 1] (subtracting the minimum) before scoring, which changes relevance mass; we score
the pooled attribution itself, as docs/methods.md defines it.
"""

from __future__ import annotations

import contextlib
import logging
import weakref
from typing import Any, Callable, Iterator, Mapping, Sequence

import torch
import torch.nn.functional as F
from captum.attr import IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency
from torch import nn

from .features import output_at, patch_grid
from .models import family as model_family

log = logging.getLogger(__name__)

METHODS = ("saliency", "ig", "ig_smoothgrad", "gradcam", "guided_gradcam", "attention")
POOLINGS = ("l2sq", "abs_sum", "sum_pos")
SINGLE_PASS = ("saliency", "gradcam", "guided_gradcam", "attention")  # one forward pass each (attribute_batch)
TARGETS = ("predicted", "true")

_FAMILIES: dict[str, frozenset[str]] = {
    "saliency": frozenset({"cnn", "vit"}),
    "ig": frozenset({"cnn", "vit"}),
    "ig_smoothgrad": frozenset({"cnn", "vit"}),
    "gradcam": frozenset({"cnn", "vit"}),
    "guided_gradcam": frozenset({"cnn"}),  # guided backprop rewrites ReLU gradients; ViTs use GELU
    "attention": frozenset({"vit"}),
}

# The paper's settings, read from its public code (EIDOSLAB/pruning-for-vision-representation,
# explain.py and explainations_evaluation_metrics.py): NoiseTunnel(IntegratedGradients) with
# nt_type "smoothgrad", nt_samples=2 and captum's defaults otherwise (n_steps=50, stdevs=1.0
# in the normalised input space, zero baseline); IG pooled with "l2-norm,sq"; the target is
# the predicted class; Grad-CAM on layer4[-1] (ResNet) or on the encoder output after its
# final LayerNorm with the class token dropped (ViT-B/32, torchvision: only the class token
# reaches the head there, so that map is zero); attention summed over heads.
PAPER_SETTINGS: dict[str, Any] = {
    "ig_steps": 50,
    "smoothgrad_samples": 2,
    "smoothgrad_stdev": 1.0,
    "pooling": "l2sq",
    "target": "predicted",
}


def applicable(method: str, family: str) -> bool:
    """Whether `method` is defined for a model of `family` ("cnn" or "vit")."""
    if method not in _FAMILIES:
        raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")
    return family in _FAMILIES[method]


def choose_targets(logits: torch.Tensor, labels: torch.Tensor | Sequence[int], mode: str,
                   class_groups: Sequence[Sequence[int]] | None = None) -> torch.Tensor:
    """The class each map explains: the arg-max ("predicted") or the sample label ("true").

    With `class_groups` (dataset label -> model classes, e.g. 16 categories of ImageNet
    classes), "true" picks the highest-logit model class inside the label's group.
    """
    if mode == "predicted":
        return logits.argmax(dim=1)
    if mode != "true":
        raise ValueError(f"interpretability target {mode!r} unknown; choose from {', '.join(TARGETS)}")
    labels = torch.as_tensor(labels, dtype=torch.long, device=logits.device)
    n_labels = len(class_groups) if class_groups is not None else logits.shape[1]
    if labels.numel() and (labels.min() < 0 or labels.max() >= n_labels):
        raise ValueError(f"target 'true' needs labels in [0, {n_labels}); got {labels.tolist()}; "
                         "use target: predicted for unlabelled data")
    if class_groups is None:
        return labels
    in_group = torch.zeros(len(class_groups), logits.shape[1], dtype=torch.bool, device=logits.device)
    for group, classes in enumerate(class_groups):
        in_group[group, list(classes)] = True
    return logits.masked_fill(~in_group[labels], float("-inf")).argmax(dim=1)


def pool_channels(attr: torch.Tensor, pooling: str) -> torch.Tensor:
    """(N, C, H, W) signed pixel attributions -> (N, H, W) non-negative relevance."""
    if pooling == "l2sq":
        return attr.pow(2).sum(dim=1)
    if pooling == "abs_sum":
        return attr.sum(dim=1).abs()
    if pooling == "sum_pos":
        return attr.sum(dim=1).clamp_min(0)
    raise ValueError(f"interpretability pooling {pooling!r} unknown; choose from {', '.join(POOLINGS)}")


def attribute(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str,
              cfg: Mapping[str, Any]) -> torch.Tensor:
    """Non-negative float32 maps (N, H, W) of `method` for normalised inputs `x` (N, 3, H, W).

    `targets` (N,) are the explained classes (see `choose_targets`). `cfg` holds pooling,
    ig_steps, smoothgrad_samples, smoothgrad_stdev and optionally ig_internal_batch_size,
    gradcam_layer (a CNN module name) and seed (SmoothGrad's noise). The model must be in eval
    mode; pass a faster copy of it for speed (sweetspot.speedups.faster_copy).
    """
    _check(model, [method], "attribute()")
    targets = targets.to(x.device)
    if method == "attention":
        return _cls_attention(model, x.detach().float()).float()
    x = x.detach().float().requires_grad_(True)  # captum would otherwise set it and warn
    if method == "gradcam":
        maps = _gradcam(model, x, targets, cfg)
    elif method == "guided_gradcam":  # captum's GuidedGradCam runs two forward passes for this
        maps = _single_pass_maps(model, x, [method], cfg, lambda _logits: targets)[1][method]
    else:
        maps = pool_channels(_pixel_attribution(model, x, targets, method, cfg), cfg["pooling"])
    return maps.detach().float()


def _check(model: nn.Module, methods: Sequence[str], caller: str) -> None:
    if model.training:
        raise ValueError(f"{caller} needs the model in eval mode (call model.eval()); "
                         "dropout and batch statistics would make maps random")
    fam = model_family(model)
    for method in methods:
        if not applicable(method, fam):
            raise ValueError(f"method {method!r} does not apply to a {fam} model; check applicable() first")


def attribute_batch(model: nn.Module, x: torch.Tensor, methods: Sequence[str], cfg: Mapping[str, Any],
                    pick_targets: Callable[[torch.Tensor], torch.Tensor]
                    ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """The targets `pick_targets(logits)` chooses for `x` and the maps of every method, as `attribute`.

    The single-pass methods (saliency, Grad-CAM, guided Grad-CAM, attention) share one forward
    pass, the one whose logits pick the targets, and one plain backward pass (saliency's input
    gradient and Grad-CAM's layer gradient); guided Grad-CAM adds one backward pass with the
    ReLU gradients clamped. Run apart, each would repeat the forward pass, and the targets a
    third. The other methods run as `attribute` runs them, on the same targets.
    """
    _check(model, methods, "attribute_batch()")
    shared = [m for m in methods if m in SINGLE_PASS]
    if shared:
        targets, maps = _single_pass_maps(model, x, shared, cfg, pick_targets)
    else:
        with torch.no_grad():
            targets = pick_targets(model(x).float()).to(x.device)
        maps = {}
    for method in methods:
        if method not in maps:
            maps[method] = attribute(model, x, targets, method, cfg)
    return targets, {method: maps[method] for method in methods}


def _single_pass_maps(model: nn.Module, x: torch.Tensor, methods: Sequence[str], cfg: Mapping[str, Any],
                      pick_targets: Callable[[torch.Tensor], torch.Tensor]) -> tuple[torch.Tensor,
                                                                                    dict[str, torch.Tensor]]:
    """Targets and maps from one forward pass of `model` and at most two backward passes: the
    plain one (saliency, Grad-CAM) and, for guided Grad-CAM, one with the ReLU gradients
    clamped. When saliency is not wanted, the plain pass stops at Grad-CAM's layer (in timm
    CNNs: the pooling and the linear head)."""
    x = x.detach().float().requires_grad_(True)
    captured: dict[str, torch.Tensor] = {}
    relu_outputs: list[torch.Tensor] = []
    guided = "guided_gradcam" in methods

    def keep(key: str) -> Callable[[nn.Module, Any, torch.Tensor], None]:
        return lambda _module, _inputs, out: captured.__setitem__(key, out)

    with contextlib.ExitStack() as stack:
        layer = None
        if "gradcam" in methods or guided:
            layer = stack.enter_context(gradcam_target(model, x, cfg.get("gradcam_layer")))
            stack.callback(layer.register_forward_hook(keep("layer")).remove)
        if "attention" in methods:
            stack.callback(_last_attention(model).qkv.register_forward_hook(keep("qkv")).remove)
        if guided:
            for module in model.modules():
                if isinstance(module, nn.ReLU):
                    hook = module.register_forward_hook(lambda _m, _i, out: relu_outputs.append(out))
                    stack.callback(hook.remove)
        logits = model(x)
    targets = pick_targets(logits.detach().float()).to(x.device)
    maps: dict[str, torch.Tensor] = {}
    if "attention" in methods:
        with torch.no_grad():
            maps["attention"] = _attention_from_qkv(model, captured["qkv"], x.shape[-2:])
    score = logits.gather(1, targets[:, None]).sum()
    wanted = {"saliency": x} if "saliency" in methods else {}
    if layer is not None:
        wanted["layer"] = captured["layer"]
    grads = dict(zip(wanted, torch.autograd.grad(score, list(wanted.values()), retain_graph=guided))) if wanted else {}
    if "saliency" in methods:
        maps["saliency"] = pool_channels(grads["saliency"], cfg["pooling"])
    if layer is not None:
        # Grad-CAM as captum's LayerGradCam computes it: channel weights are the mean gradient.
        acts = captured["layer"].detach()
        cam = F.relu((grads["layer"].mean(dim=(2, 3), keepdim=True) * acts).sum(dim=1, keepdim=True))
        cam = LayerAttribution.interpolate(cam, tuple(x.shape[2:]), interpolate_mode="bilinear")
        if "gradcam" in methods:
            maps["gradcam"] = cam[:, 0]
        if guided:
            maps["guided_gradcam"] = pool_channels(_guided_backprop(score, x, relu_outputs) * cam, cfg["pooling"])
    return targets, {m: maps[m].detach().float() for m in methods}


def _guided_backprop(score: torch.Tensor, x: torch.Tensor, relu_outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """Guided backprop's input gradient from a retained graph: the gradient at every ReLU
    output clamped to >= 0, before that ReLU's own backward: captum's relu(grad_input). ReLU
    outputs outside the graph carry no gradient and need no clamp; one changed in place later
    would fail autograd's own check (ReLU saves its output for the backward pass)."""
    handles = [t.register_hook(lambda grad: grad.clamp_min(0)) for t in relu_outputs if t.requires_grad]
    try:
        return torch.autograd.grad(score, x)[0]
    finally:
        for handle in handles:
            handle.remove()


def _pixel_attribution(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, method: str,
                       cfg: Mapping[str, Any]) -> torch.Tensor:
    if method == "saliency":
        return Saliency(model).attribute(x, target=targets, abs=False)
    # Rows of (image, step) per forward pass inside IG bound memory for any n_steps; captum
    # needs at least one row per image. SmoothGrad runs its noisy copies one at a time.
    ig_kwargs = dict(target=targets, n_steps=int(cfg["ig_steps"]),
                     internal_batch_size=max(int(cfg.get("ig_internal_batch_size", 128)), x.shape[0]))
    if method == "ig":
        return IntegratedGradients(model).attribute(x, baselines=torch.zeros_like(x), **ig_kwargs)
    if method == "ig_smoothgrad":
        seed = int(cfg.get("seed", 0))
        devices = [x.device] if x.device.type == "cuda" else []
        with torch.random.fork_rng(devices=devices):  # the same noise for the same inputs and seed
            torch.manual_seed(seed)
            return NoiseTunnel(IntegratedGradients(_channels_last_input(model))).attribute(
                x, nt_type="smoothgrad", nt_samples=int(cfg["smoothgrad_samples"]), nt_samples_batch_size=1,
                stdevs=float(cfg["smoothgrad_stdev"]), baselines=torch.zeros_like(x), **ig_kwargs)
    raise ValueError(f"unknown attribution method {method!r}; choose from {', '.join(METHODS)}")


def _channels_last_input(model: nn.Module) -> Callable[[torch.Tensor], torch.Tensor]:
    """`model` fed channels-last copies of its (N, C, H, W) inputs.

    NoiseTunnel passes fresh NCHW-contiguous noisy copies, while Preprocess's output (and IG's
    scaled copies of it) are channels-last, the layout CPU convolutions and pooling run fastest
    on (SmoothGrad-IG on test_resnet took 1.4x longer per IG pass without this).
    """
    return lambda inputs: model(inputs.contiguous(memory_format=torch.channels_last))


def _gradcam(model: nn.Module, x: torch.Tensor, targets: torch.Tensor, cfg: Mapping[str, Any]) -> torch.Tensor:
    with gradcam_target(model, x, cfg.get("gradcam_layer")) as layer:
        cam = LayerGradCam(model, layer).attribute(x, target=targets, relu_attributions=True)
    return LayerAttribution.interpolate(cam, tuple(x.shape[-2:]), interpolate_mode="bilinear")[:, 0]


@contextlib.contextmanager
def gradcam_target(model: nn.Module, x: torch.Tensor, name: str | None = None) -> Iterator[nn.Module]:
    """The layer Grad-CAM hooks, valid while the context is open: for CNNs `gradcam_layer`
    (`name` overrides it), for ViTs the patch-token grid entering the last attention."""
    if model_family(model) == "vit":
        with _vit_token_grid(model, x.shape[-2:]) as grid:
            yield grid
    else:
        yield gradcam_layer(model, x, name)


# model -> its last stage, so that finding it costs one forward pass per model, not per batch.
_LAST_STAGE: weakref.WeakKeyDictionary[nn.Module, nn.Module] = weakref.WeakKeyDictionary()


def gradcam_layer(model: nn.Module, x: torch.Tensor, name: str | None = None) -> nn.Module:
    """The CNN layer Grad-CAM hooks: `name` if given, else the last stage.

    The last stage is the outermost module whose output is the very tensor that
    `model.forward_features` returns (found with one forward pass of one image, once per model).
    """
    modules = dict(model.named_modules())
    if name:
        if name not in modules:
            raise ValueError(f"gradcam_layer {name!r} is not a module of this model; "
                             f"e.g. {', '.join(list(modules)[1:6])}")
        return modules[name]
    cached = _LAST_STAGE.get(model)
    if cached is not None and any(m is cached for m in modules.values()):
        return cached
    if not hasattr(model, "forward_features"):
        raise ValueError("cannot find the last convolutional stage of a model without forward_features; "
                         "set interpretability.gradcam_layer to a module name")
    produced: list[tuple[nn.Module, torch.Tensor]] = []
    handles = [m.register_forward_hook(lambda mod, _inp, out: produced.append((mod, out)))
               for n, m in modules.items() if n]
    try:
        with torch.no_grad():
            features = model.forward_features(x[:1])
    finally:
        for handle in handles:
            handle.remove()
    # Hooks fire inner modules first, so the last match is the outermost (e.g. layer4, not its act).
    matches = [mod for mod, out in produced if out is features]
    if not matches or features.dim() != 4:
        raise ValueError("no module produces forward_features' (N, C, h, w) output; "
                         "set interpretability.gradcam_layer to the last convolutional module's name")
    _LAST_STAGE[model] = matches[-1]
    return matches[-1]


class _TokenGrid(nn.Module):
    """Identity on the (N, D, h, w) grid of patch tokens: a layer captum can hook like a conv."""

    def forward(self, grid: torch.Tensor) -> torch.Tensor:
        return grid


@contextlib.contextmanager
def _vit_token_grid(model: nn.Module, image_hw: Sequence[int]) -> Iterator[nn.Module]:
    """Route the patch tokens entering the last attention through a `_TokenGrid` while open."""
    grid_hw = patch_grid(model, image_hw)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    view = _TokenGrid()

    def through_grid(_module: nn.Module, _inputs: Any, tokens: torch.Tensor) -> torch.Tensor:
        n, t, d = tokens.shape
        if t != prefix + grid_hw[0] * grid_hw[1]:
            raise ValueError(f"last block sees {t} tokens, expected {prefix} prefix tokens + "
                             f"{grid_hw[0]}x{grid_hw[1]} patches")
        grid = view(tokens[:, prefix:].transpose(1, 2).reshape(n, d, *grid_hw))
        return torch.cat([tokens[:, :prefix], grid.flatten(2).transpose(1, 2)], dim=1)

    norm1 = getattr(model.blocks[-1], "norm1", None)
    if not isinstance(norm1, nn.Module):
        raise ValueError("ViT Grad-CAM hooks blocks[-1].norm1, which this model lacks")
    handle = norm1.register_forward_hook(through_grid)
    try:
        yield view
    finally:
        handle.remove()


def _last_attention(model: nn.Module) -> nn.Module:
    if getattr(model, "cls_token", None) is None:
        raise ValueError("attention maps need a class token; this ViT has none (drop 'attention' from methods)")
    attn = model.blocks[-1].attn
    if not isinstance(getattr(attn, "qkv", None), nn.Linear):
        raise ValueError("attention maps need the last block's fused qkv projection (timm Attention)")
    return attn


def _cls_attention(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The class token's attention from a forward pass that stops at the last block's qkv
    projection: the rest of that block, the final norm and the head do not change the map."""
    attn = _last_attention(model)
    with torch.inference_mode():
        qkv = output_at(attn.qkv, lambda: model.forward_features(x))
    return _attention_from_qkv(model, qkv, x.shape[-2:])


def _attention_from_qkv(model: nn.Module, qkv: torch.Tensor, image_hw: Sequence[int]) -> torch.Tensor:
    """(N, H, W) class-token attention to the patches, averaged over heads, from the last
    block's qkv projection output (N, T, 3 * dim), upsampled bilinearly."""
    attn = model.blocks[-1].attn
    n, t, _ = qkv.shape
    qkv = qkv.reshape(n, t, 3, attn.num_heads, attn.head_dim).permute(2, 0, 3, 1, 4)
    q, k = attn.q_norm(qkv[0]), attn.k_norm(qkv[1])
    weights = (q @ k.transpose(-2, -1) * attn.scale).softmax(dim=-1)  # (N, heads, T, T)
    prefix = int(getattr(model, "num_prefix_tokens", 1))
    cls_to_patches = weights[:, :, 0, prefix:].mean(dim=1)
    grid = cls_to_patches.reshape(n, 1, *patch_grid(model, image_hw))  # row-major: (rows, columns)
    return F.interpolate(grid, size=tuple(image_hw), mode="bilinear", align_corners=False)[:, 0]
