"""The structure task: layer sparsity per unit and collapse (100 % pruned or a constant output)."""

from __future__ import annotations

import numpy as np
import pytest
import timm
import torch

from sweetspot.data.samples import Sample
from sweetspot.tasks import structure
from sweetspot.tasks.context import EvalContext


def context(model: torch.nn.Module) -> EvalContext:
    ctx = EvalContext(model=model.eval(), arch_cfg={"timm": "test_resnet", "kwargs": {}}, method="magnitude", seed=0,
                      data={"benchmark": "synthetic", "image_size": 48}, device=torch.device("cpu"))
    return ctx


def samples(n: int = 6) -> list[Sample]:
    rng = np.random.default_rng(0)
    return [Sample(item=f"img{i}", image=rng.integers(0, 255, (48, 48, 3), dtype=np.uint8)) for i in range(n)]


def test_a_fully_pruned_convolution_collapses_it_and_the_branch_behind_it():
    torch.manual_seed(0)
    model = timm.create_model("test_resnet", num_classes=8)
    block = model.layer2[0]
    with torch.no_grad():
        block.conv1.weight.zero_()
        for module in model.modules():  # open timm's zero-initialised residual branches
            if isinstance(module, torch.nn.BatchNorm2d) and not module.weight.any():
                module.weight.fill_(1.0)
    rows = structure.run(context(model), "toy", samples(), {"n_images": 6})
    collapsed = rows[(rows["metric"] == "layer_collapsed") & (rows["value"] == 1)]["item"].tolist()
    assert "layer2.0.conv1" in collapsed  # 100 % pruned
    assert "layer2.0.conv2" in collapsed  # its input is the same for every image: a dead path
    assert "layer1.0.conv1" not in collapsed and "fc" not in collapsed
    sparsity = rows[rows["metric"] == "layer_sparsity"].set_index("item")["value"]
    assert sparsity["layer2.0.conv1"] == 1.0 and sparsity["layer1.0.conv1"] == 0.0
    summary = structure.summarise(context(model), "toy", rows, {})
    assert summary["metric"].tolist() == ["collapsed_layers"] and summary["value"].iloc[0] == len(collapsed)
    assert summary["item"].tolist() == [""]


def test_a_working_network_has_no_collapsed_layer():
    torch.manual_seed(0)
    model = timm.create_model("test_vit", num_classes=8, img_size=48, patch_size=8)
    rows = structure.run(context(model), "toy", samples(), {"n_images": 6})
    assert rows.loc[rows["metric"] == "layer_collapsed", "value"].sum() == 0
    assert {"blocks.0.attn.qkv[q]", "blocks.0.attn.qkv[k]", "blocks.0.attn.qkv[v]"} <= set(rows["item"])


def test_one_image_cannot_tell_a_constant_output():
    with pytest.raises(ValueError, match="at least 2 images"):
        structure.constant_outputs(timm.create_model("test_resnet"), torch.zeros(1, 3, 48, 48))
