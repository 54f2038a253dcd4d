"""Small deterministic training, BatchNorm re-estimation and inference on in-memory uint8 images.

Images are uint8 NHWC numpy arrays already at the model's input size, or LazyImages (read
on demand; they also crop themselves for training); a `Preprocess` turns a batch into the
normalised tensor on the target device. All randomness of a training run (shuffling,
augmentation, dropout) derives from its `seed`, so the same call gives bit-identical weights
on CPU and leaves the global RNGs untouched.
"""

from __future__ import annotations

import logging
import math
import sys
from typing import Any, Callable, Mapping

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from .runtime.device import autocast
from .models import Preprocess

logger = logging.getLogger(__name__)


def _check_images(images: np.ndarray, labels: np.ndarray | None = None) -> None:
    """`images` is a uint8 (N, H, W, 3) array, or an object that indexes like one (LazyImages)."""
    shape = tuple(getattr(images, "shape", ()))
    if getattr(images, "dtype", None) != np.uint8 or len(shape) != 4 or shape[-1] != 3:
        shape = getattr(images, "shape", None)
        dtype = getattr(images, "dtype", type(images).__name__)
        raise ValueError(f"images must be a uint8 numpy array of shape (N, H, W, 3); got {dtype} {shape}")
    if len(images) == 0:
        raise ValueError("images is empty: there is nothing to train on or predict")
    if labels is not None:
        labels = np.asarray(labels)
        if labels.shape != (len(images),) or not np.issubdtype(labels.dtype, np.integer):
            raise ValueError(f"labels must be integers of shape ({len(images)},) to match the images; "
                             f"got {labels.dtype} {labels.shape}")


def _batches(order: np.ndarray, batch_size: int) -> list[np.ndarray]:
    """Near-equal batches of at most `batch_size` covering every index (no size-1 tail for BatchNorm)."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    return np.array_split(order, max(1, math.ceil(len(order) / batch_size)))


OPTIMIZERS = ("adamw", "sgd")
LR_SCHEDULES = ("cosine", "step")
# The keyword arguments of `train` that a training recipe in the config sets (dense, architectures.<x>.train,
# pruning.recovery), under the same names.
RECIPE_KEYS = ("epochs", "batch_size", "lr", "weight_decay", "label_smoothing", "augment", "optimizer", "momentum",
               "lr_schedule", "warmup_fraction", "step_epochs", "step_gamma")


def recipe_kwargs(recipe: Mapping[str, Any]) -> dict[str, Any]:
    """The `train` keyword arguments a config recipe sets; other keys (a recovery's mode) are not training's."""
    return {key: recipe[key] for key in RECIPE_KEYS if key in recipe}


def _lr_factor(step: int, total: int, warmup: int, schedule: str = "cosine", steps_per_epoch: int = 1,
               step_epochs: int = 30, step_gamma: float = 0.1) -> float:
    """Linear warmup to 1, then "cosine" decay to 0 at the last step, or "step" decay: times
    step_gamma every step_epochs epochs (counted from the start, warmup included)."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "step":
        return step_gamma ** (step // steps_per_epoch // step_epochs)
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def _optimizer(name: str, groups: list[dict[str, Any]], lr: float, momentum: float) -> torch.optim.Optimizer:
    if name == "adamw":
        return torch.optim.AdamW(groups, lr=lr)
    if name == "sgd":
        return torch.optim.SGD(groups, lr=lr, momentum=momentum)
    raise ValueError(f"optimizer {name!r} unknown; choose from {', '.join(OPTIMIZERS)}")


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Decay only matrices and kernels; biases, norms and timm's no-decay tokens keep their scale."""
    skip = set(model.no_weight_decay()) if hasattr(model, "no_weight_decay") else set()
    decay, no_decay = [], []
    for name, param in model.named_parameters():
        if not param.requires_grad:
            continue
        (no_decay if param.ndim <= 1 or name in skip else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def _augment(x: torch.Tensor, rng: np.random.Generator) -> torch.Tensor:
    """Random horizontal flip and translation by up to 1/8 of the side, vectorised over the batch.

    Translation pads with zeros in normalised space (the dataset mean colour) and crops back.
    """
    n, _, h, w = x.shape
    flip = torch.as_tensor(rng.random(n) < 0.5, device=x.device)
    x = torch.where(flip.view(n, 1, 1, 1), x.flip(3), x)
    pad = max(h, w) // 8
    if pad == 0:
        return x
    shift = torch.as_tensor(rng.integers(0, 2 * pad + 1, size=(n, 2)), device=x.device)
    padded = nn.functional.pad(x, (pad, pad, pad, pad))
    rows = shift[:, 0:1] + torch.arange(h, device=x.device)  # (n, h)
    cols = shift[:, 1:2] + torch.arange(w, device=x.device)  # (n, w)
    batch = torch.arange(n, device=x.device).view(n, 1, 1)
    # advanced indices around the channel slice put (n, h, w) first: result is (n, h, w, c)
    return padded[batch, :, rows[:, :, None], cols[:, None, :]].permute(0, 3, 1, 2).contiguous()


def train(model: nn.Module, images: np.ndarray, labels: np.ndarray, *, preprocess: Preprocess, epochs: int,
          batch_size: int, lr: float, weight_decay: float = 0.0, label_smoothing: float = 0.0, seed: int = 0,
          device: torch.device | str, amp: bool = False, augment: bool = True, warmup_fraction: float = 0.1,
          optimizer: str = "adamw", momentum: float = 0.9, lr_schedule: str = "cosine", step_epochs: int = 30,
          step_gamma: float = 0.1, log: Callable[[dict[str, float]], None] | None = None) -> dict[str, list[float]]:
    """Train with a fresh schedule; returns per-epoch loss and train accuracy.

    `optimizer` "adamw" or "sgd" (with `momentum`); weight decay on matrices and kernels only.
    The learning rate warms up linearly over `warmup_fraction` of the steps, then follows
    `lr_schedule`: "cosine" to 0 at the last step, or "step", times `step_gamma` every
    `step_epochs` epochs (the paper: SGD, lr 0.1, momentum 0.9, x0.1 every 30 epochs).
    A fresh schedule per call is learning-rate rewinding when called at each IMP level.
    With `augment`, images that can crop themselves (ImageNet's LazyImages: `random_crops`)
    are read as random-resized crops with flips, the standard ImageNet recipe; in-memory arrays
    are flipped and shifted (`_augment`).
    Pruning masks installed by `sweetspot.pruning` stay in force (their forward hooks).
    `log`, when given, receives {"epoch", "loss", "train_acc", "lr"} after each epoch.
    """
    history: dict[str, list[float]] = {"loss": [], "train_acc": []}
    if epochs <= 0:
        return history
    if lr_schedule not in LR_SCHEDULES:
        raise ValueError(f"lr_schedule {lr_schedule!r} unknown; choose from {', '.join(LR_SCHEDULES)}")
    _check_images(images, labels)
    device = torch.device(device)
    labels_t = torch.as_tensor(np.asarray(labels), dtype=torch.long)
    model.to(device)
    rng = np.random.default_rng(seed)
    steps_per_epoch = len(_batches(np.arange(len(images)), batch_size))
    total_steps = epochs * steps_per_epoch
    warmup = min(total_steps, max(1, math.ceil(warmup_fraction * total_steps))) if warmup_fraction > 0 else 0
    opt = _optimizer(optimizer, _param_groups(model, weight_decay), lr, momentum)
    schedule = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: _lr_factor(
        step, total_steps, warmup, lr_schedule, steps_per_epoch, step_epochs, step_gamma))
    crops = augment and hasattr(images, "random_crops")
    criterion = nn.CrossEntropyLoss(label_smoothing=label_smoothing)
    was_training = model.training
    model.train()
    fork_devices = [device] if device.type == "cuda" else []
    with torch.random.fork_rng(devices=fork_devices):
        torch.manual_seed(seed)  # dropout / drop-path draws, kept out of the caller's RNG
        bar = tqdm(range(epochs), desc="train", unit="epoch", file=sys.stderr, disable=None, leave=False)
        for epoch in bar:
            loss_sum = correct = seen = 0.0
            for index in _batches(rng.permutation(len(images)), batch_size):
                if crops:
                    x = preprocess(images.random_crops(index, rng), device)
                else:
                    x = preprocess(images[index], device)
                    if augment:
                        x = _augment(x, rng)
                y = labels_t[index].to(device)
                with autocast(device, amp):
                    logits = model(x)
                    loss = criterion(logits.float(), y)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                schedule.step()
                loss_sum += float(loss.detach()) * len(index)
                correct += float((logits.detach().argmax(1) == y).sum())
                seen += len(index)
            history["loss"].append(loss_sum / seen)
            history["train_acc"].append(correct / seen)
            record = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": correct / seen,
                      "lr": opt.param_groups[0]["lr"]}
            bar.set_postfix(loss=f"{record['loss']:.4f}", acc=f"{record['train_acc']:.3f}")
            _log_epoch(record, epochs)
            if log is not None:
                log(record)
    model.train(was_training)
    return history


def _log_epoch(record: dict[str, float], epochs: int) -> None:
    logger.info("epoch %d/%d loss %.4f train_acc %.4f lr %.3g",
             record["epoch"], epochs, record["loss"], record["train_acc"], record["lr"])


def _has_batchnorm(model: nn.Module) -> bool:
    return any(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in model.modules())


def bn_reestimate(model: nn.Module, images: np.ndarray, *, preprocess: Preprocess, batch_size: int,
                  device: torch.device | str) -> nn.Module:
    """Reset BatchNorm running statistics and re-estimate them over `images` (no augmentation).

    torch.optim.swa_utils.update_bn does the work: train mode, no_grad, momentum=None so
    the running mean/var are the plain average of the per-batch statistics; momenta and the
    train/eval mode are restored afterwards. Models without BatchNorm are left as they are.
    """
    if not _has_batchnorm(model):
        logger.info("bn_reestimate: model has no BatchNorm layers; nothing to re-estimate")
        return model
    _check_images(images)
    device = torch.device(device)
    model.to(device)
    batches = (preprocess(images[index], device) for index in _batches(np.arange(len(images)), batch_size))
    torch.optim.swa_utils.update_bn(batches, model)
    logger.info("bn_reestimate: BatchNorm statistics re-estimated on %d images", len(images))
    return model


def predict_logits(model: nn.Module, images: np.ndarray, *, preprocess: Preprocess, batch_size: int,
                   device: torch.device | str, amp: bool = False) -> torch.Tensor:
    """Logits (N, C), float32 on CPU, in eval mode under inference_mode; the model's mode is restored."""
    _check_images(images)
    device = torch.device(device)
    model.to(device)
    was_training = model.training
    model.eval()
    outputs = []
    try:
        with torch.inference_mode(), autocast(device, amp):
            for start in range(0, len(images), max(1, batch_size)):
                x = preprocess(images[start:start + batch_size], device)
                outputs.append(model(x).float().cpu())
    finally:
        model.train(was_training)
    return torch.cat(outputs)
