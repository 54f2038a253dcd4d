"""The structure task: has pruning disconnected the network? (layer collapse, Tanaka et al. 2020)

Per prunable unit (item = module name; the query, key and value thirds of a fused qkv
projection are units of their own): `layer_sparsity`, and `layer_collapsed` = 1 when the unit
is pruned to 100 % or its output is the same for every evaluated image (a dead path: e.g. every
layer of a residual branch after a fully pruned convolution). Per checkpoint (item ""):
`collapsed_layers`, the number of collapsed units. A checkpoint with a collapsed unit is never a
sweet spot: whatever it gains comes from a network that no longer has the computation it was
built with.
"""

from __future__ import annotations

from typing import Any, Mapping

import pandas as pd
import torch

from ..contract import task_frame
from ..data.samples import Sample, stack_images
from ..pruning import layer_sparsity, prunable_units
from .context import EvalContext

# An output whose spread across images is below this fraction of its magnitude is constant.
CONSTANT_TOLERANCE = 1e-6


def run(ctx: EvalContext, dataset: str, samples: list[Sample], settings: Mapping[str, Any]) -> pd.DataFrame:
    """The task's rows for one dataset (the interface every task implements, sweetspot.tasks)."""
    images = stack_images(samples[: int(settings.get("n_images", 32))])
    constant = constant_outputs(ctx.model, ctx.preprocess(images, ctx.device))
    sparsity = layer_sparsity(ctx.model)
    rows = []
    for unit, fraction in sparsity.items():
        rows.append({"dataset": dataset, "variant": "", "metric": "layer_sparsity", "item": unit, "value": fraction})
        rows.append({"dataset": dataset, "variant": "", "metric": "layer_collapsed", "item": unit,
                     "value": float(fraction >= 1.0 or constant[unit])})
    return task_frame(rows)


def summarise(ctx: EvalContext, dataset: str, rows: pd.DataFrame, settings: Mapping[str, Any]) -> pd.DataFrame:
    collapsed = rows.loc[rows["metric"] == "layer_collapsed", "value"].sum()
    return task_frame([{"dataset": dataset, "variant": "", "metric": "collapsed_layers", "item": "",
                        "value": float(collapsed)}])


def constant_outputs(model: torch.nn.Module, x: torch.Tensor) -> dict[str, bool]:
    """Unit name -> whether its output is identical (within CONSTANT_TOLERANCE) for every image of x."""
    if x.shape[0] < 2:
        raise ValueError("the structure task needs at least 2 images to tell a constant output from a varying one")
    units = prunable_units(model)
    outputs: dict[str, torch.Tensor] = {}
    hooks = [module.register_forward_hook(lambda _m, _i, out, name=name: outputs.__setitem__(name, out.detach()))
             for name, module in {name.split("[")[0]: module for name, module, _ in units}.items()]
    try:
        with torch.inference_mode():
            model.eval()(x)
    finally:
        for hook in hooks:
            hook.remove()
    result = {}
    for unit, _, rows in units:
        out = outputs.get(unit.split("[")[0])
        if out is None:  # not called by the forward pass (an unused head): not part of the network
            result[unit] = False
            continue
        out = out.float() if rows is None else out.float()[..., rows]
        spread = (out - out[:1]).abs().amax()
        result[unit] = bool(spread <= CONSTANT_TOLERANCE * out.abs().amax() or not torch.isfinite(spread))
    return result
