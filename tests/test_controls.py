"""Matched controls: each pruned checkpoint's control differs from it in the mask alone."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
import torch
from safetensors.torch import save_file

from sweetspot import models, study, training
from sweetspot.data import registry, synthetic
from sweetspot.jobs import checkpoints, evaluation
from conftest import TINY

RESNET_FILE = {"timm": "test_resnet", "kwargs": {}, "weights": "file", "num_classes": 8}

pytestmark = pytest.mark.usefixtures("torch_global_state")  # the jobs called here pin global torch state


@pytest.fixture
def study_config(tmp_path):
    config = copy.deepcopy(TINY)
    config["data_dir"] = str(tmp_path / "data")
    config["synthetic"].update(train_per_class=4, val_per_class=2, cue_conflict_per_class=1)
    synthetic.generate(tmp_path / "data" / "synthetic", **config["synthetic"])
    config["architectures"] = {"resnet": config["architectures"]["resnet"]}
    return config


def _job_args(config: dict) -> dict:
    return dict(arch="resnet", arch_cfg=config["architectures"]["resnet"], seed=0, data=study.data_params(config),
                schedule=study.schedule(config, "resnet"), device="cpu", amp=False)


def _weights(path) -> dict[str, torch.Tensor]:
    model, _ = models.load_checkpoint(path, TINY["architectures"]["resnet"])
    return model.state_dict()


def test_snip_and_its_control_start_from_one_initialisation(study_config, monkeypatch):
    """The SNIP job and the SNIP control train from the same weights; only the mask differs."""
    seen = []
    real_train = checkpoints._train

    def record(model, *args, **kwargs):
        seen.append({k: v.clone() for k, v in model.state_dict().items() if "weight_mask" not in k})
        return real_train(model, *args, **kwargs)

    monkeypatch.setattr(checkpoints, "_train", record)
    tmp = study_config["data_dir"]
    checkpoints.train_control(out=f"{tmp}/control.safetensors", recipe="snip", recovery={},
                              snip=study_config["pruning"]["snip"], **_job_args(study_config))
    checkpoints.prune_and_recover(out=f"{tmp}/snip.safetensors", method="snip", sparsity="0.5", exclude=[],
                                  recovery={}, snip=study_config["pruning"]["snip"], **_job_args(study_config))
    control_start, snip_start = seen
    for name, value in control_start.items():
        pruned_name = name + "_orig" if name + "_orig" in snip_start else name
        torch.testing.assert_close(snip_start[pruned_name], value, rtol=0, atol=0)
    # timm zero-initialises the last BatchNorm scale of each block; both start with it at one
    assert all(v.any() for k, v in control_start.items() if k.endswith("bn2.weight"))


def test_finetune_control_is_the_dense_model_trained_with_the_recovery_recipe(study_config):
    tmp = study_config["data_dir"]
    args = _job_args(study_config)
    checkpoints.train_dense(out=f"{tmp}/dense.safetensors", **args)
    recovery = study_config["pruning"]["recovery"]
    checkpoints.train_control(out=f"{tmp}/control.safetensors", recipe="finetune", recovery=recovery, snip={},
                              dense=f"{tmp}/dense.safetensors", **args)
    # by hand: the dense weights, fine-tuned with the recovery epochs and learning rate, seed 0
    expected, _ = models.load_checkpoint(f"{tmp}/dense.safetensors", args["arch_cfg"])
    images, labels, _, _ = registry.train_split(args["data"], args["data"]["image_size"])
    training.train(expected, images, labels, preprocess=models.preprocess_for(expected, args["arch_cfg"], 48),
                   epochs=recovery["epochs"], lr=recovery["lr"], batch_size=args["schedule"]["batch_size"],
                   weight_decay=args["schedule"].get("weight_decay", 0.0), seed=0, device="cpu")
    got = _weights(f"{tmp}/control.safetensors")
    for name, value in expected.state_dict().items():
        torch.testing.assert_close(got[name], value, rtol=0, atol=0)
    _, sidecar = models.load_checkpoint(f"{tmp}/control.safetensors", args["arch_cfg"])
    assert sidecar["method"] == "control-finetune" and sidecar["parent"].endswith("dense.safetensors")


@pytest.fixture
def pretrained_study(study_config, tmp_path):
    """A 'pretrained' test_resnet whose BatchNorm statistics are off, with BatchNorm recovery."""
    torch.manual_seed(1)
    model = models.create(RESNET_FILE, 8)
    for module in model.modules():
        if isinstance(module, torch.nn.BatchNorm2d):  # statistics of some other data
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    weights_path = tmp_path / "pretrained.safetensors"
    save_file(model.state_dict(), str(weights_path))
    study_config["architectures"] = {"resnet": {**RESNET_FILE, "weights_path": str(weights_path)}}
    return study_config


def _bn(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items() if "running_" in k}


def test_bn_control_and_pruned_model_are_calibrated_on_items_they_are_never_evaluated_on(pretrained_study, tmp_path):
    """Cross-fitting on an evaluation dataset: two halves, each model scores only the other half."""
    config = pretrained_study
    recovery = {"mode": "bn", "calibration_dataset": "synthetic-val", "calibration_images": 6}
    args = _job_args(config)
    checkpoints.train_dense(out=str(tmp_path / "dense.safetensors"), **args)
    checkpoints.train_control(out=str(tmp_path / "control.safetensors"), recipe="bn", recovery=recovery, snip={},
                              dense=str(tmp_path / "dense.safetensors"), **args)
    checkpoints.prune_and_recover(out=str(tmp_path / "pruned.safetensors"), method="magnitude", sparsity="0.5",
                                  exclude=[], recovery=recovery, snip={}, start=str(tmp_path / "dense.safetensors"),
                                  **args)
    dense, _ = models.load_checkpoint(tmp_path / "dense.safetensors", args["arch_cfg"])
    for name in ("control", "pruned"):
        path = tmp_path / f"{name}.safetensors"
        model, sidecar = models.load_checkpoint(path, args["arch_cfg"])
        folds = sidecar["calibration"]["folds"]
        assert sidecar["calibration"]["dataset"] == "synthetic-val" and len(folds) == 2
        assert folds[0] and folds[1] and not set(folds[0]) & set(folds[1])
        assert all(checkpoints.crossfit_fold(item) == k for k, fold in enumerate(folds) for item in fold)
        twin = models.crossfit_twin(model, path)
        assert any(not torch.equal(a, b) for a, b in zip(_bn(model).values(), _bn(twin).values()))
        # the re-estimation moved the pretrained statistics (the plain dense keeps them)
        assert any(not torch.equal(a, b) for a, b in zip(_bn(model).values(), _bn(dense).values()))

        # The evaluation job gives each item to the model that was not calibrated on it: the
        # scores equal scoring fold 1 with the fold-0 model and fold 0 with the fold-1 model.
        out = tmp_path / f"{name}-accuracy.parquet"
        evaluation.evaluate_task(out=str(out), task="accuracy", settings={"datasets": ["synthetic-val"]},
                                 method=sidecar["method"], sparsity=str(sidecar["sparsity"]).rstrip("0").rstrip(".")
                                 if sidecar["sparsity"] else "0", checkpoint=str(path), arch="resnet",
                                 arch_cfg=args["arch_cfg"], seed=0, data=args["data"], device="cpu", amp=False)
        scored = pd.read_parquet(out).set_index("item")
        samples = {s.item: s for s in registry.load_eval("synthetic-val", args["data"], 48)}
        preprocess = models.preprocess_for(model, args["arch_cfg"], 48)
        for item, row in scored[scored["metric"] == "top1"].iterrows():
            chosen = twin if item in folds[0] else model
            assert item not in folds[1 if chosen is twin else 0]
            logits = training.predict_logits(chosen, samples[item].image[None], preprocess=preprocess, batch_size=1,
                                             device="cpu")
            assert row["value"] == float(logits.argmax(1).item() == samples[item].label)


def test_an_item_every_model_was_calibrated_on_is_refused(pretrained_study, tmp_path):
    config = pretrained_study
    args = _job_args(config)
    checkpoints.train_dense(out=str(tmp_path / "dense.safetensors"), **args)
    model, sidecar = models.load_checkpoint(tmp_path / "dense.safetensors", args["arch_cfg"])
    samples = registry.load_eval("synthetic-val", args["data"], 48)
    sidecar["calibration"] = {"dataset": "synthetic-val", "folds": [[s.item for s in samples]]}
    models.save_checkpoint(tmp_path / "calibrated.safetensors", model, sidecar)
    with pytest.raises(RuntimeError, match="calibrated on it; the study must not evaluate a model on its calibration"):
        evaluation.evaluate_task(out=str(tmp_path / "x.parquet"), task="accuracy",
                                 settings={"datasets": ["synthetic-val"]}, method="dense", sparsity="0",
                                 checkpoint=str(tmp_path / "calibrated.safetensors"), arch="resnet",
                                 arch_cfg=args["arch_cfg"], seed=0, data=args["data"], device="cpu", amp=False)
    assert not (tmp_path / "x.parquet").exists()


def test_the_plain_dense_model_keeps_its_pretrained_statistics(pretrained_study, tmp_path):
    args = _job_args(pretrained_study)
    checkpoints.train_dense(out=str(tmp_path / "dense.safetensors"), **args)
    dense, sidecar = models.load_checkpoint(tmp_path / "dense.safetensors", args["arch_cfg"])
    pretrained = models.load_state(pretrained_study["architectures"]["resnet"]["weights_path"])
    for name, value in _bn(dense).items():
        assert torch.equal(value, pretrained[name])
    assert "calibration" not in sidecar and np.isclose(sidecar["sparsity_actual"], 0.0)


def test_a_method_capped_to_n_images_explains_the_jobs_first_n_not_n_per_cross_fitted_model(pretrained_study,
                                                                                             tmp_path):
    """`n_images_by_method` counts the job's images: a cross-fitted checkpoint's two models share them."""
    args = _job_args(pretrained_study)
    recovery = {"mode": "bn", "calibration_dataset": "synthetic-val", "calibration_images": 6}
    checkpoints.train_dense(out=str(tmp_path / "dense.safetensors"), **args)
    checkpoints.train_control(out=str(tmp_path / "control.safetensors"), recipe="bn", recovery=recovery, snip={},
                              dense=str(tmp_path / "dense.safetensors"), **args)
    settings = {"datasets": ["synthetic-val"], "n_images": 12, "n_images_by_method": {"gradcam": 5},
                "methods": ["saliency", "gradcam"], "target": "predicted", "pooling": "l2sq", "ig_steps": 4,
                "smoothgrad_samples": 1, "smoothgrad_stdev": 0.1, "deletion_steps": 2, "batch_size": 4}
    out = tmp_path / "interpretability.parquet"
    evaluation.evaluate_task(out=str(out), task="interpretability", settings=settings, method="control-bn",
                             sparsity="0", checkpoint=str(tmp_path / "control.safetensors"), arch="resnet",
                             arch_cfg=args["arch_cfg"], seed=0, data=args["data"], device="cpu", amp=False)
    rows = pd.read_parquet(out)
    ordered = evaluation.subset(registry.load_eval("synthetic-val", args["data"], 48), 12)
    _, sidecar = models.load_checkpoint(tmp_path / "control.safetensors", args["arch_cfg"])
    first = [s.item for s in ordered[:5]]
    assert {s in sidecar["calibration"]["folds"][0] for s in first} == {True, False}  # both models explain some
    assert set(rows.loc[rows["variant"] == "gradcam", "item"]) == set(first)
    assert set(rows.loc[rows["variant"] == "saliency", "item"]) == {s.item for s in ordered}
