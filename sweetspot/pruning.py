"""Global unstructured pruning of Conv2d and Linear weights (torch.nn.utils.prune).

Every method computes one mask across all prunable layers with an exact count of
`round(sparsity * total)` pruned weights and installs it with torch's pruning
reparametrisation (`weight = weight_orig * weight_mask`, applied by a forward pre-hook),
so the mask holds during recovery training. `finalize` makes it permanent: afterwards
the state dict has plain `weight` tensors with zeros, which is what checkpoints store.

Sparsity is always the total fraction of zeros over the prunable weights (docs/methods.md, "Pruning").
A model that already contains zeros (the previous IMP level, loaded from its checkpoint)
is pruned to that total: magnitude and SNIP rank existing zeros lowest, so they stay zero.
Biases, norms, position embeddings and class tokens are never touched.

SNIP ranks |w * dL/dw| at initialisation. Where whole layers get an exactly zero gradient by
construction (timm's ResNets zero the last norm scale of every residual block), most scores
tie at zero and the mask would be decided by memory order: `snip` refuses such a model, and
breaks the remaining ties at the threshold at random (seeded).

`layer_sparsity` reports every prunable unit (a layer; the query, key and value parts of a
fused qkv projection separately); a unit at 100 % disconnects the network (layer collapse,
Tanaka et al., NeurIPS 2020).
"""

from __future__ import annotations

import fnmatch
import logging
from typing import Callable, Iterable, Sequence

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

log = logging.getLogger(__name__)

from .catalog import PRUNING_METHODS as METHODS

# Above this fraction of exactly-zero SNIP scores the ranking is mostly ties (docs/methods.md).
MAX_ZERO_SCORE_FRACTION = 0.05

Batches = Iterable[tuple[torch.Tensor, torch.Tensor]]
LossFn = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def prunable_modules(model: nn.Module, exclude: Sequence[str] = ()) -> list[tuple[str, nn.Module]]:
    """Every Conv2d and Linear (subclasses included) whose name matches no `exclude` fnmatch pattern."""
    found = []
    for name, module in model.named_modules():
        if isinstance(module, nn.MultiheadAttention):
            # Its fused in_proj_weight is no Linear and its out_proj weight is read directly,
            # bypassing the pruning hook: masks would silently not apply.
            raise ValueError(f"module {name!r} is an nn.MultiheadAttention, which sweetspot cannot prune "
                             "correctly; use an architecture with separate Linear projections (timm ViTs)")
        if not isinstance(module, (nn.Conv2d, nn.Linear)) or getattr(module, "weight", None) is None:
            continue
        if any(fnmatch.fnmatchcase(name, pattern) for pattern in exclude):
            continue
        found.append((name, module))
    if not found:
        raise ValueError(f"no prunable Conv2d/Linear weights left after excluding {list(exclude)!r}; "
                         "loosen the `exclude` patterns in the config")
    return found


def _current_weight(module: nn.Module) -> torch.Tensor:
    """The effective weight, also between an optimiser step and the next forward under reparametrisation."""
    if hasattr(module, "weight_mask"):
        return module.weight_orig * module.weight_mask
    return module.weight


def masks_of(model: nn.Module, exclude: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """Module name -> bool CPU tensor, True where the weight is nonzero."""
    with torch.no_grad():
        return {name: (_current_weight(m) != 0).cpu() for name, m in prunable_modules(model, exclude)}


def measured_sparsity(model: nn.Module, exclude: Sequence[str] = ()) -> float:
    """Fraction of zero weights over all prunable weights."""
    zeros = total = 0
    with torch.no_grad():
        for _, module in prunable_modules(model, exclude):
            weight = _current_weight(module)
            zeros += int((weight == 0).sum())
            total += weight.numel()
    return zeros / total


def is_pruned(model: nn.Module) -> bool:
    """True while any module carries torch's pruning reparametrisation (weight_orig + weight_mask)."""
    return any(torch_prune.is_pruned(m) for m in model.modules())


def finalize(model: nn.Module) -> nn.Module:
    """Make masks permanent (prune.remove): plain `weight` parameters holding the zeros."""
    for module in model.modules():
        if hasattr(module, "weight_orig") and hasattr(module, "weight_mask"):
            torch_prune.remove(module, "weight")
    return model


def _prune_count(sparsity: float, total: int) -> int:
    if not 0.0 <= float(sparsity) < 1.0:
        raise ValueError(f"sparsity must be in [0, 1), got {sparsity!r}")
    return int(round(float(sparsity) * total))


def _start(model: nn.Module, sparsity: float, exclude: Sequence[str]) -> tuple[list[tuple[str, nn.Module]], int]:
    """Finalise any earlier masks (the new target is the total fraction) and return layers and count."""
    finalize(model)
    modules = prunable_modules(model, exclude)
    total = sum(m.weight.numel() for _, m in modules)
    return modules, _prune_count(sparsity, total)


def magnitude(model: nn.Module, sparsity: float, exclude: Sequence[str] = ()) -> nn.Module:
    """Prune the globally smallest |w| so that exactly round(sparsity * total) weights are masked.

    Existing zeros have the smallest magnitude, so an IMP level keeps the previous level's
    zeros as long as the new target is at least the current sparsity.
    """
    modules, amount = _start(model, sparsity, exclude)
    torch_prune.global_unstructured([(m, "weight") for _, m in modules],
                                    pruning_method=torch_prune.L1Unstructured, amount=amount)
    log.info("magnitude pruning to %.4f: measured %.4f", sparsity, measured_sparsity(model, exclude))
    return model


def random(model: nn.Module, sparsity: float, exclude: Sequence[str] = (), seed: int = 0) -> nn.Module:
    """A uniformly random global mask with the exact count, reproducible from `seed`.

    The mask ignores existing zeros (it is the control for a dense model): on a model that
    already has zeros the measured sparsity can exceed the target. The draw uses its own
    torch.Generator on CPU, so the global RNG is left untouched and devices agree.
    """
    modules, amount = _start(model, sparsity, exclude)
    generator = torch.Generator().manual_seed(int(seed))
    keep = torch.ones(sum(m.weight.numel() for _, m in modules), dtype=torch.bool)
    keep[torch.randperm(keep.numel(), generator=generator)[:amount]] = False
    _install(modules, keep)
    log.info("random pruning to %.4f (seed %d): measured %.4f", sparsity, seed, measured_sparsity(model, exclude))
    return model


def snip_scores(model: nn.Module, batches: Batches, loss_fn: LossFn, exclude: Sequence[str] = (),
                seed: int = 0) -> dict[str, torch.Tensor]:
    """SNIP connection sensitivity |w * dL/dw| per prunable module (Lee et al., ICLR 2019).

    The gradient is summed over `batches` before taking |w * g|, i.e. the sensitivity of
    the loss over all given examples (the paper uses a single minibatch; pass one to match).
    Scoring runs in train mode, as the training that follows will (BatchNorm normalises with
    batch statistics, which is what makes a freshly initialised network well conditioned);
    BatchNorm running statistics, the train/eval mode, `.grad` and the global RNG (dropout is
    seeded from `seed` inside a forked RNG) are left as they were.
    """
    modules = prunable_modules(model, exclude)
    weights = [m.weight for _, m in modules]
    device = weights[0].device
    buffers = {name: b.detach().clone() for name, b in model.named_buffers()}
    was_training = model.training
    grads = [torch.zeros_like(w) for w in weights]
    seen = 0
    fork_devices = [device] if device.type == "cuda" else []
    try:
        with torch.random.fork_rng(devices=fork_devices):
            torch.manual_seed(int(seed))
            model.train()
            for x, y in batches:
                loss = loss_fn(model(x.to(device)), y.to(device))
                for acc, g in zip(grads, torch.autograd.grad(loss, weights)):
                    acc.add_(g)
                seen += 1
    finally:
        model.train(was_training)
        with torch.no_grad():
            for name, b in model.named_buffers():
                b.copy_(buffers[name])
    if seen == 0:
        raise ValueError("SNIP needs at least one (x, y) batch to score connections; `batches` was empty")
    with torch.no_grad():
        return {name: (w * g).abs() for (name, _), w, g in zip(modules, weights, grads)}


class SnipScoreError(ValueError):
    """SNIP scores that cannot rank connections (too many exact zeros)."""


def zero_score_fraction(scores: dict[str, torch.Tensor]) -> float:
    zeros = sum(int((s == 0).sum()) for s in scores.values())
    return zeros / sum(s.numel() for s in scores.values())


def snip(model: nn.Module, sparsity: float, batches: Batches, loss_fn: LossFn, exclude: Sequence[str] = (),
         seed: int = 0, name: str = "the model") -> nn.Module:
    """Keep the globally top (1 - sparsity) connections by SNIP sensitivity, at the current weights.

    Refuses (SnipScoreError) when more than MAX_ZERO_SCORE_FRACTION of the scores are exactly
    zero; ties at the threshold are broken at random from `seed`.
    """
    modules, amount = _start(model, sparsity, exclude)
    scores = snip_scores(model, batches, loss_fn, exclude, seed=seed)
    zero = zero_score_fraction(scores)
    if zero > MAX_ZERO_SCORE_FRACTION:
        worst = sorted(((float((s == 0).float().mean()), n) for n, s in scores.items()), reverse=True)[:3]
        raise SnipScoreError(
            f"SNIP on {name}: {zero:.1%} of the connection scores are exactly zero (most in "
            f"{', '.join(f'{n} {f:.0%}' for f, n in worst)}), so the mask would be decided by tie order. Every "
            "weight needs a gradient at initialisation: a zero-initialised norm scale (timm's zero_init_last) "
            "closes whole residual branches (sweetspot resets such scales in the models it creates; for others "
            "pass zero_init_last=False in architectures.<label>.kwargs), and a 3x3 kernel on a 1x1 feature map "
            "touches only padding with 8 of its 9 taps (use larger images)")
    log.info("SNIP scores: %.3f%% exactly zero", 100 * zero)
    install_mask_of_lowest(modules, scores, amount, seed)
    log.info("SNIP pruning to %.4f: measured %.4f", sparsity, measured_sparsity(model, exclude))
    return model


def install_mask_of_lowest(modules: Sequence[tuple[str, nn.Module]], scores: dict[str, torch.Tensor], amount: int,
                           seed: int) -> None:
    """Mask the `amount` lowest-scoring weights across `modules`; ties at the threshold are broken
    by a seeded random order, never by memory order (torch's topk keeps whichever comes first)."""
    flat = torch.cat([scores[name].detach().flatten().float().cpu() for name, _ in modules])
    order = torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(int(seed)))
    ranked = order[torch.argsort(flat[order], stable=True)]
    keep = torch.ones(flat.numel(), dtype=torch.bool)
    keep[ranked[:amount]] = False
    _install(modules, keep)


def _install(modules: Sequence[tuple[str, nn.Module]], keep: torch.Tensor) -> None:
    """Install a flat keep-mask over `modules` (in order) with torch's pruning reparametrisation."""
    for (_, module), part in zip(modules, torch.split(keep, [m.weight.numel() for _, m in modules])):
        mask = part.view_as(module.weight).to(device=module.weight.device, dtype=module.weight.dtype)
        torch_prune.custom_from_mask(module, "weight", mask)


def prunable_units(model: nn.Module, exclude: Sequence[str] = ()) -> list[tuple[str, nn.Module, slice | None]]:
    """(unit name, module, rows) of every prunable unit: a layer, or one third of a fused qkv
    projection (rows of the query, key or value part), which can collapse on its own."""
    fused = {f"{name}.qkv" for name, module in model.named_modules()
             if hasattr(module, "num_heads") and isinstance(getattr(module, "qkv", None), nn.Linear)}
    units: list[tuple[str, nn.Module, slice | None]] = []
    for name, module in prunable_modules(model, exclude):
        rows = module.weight.shape[0]
        if name in fused and rows % 3 == 0:
            third = rows // 3
            units += [(f"{name}[{part}]", module, slice(i * third, (i + 1) * third)) for i, part in enumerate("qkv")]
        else:
            units.append((name, module, None))
    return units


def layer_sparsity(model: nn.Module, exclude: Sequence[str] = ()) -> dict[str, float]:
    """Unit name -> fraction of its weights that are zero."""
    out = {}
    with torch.no_grad():
        for name, module, rows in prunable_units(model, exclude):
            weight = _current_weight(module)
            weight = weight if rows is None else weight[rows]
            out[name] = float((weight == 0).sum()) / weight.numel()
    return out


def collapsed_units(sparsity_by_unit: dict[str, float]) -> list[str]:
    """Units pruned to 100 %: their output no longer depends on their input."""
    return [name for name, s in sparsity_by_unit.items() if s >= 1.0]


def prune(model: nn.Module, method: str, sparsity: float, *, exclude: Sequence[str] = (), seed: int = 0,
          batches: Batches | None = None, loss_fn: LossFn | None = None, name: str = "the model") -> nn.Module:
    """Dispatch on `method`; "imp" is magnitude pruning of the previous level's (finalised) weights."""
    if method in ("magnitude", "imp"):
        return magnitude(model, sparsity, exclude)
    if method == "random":
        return random(model, sparsity, exclude, seed=seed)
    if method == "snip":
        if batches is None or loss_fn is None:
            raise ValueError("method 'snip' needs `batches` (an iterable of (x, y)) and `loss_fn` to score connections")
        return snip(model, sparsity, batches, loss_fn, exclude, seed=seed, name=name)
    raise ValueError(f"unknown pruning method {method!r}; expected one of {', '.join(METHODS)}")
