"""The model jobs' protocol: what the dense reference gets is what every pruned model gets."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from sweetspot import models, training
from sweetspot.jobs import checkpoints as pipeline
from sweetspot.data import registry, synthetic
from conftest import TINY

RESNET_FILE = {"timm": "test_resnet", "kwargs": {}, "weights": "file", "num_classes": 8}


pytestmark = pytest.mark.usefixtures("torch_global_state")  # the jobs called here pin global torch state


@pytest.fixture
def pretrained_study(tmp_path):
    """A synthetic benchmark and a 'pretrained' test_resnet file whose BatchNorm statistics are off."""
    config = copy.deepcopy(TINY)
    config["data_dir"] = str(tmp_path / "data")
    config["synthetic"].update(image_size=32, train_per_class=4, val_per_class=1, cue_conflict_per_class=1)
    synthetic.generate(tmp_path / "data" / "synthetic", **config["synthetic"])
    torch.manual_seed(1)
    model = models.create(RESNET_FILE, 8)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics of some other data
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    weights_path = tmp_path / "pretrained.safetensors"
    save_file(model.state_dict(), str(weights_path))
    config["architectures"] = {"resnet": {**RESNET_FILE, "weights_path": str(weights_path)}}
    config["pruning"]["recovery"] = {"mode": "bn", "calibration_images": 24}
    return config, model


def bn_statistics(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {name: value.clone() for name, value in model.state_dict().items() if "running_" in name}


@pytest.mark.parametrize("mode", ["bn", "none"])
def test_dense_reference_gets_the_recovery_its_pruned_models_get(tmp_path, pretrained_study, mode):
    config, pretrained = pretrained_study
    config["pruning"]["recovery"]["mode"] = mode
    dense_out = tmp_path / "dense.safetensors"
    pipeline.dense_job(config, "resnet", 0, dense_out)
    dense, _ = models.load_checkpoint(dense_out, config["architectures"]["resnet"])

    expected = copy.deepcopy(pretrained)
    if mode == "bn":  # the same images and batches a pruned model's re-estimation uses
        images, _, _, _ = registry.train_split(config, 32)
        training.bn_reestimate(expected, images[:24], preprocess=models.preprocess_for(
            expected, config["architectures"]["resnet"], 32), batch_size=config["dense"]["batch_size"], device="cpu")
    got, want, before = bn_statistics(dense), bn_statistics(expected), bn_statistics(pretrained)
    for name in want:
        torch.testing.assert_close(got[name], want[name], rtol=0, atol=0)
    changed = any(not torch.equal(got[name], before[name]) for name in before if "num_batches" not in name)
    assert changed == (mode == "bn")

    # a magnitude-pruned child re-estimates the same way, from the same calibration images
    pruned_out = tmp_path / "pruned.safetensors"
    pipeline.prune_job(config, "resnet", "magnitude", "0.5", 0, dense_out, pruned_out)
    pruned, sidecar = models.load_checkpoint(pruned_out, config["architectures"]["resnet"])
    assert sidecar["recovery"] == mode
    weights = {k: v for k, v in dense.state_dict().items() if "running_" not in k and "num_batches" not in k}
    assert any(not torch.equal(pruned.state_dict()[k], v) for k, v in weights.items())  # it was pruned
    assert np.isclose(sidecar["sparsity_actual"], 0.5, atol=0.005)
