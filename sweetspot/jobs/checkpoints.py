"""Jobs that write a checkpoint: the dense model, its matched controls and the pruned models.

Each job takes exactly its rule's params (plus `threads` and `reuse_freed_memory`, which change
how it runs, not what it computes), seeds everything from its seed and writes its checkpoint
atomically: safetensors weights with the zeros applied and a JSON sidecar saying what they are.

The matched control of a pruned model (docs/methods.md, "Matched controls") is the dense model
trained exactly like it, minus the mask:
- fine-tune recovery (magnitude, random, IMP): the dense model fine-tuned with the recovery recipe
  (IMP level k had k such rounds; its control one);
- BatchNorm recovery: the dense model with the same re-estimation;
- SNIP: the same initialisation trained with SNIP's schedule.
"""

from __future__ import annotations

import hashlib
import logging
import time
from typing import Any, Mapping, Sequence

import numpy as np
import torch

from .. import contract, models, pruning, training, weights
from ..data import registry
from ..runtime import device as devmod


log = logging.getLogger("sweetspot")


def train_dense(*, out: str, arch: str, arch_cfg: Mapping, seed: int, data: Mapping, schedule: Mapping,
                device: str, amp: bool, threads: int = 1, reuse_freed_memory: bool = True) -> None:
    """Train the dense model from the seed's initialisation, or load its pretrained weights."""
    dev = _setup(threads, seed, reuse_freed_memory, device)
    started = time.time()
    extra: dict[str, Any] = {"weights": arch_cfg.get("weights", "scratch")}
    if arch_cfg.get("weights", "scratch") == "scratch":
        images, labels, _, classes = registry.train_split(data, data["image_size"])
        model = models.initial_model(arch_cfg, _num_classes(arch_cfg, classes), seed).to(dev)
        log.info("training %s (%s) from scratch: %d images, %d classes, %d outputs, seed %d, device %s",
                 arch, arch_cfg["timm"], len(images), len(classes), model.num_classes, seed, dev)
        extra.update(classes=list(classes), train_history=_train(model, images, labels, schedule, arch_cfg, data, seed,
                                                                 dev, amp))
    else:
        model = weights.pretrained(arch_cfg, _num_classes(arch_cfg))
        log.info("loaded pretrained %s from %s", arch_cfg["timm"], arch_cfg["weights"])
    _save(out, model, arch=arch, arch_cfg=arch_cfg, method="dense", sparsity=0.0, seed=seed, data=data,
          parent=None, started=started, extra=extra)


def train_control(*, out: str, recipe: str, arch: str, arch_cfg: Mapping, seed: int, data: Mapping,
                  recovery: Mapping, snip: Mapping, schedule: Mapping, device: str, amp: bool, dense: str | None = None,
                  threads: int = 1, reuse_freed_memory: bool = True) -> None:
    """The dense model trained with `recipe` ("finetune", "bn" or "snip"), minus any mask."""
    dev = _setup(threads, seed, reuse_freed_memory, device)
    started = time.time()
    if recipe == "snip":
        images, labels, _, classes = registry.train_split(data, data["image_size"])
        model = _snip_initialisation(arch_cfg, classes, seed, arch).to(dev)
        history = _train(model, images, labels, {**schedule, "epochs": snip_epochs(snip, schedule)}, arch_cfg, data,
                         seed, dev, amp)
        extra: dict[str, Any] = {"recovery": "snip schedule", "train_history": history}
        parent = None
    else:
        model, _ = models.load_checkpoint(dense, arch_cfg, expect={"arch": arch, "method": "dense", "seed": seed})
        model.to(dev)
        extra = _recover(model, {**recovery, "mode": recipe}, schedule, arch_cfg, data, seed, dev, amp)
        parent = str(dense)
    _save(out, model, arch=arch, arch_cfg=arch_cfg, method=f"control-{recipe}", sparsity=0.0, seed=seed, data=data,
          parent=parent, started=started, extra=extra)


def prune_and_recover(*, out: str, method: str, sparsity: str, arch: str, arch_cfg: Mapping, seed: int,
                      data: Mapping, exclude: list, recovery: Mapping, snip: Mapping, schedule: Mapping, device: str,
                      amp: bool, start: str | None = None, threads: int = 1, reuse_freed_memory: bool = True) -> None:
    """Prune to `sparsity` and recover; `start` is the dense (or, for IMP, the previous level's) checkpoint.

    SNIP prunes the seed's initialisation (with zero-initialised norm scales reset, so that every
    weight has a gradient) and then trains with its schedule, like its control.
    """
    dev = _setup(threads, seed, reuse_freed_memory, device)
    target = float(sparsity)
    started = time.time()
    if method == "snip":
        images, labels, _, classes = registry.train_split(data, data["image_size"])
        model = _snip_initialisation(arch_cfg, classes, seed, arch).to(dev)
        preprocess = models.preprocess_for(model, arch_cfg, data["image_size"])
        batches = list(_snip_batches(images, labels, snip, schedule, preprocess, dev, seed))
        pruning.prune(model, "snip", target, exclude=exclude, batches=batches,
                      loss_fn=torch.nn.functional.cross_entropy, seed=seed, name=f"{arch} ({arch_cfg['timm']})")
        epochs = snip_epochs(snip, schedule)
        log.info("SNIP at initialisation to %.4f, then %d epochs of training", target, epochs)
        extra: dict[str, Any] = {"recovery": "snip schedule",
                                 "train_history": _train(model, images, labels, {**schedule, "epochs": epochs},
                                                         arch_cfg, data, seed, dev, amp)}
        parent = None
    else:
        model, _ = models.load_checkpoint(start, arch_cfg, expect={"arch": arch, "seed": seed})
        model.to(dev)
        pruning.prune(model, method, target, exclude=exclude, seed=seed)
        log.info("%s pruning of %s to %.4f from %s; recovery %s", method, arch, target, start, recovery["mode"])
        extra = _recover(model, recovery, schedule, arch_cfg, data, seed, dev, amp)
        parent = str(start)
    pruning.finalize(model)
    measured = pruning.measured_sparsity(model, exclude)
    if abs(measured - target) > 0.005:
        raise RuntimeError(f"measured sparsity {measured:.4f} is more than 0.5 points from {target}")
    _save(out, model, arch=arch, arch_cfg=arch_cfg, method=method, sparsity=target, seed=seed, data=data,
          parent=parent, started=started, extra=extra, exclude=exclude)


def snip_epochs(snip: Mapping, schedule: Mapping) -> int:
    """Epochs of SNIP's training (and of its control's): a fraction of the dense schedule."""
    return max(1, round(float(snip.get("epochs_fraction", 1.0)) * int(schedule["epochs"])))


def crossfit_fold(item: str) -> int:
    """The cross-fitting half (0 or 1) of an item: a hash, so the halves mix classes and conditions."""
    return hashlib.sha1(item.encode()).digest()[0] % 2


# --- internals ---------------------------------------------------------------------------------


def _setup(threads: int, seed: int, reuse_freed_memory: bool, device: str) -> torch.device:
    devmod.setup(threads, seed, reuse_freed_memory)
    return devmod.resolve(device)


def _num_classes(arch_cfg: Mapping, train_classes: Sequence[str] | None = None) -> int:
    """The classifier's outputs: architectures.<x>.num_classes, else the train split's classes for a
    model trained here, else ImageNet-1k's 1000."""
    if arch_cfg.get("num_classes"):
        return int(arch_cfg["num_classes"])
    return 1000 if train_classes is None else len(train_classes)


def _snip_initialisation(arch_cfg: Mapping, train_classes: Sequence[str], seed: int, arch: str) -> torch.nn.Module:
    model = models.initial_model(arch_cfg, _num_classes(arch_cfg, train_classes), seed)
    reset = models.reset_zero_init_norms(model)
    if reset:
        log.info("%s: %d zero-initialised norm scales set to 1 so that every weight has a SNIP gradient (%s ...)",
                 arch, len(reset), ", ".join(reset[:3]))
    return model


def _train(model: torch.nn.Module, images, labels, recipe: Mapping, arch_cfg: Mapping, data: Mapping, seed: int,
           dev: torch.device, amp: bool) -> dict:
    """Train with a config recipe: the architecture's schedule, with a recovery's own keys on top."""
    if int(np.max(labels)) >= model.num_classes:
        raise ValueError(f"the train split has {int(np.max(labels)) + 1} classes but the model {model.num_classes} "
                         "outputs; raise architectures.<arch>.num_classes or leave it out")
    preprocess = models.preprocess_for(model, arch_cfg, data["image_size"])
    return training.train(model, images, labels, preprocess=preprocess, seed=seed, device=dev, amp=amp,
                          **training.recipe_kwargs(recipe))


def _snip_batches(images, labels, snip: Mapping, schedule: Mapping, preprocess, dev: torch.device, seed: int):
    order = np.random.default_rng(seed).permutation(len(images))
    size = schedule["batch_size"]
    for b in range(int(snip.get("batches", 1))):
        index = order[b * size:(b + 1) * size]
        if len(index) == 0:
            break
        yield preprocess(images[index], dev), torch.as_tensor(labels[index], device=dev)


def _recover(model: torch.nn.Module, recovery: Mapping, schedule: Mapping, arch_cfg: Mapping, data: Mapping,
             seed: int, dev: torch.device, amp: bool) -> dict[str, Any]:
    """Apply the recovery recipe to `model` in place; returns what the sidecar records of it."""
    mode = recovery.get("mode", "finetune")
    if mode == "finetune" and recovery.get("epochs", 0) > 0:
        images, labels, _, _ = registry.train_split(data, data["image_size"])
        # A fresh schedule per call: learning-rate rewinding when called at each IMP level.
        history = _train(model, images, labels, {**schedule, **training.recipe_kwargs(recovery)}, arch_cfg, data,
                         seed, dev, amp)
        return {"recovery": "finetune", "train_history": history}
    if mode == "bn":
        return {"recovery": "bn", **_calibrate(model, recovery, schedule, arch_cfg, data, dev)}
    return {"recovery": "none"}


def _calibrate(model: torch.nn.Module, recovery: Mapping, schedule: Mapping, arch_cfg: Mapping, data: Mapping,
               dev: torch.device) -> dict[str, Any]:
    """Re-estimate BatchNorm statistics on images the study never evaluates with this model.

    From the train split when there is one. From an evaluation dataset (recovery.calibration_dataset)
    by cross-fitting: the model is calibrated on one half of its items and, separately, on the
    other; the evaluation job scores each item with the half that did not see it. The second
    half's statistics travel in the checkpoint (`crossfit.`-prefixed buffers).
    """
    size, n = data["image_size"], int(recovery.get("calibration_images", 512))
    preprocess = models.preprocess_for(model, arch_cfg, size)
    batch_size = schedule.get("batch_size", 64)
    name = recovery.get("calibration_dataset")
    if name is None:
        images, _, items, _ = registry.train_split(data, size)
        training.bn_reestimate(model, images[:n], preprocess=preprocess, batch_size=batch_size, device=dev)
        return {"calibration": {"dataset": "train", "folds": [list(items[:n])]}}
    samples = sorted(registry.load_eval(name, data, size), key=lambda s: hashlib.sha1(s.item.encode()).hexdigest())
    folds = [[s for s in samples if crossfit_fold(s.item) == k][:n] for k in (0, 1)]
    # update_bn resets the statistics before each estimate: calibrate on the second half, keep a
    # copy of those buffers, then calibrate the model itself on the first half.
    training.bn_reestimate(model, np.stack([s.image for s in folds[1]]), preprocess=preprocess, batch_size=batch_size,
                           device=dev)
    other = {f"crossfit.{k}": v.detach().cpu().clone() for k, v in model.named_buffers()
             if not k.endswith("_mask")}  # pruning masks are buffers until finalize
    training.bn_reestimate(model, np.stack([s.image for s in folds[0]]), preprocess=preprocess, batch_size=batch_size,
                           device=dev)
    return {"calibration": {"dataset": name, "folds": [[s.item for s in fold] for fold in folds]},
            "crossfit_buffers": other}


def _save(out: str, model: torch.nn.Module, *, arch: str, arch_cfg: Mapping, method: str, sparsity: float, seed: int,
          data: Mapping, parent: str | None, started: float, extra: Mapping[str, Any], exclude: list = ()) -> None:
    extra = dict(extra)
    buffers = extra.pop("crossfit_buffers", {})
    layers = pruning.layer_sparsity(model)
    collapsed = pruning.collapsed_units(layers)
    if collapsed:
        log.warning("%s %s at %g: %d layers pruned to 100%%: %s", arch, method, sparsity, len(collapsed),
                    ", ".join(collapsed[:5]))
    sidecar = {
        "arch": arch, "timm": arch_cfg["timm"], "method": method, "sparsity": float(sparsity),
        "sparsity_actual": pruning.measured_sparsity(model, exclude), "exclude": list(exclude), "seed": int(seed),
        "parent": parent, "num_classes": int(model.num_classes), "layer_sparsity": layers, "collapsed_layers": collapsed,
        "config_hash": contract.config_hash({"arch": arch_cfg, "data": data, "extra": {k: v for k, v in extra.items()
                                                                                         if k != "train_history"}}),
        "versions": contract.package_versions(), "seconds": round(time.time() - started, 2), **extra,
    }
    models.save_checkpoint(out, model.cpu(), sidecar, extra_tensors=buffers)
    log.info("wrote %s (%s, sparsity %.4f)", out, method, sidecar["sparsity_actual"])
