"""The workflow's model jobs as functions: train, prune, evaluate (report_jobs.py has the rest).

Every job seeds everything from its seed, pins its thread count, loads its checkpoint once
and writes its outputs atomically; the runtime (`warmstart.run`) sends its logging to the
rule's log file.
"""

from __future__ import annotations

import hashlib
import logging
import time
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import torch

from .. import study as cfgmod
from .. import artifacts as io, contract, models, pruning, training, weights
from ..runtime import device as devmod
from ..data import registry
from ..data.samples import Sample

log = logging.getLogger("sweetspot")


def _num_classes(config: Mapping, arch_cfg: Mapping) -> int:
    if arch_cfg.get("weights", "scratch") != "scratch":
        return int(arch_cfg.get("num_classes", 1000))
    if config["benchmark"] == "synthetic":
        manifest = io.read_json(Path(config["data_dir"]) / "synthetic" / "classes.json")
        return len(manifest["classes"])
    return int(arch_cfg.get("num_classes", 1000))


def _train_split(config: Mapping):
    return registry.train_split(config, cfgmod.image_size(config))


def _sidecar(config: Mapping, arch: str, method: str, sparsity: float, seed: int, model: torch.nn.Module,
             parent: str | None, extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    arch_cfg = config["architectures"][arch]
    exclude = config["pruning"].get("exclude", [])
    return {
        "arch": arch,
        "timm": arch_cfg["timm"],
        "method": method,
        "sparsity": float(sparsity),
        "sparsity_actual": pruning.measured_sparsity(model, exclude),
        "exclude": list(exclude),
        "seed": int(seed),
        "parent": parent,
        "num_classes": _num_classes(config, arch_cfg),
        "config_hash": contract.config_hash({"arch": arch_cfg, "dense": config.get("dense"),
                                             "pruning": config.get("pruning"), "synthetic": config.get("synthetic")}),
        "versions": contract.package_versions(),
        **(extra or {}),
    }


def _train_kwargs(config: Mapping, arch: str, device: torch.device, seed: int) -> dict[str, Any]:
    plan = cfgmod.schedule(config, arch)
    return dict(batch_size=plan["batch_size"], weight_decay=plan["weight_decay"],
                label_smoothing=plan["label_smoothing"], augment=plan.get("augment", True),
                seed=seed, device=device, amp=config.get("amp", True))


def dense_job(config: Mapping, arch: str, seed: int, out: str | Path, threads: int = 1) -> None:
    """Train the dense model from scratch with `seed`, or load its pretrained weights."""
    devmod.setup(threads, seed, config.get("reuse_freed_memory", True))
    device = devmod.resolve(config.get("device", "auto"))
    arch_cfg = config["architectures"][arch]
    started = time.time()
    extra: dict[str, Any] = {"weights": arch_cfg.get("weights", "scratch")}
    if arch_cfg.get("weights", "scratch") == "scratch":
        images, labels, _, classes = _train_split(config)
        model = models.create(arch_cfg, len(classes)).to(device)
        preprocess = models.preprocess_for(model, arch_cfg, cfgmod.image_size(config))
        log.info("training %s (%s) from scratch: %d images, %d classes, seed %d, device %s",
                 arch, arch_cfg["timm"], len(images), len(classes), seed, device)
        plan = cfgmod.schedule(config, arch)
        history = training.train(model, images, labels, preprocess=preprocess, epochs=plan["epochs"],
                                 lr=plan["lr"], **_train_kwargs(config, arch, device, seed))
        extra.update(classes=list(classes), train_history=history)
    else:
        model = weights.pretrained(arch_cfg, _num_classes(config, arch_cfg))
        log.info("loaded pretrained %s from %s", arch_cfg["timm"], arch_cfg["weights"])
    if config["pruning"].get("recovery", {}).get("mode") == "bn":
        # Every pruned model gets its BatchNorm statistics re-estimated on the calibration
        # images; the dense reference gets the same, so a difference measures pruning alone.
        _bn_reestimate(config, arch, model, device)
        extra["recovery"] = "bn"
    extra["seconds"] = round(time.time() - started, 2)
    models.save_checkpoint(out, model.cpu(), _sidecar(config, arch, "dense", 0.0, seed, model, None, extra))


def _snip_batches(config: Mapping, arch: str, images: np.ndarray, labels: np.ndarray, preprocess, device, seed: int):
    rng = np.random.default_rng(seed)
    order = rng.permutation(len(images))
    bs = cfgmod.schedule(config, arch)["batch_size"]
    for b in range(config["pruning"].get("snip", {}).get("batches", 1)):
        idx = order[b * bs:(b + 1) * bs]
        if len(idx) == 0:
            break
        yield preprocess(images[idx], device), torch.as_tensor(labels[idx], device=device)


def prune_job(config: Mapping, arch: str, method: str, sparsity: str, seed: int, start: str | Path | None,
              out: str | Path, threads: int = 1) -> None:
    """Prune to `sparsity` and recover; `start` is the dense (or, for IMP, the previous) checkpoint."""
    devmod.setup(threads, seed, config.get("reuse_freed_memory", True))
    device = devmod.resolve(config.get("device", "auto"))
    arch_cfg = config["architectures"][arch]
    target = float(sparsity)
    exclude = config["pruning"].get("exclude", [])
    recovery = config["pruning"].get("recovery", {})
    size = cfgmod.image_size(config)
    started = time.time()
    num_classes = _num_classes(config, arch_cfg)
    if method == "snip":
        # SNIP prunes at initialisation: the same initial weights as the dense model of this seed.
        images, labels, _, _ = _train_split(config)
        model = models.create(arch_cfg, num_classes).to(device)
        preprocess = models.preprocess_for(model, arch_cfg, size)
        batches = list(_snip_batches(config, arch, images, labels, preprocess, device, seed))
        pruning.prune(model, "snip", target, exclude=exclude, batches=batches,
                      loss_fn=torch.nn.functional.cross_entropy)
        plan = cfgmod.schedule(config, arch)
        fraction = config["pruning"].get("snip", {}).get("epochs_fraction", 1.0)
        epochs = max(1, round(fraction * plan["epochs"]))
        log.info("SNIP at initialisation to %.4f, then %d epochs of training", target, epochs)
        training.train(model, images, labels, preprocess=preprocess, epochs=epochs, lr=plan["lr"],
                       **_train_kwargs(config, arch, device, seed))
        parent = None
    else:
        model, _ = models.load_checkpoint(start, arch_cfg, expect={"arch": arch, "seed": seed})
        model.to(device)
        preprocess = models.preprocess_for(model, arch_cfg, size)
        pruning.prune(model, method, target, exclude=exclude, seed=seed)
        mode = recovery.get("mode", "finetune")
        log.info("%s pruning of %s to %.4f from %s; recovery %s", method, arch, target, start, mode)
        if mode == "finetune" and recovery.get("epochs", 0) > 0:
            images, labels, _, _ = _train_split(config)
            # IMP with learning-rate rewinding: every level restarts the schedule (train() does).
            training.train(model, images, labels, preprocess=preprocess, epochs=recovery["epochs"],
                           lr=recovery["lr"], **_train_kwargs(config, arch, device, seed))
        elif mode == "bn":
            _bn_reestimate(config, arch, model, device)
        parent = str(start)
    pruning.finalize(model)
    sidecar = _sidecar(config, arch, method, target, seed, model, parent,
                       {"recovery": recovery.get("mode", "finetune"), "seconds": round(time.time() - started, 2)})
    if abs(sidecar["sparsity_actual"] - target) > 0.005:
        raise RuntimeError(f"measured sparsity {sidecar['sparsity_actual']:.4f} is more than 0.5 points from {target}")
    models.save_checkpoint(out, model.cpu(), sidecar)


def _bn_reestimate(config: Mapping, arch: str, model: torch.nn.Module, device: torch.device) -> None:
    size = cfgmod.image_size(config)
    training.bn_reestimate(model, _calibration_images(config, size),
                           preprocess=models.preprocess_for(model, config["architectures"][arch], size),
                           batch_size=cfgmod.schedule(config, arch)["batch_size"], device=device)


def _calibration_images(config: Mapping, size: int) -> np.ndarray:
    """Images for BatchNorm re-estimation: the train split, or a configured dataset."""
    recovery = config["pruning"].get("recovery", {})
    name = recovery.get("calibration_dataset")
    n = recovery.get("calibration_images", 512)
    if name is None:
        images, _, _, _ = _train_split(config)
        return images[:n]
    samples = subset(registry.load_eval(name, config, size), n)
    return np.stack([s.image for s in samples])


def subset(samples: list[Sample], n: int | None) -> list[Sample]:
    """A deterministic, class-mixed subset: order by a hash of the item name, take n."""
    ordered = sorted(samples, key=lambda s: hashlib.sha1(s.item.encode()).hexdigest())
    return ordered if n is None else ordered[:n]


# Alignment datasets that are made here from another dataset's images.
DERIVED_DATASETS = {"synthetic-distortions": "synthetic-val"}


class _EvalContext:
    """What every task of one evaluate job shares: the model, data and label mapping."""

    def __init__(self, config: Mapping, arch: str, seed: int, model: torch.nn.Module, device: torch.device):
        self.config, self.arch, self.seed, self.model, self.device = config, arch, seed, model, device
        self.arch_cfg = config["architectures"][arch]
        self.size = cfgmod.image_size(config)
        self.preprocess = models.preprocess_for(model, self.arch_cfg, self.size)
        self._samples: dict[str, list[Sample]] = {}

    def samples(self, name: str) -> list[Sample]:
        source = DERIVED_DATASETS.get(name, name)
        if source not in self._samples:
            self._samples[source] = registry.load_eval(source, self.config, self.size)
        return self._samples[source]

    def class_groups(self, dataset: str) -> list[list[int]] | None:
        """ImageNet classifiers decide among the 16 categories by mean probability."""
        if dataset not in cfgmod.HUMAN_EXPERIMENTS or self.model.num_classes == 16:
            return None
        from ..data import geirhos

        root = registry.dataset_path(self.config, "geirhos16")
        groups = geirhos.load_categories(root)
        return [groups[name] for name in geirhos.CATEGORIES]

    def trials(self, dataset: str):
        if dataset not in cfgmod.HUMAN_EXPERIMENTS:
            return None
        from ..data import human_trials

        return human_trials.load_trials(registry.dataset_path(self.config, "geirhos16"), cfgmod.HUMAN_EXPERIMENTS[dataset])


def _skip_rows(dataset: str, variant: str, items: list[str]):
    return [{"dataset": dataset, "variant": variant, "metric": "flag_skipped", "item": item, "value": 1.0}
            for item in items]


def _run_task(task: str, ctx: _EvalContext, dataset: str, method: str) -> tuple:
    """One task on one dataset -> (frame, gallery maps or None)."""
    import pandas as pd

    cfg = dict(ctx.config["tasks"][task])
    cfg.setdefault("amp", ctx.config.get("amp", True))
    cfg.setdefault("seed", ctx.seed)
    samples = subset(ctx.samples(dataset), cfg.get("n_images"))
    kw = dict(preprocess=ctx.preprocess, device=ctx.device)
    gallery = None
    if task == "accuracy":
        from ..tasks import accuracy

        frame = accuracy.evaluate(ctx.model, samples, dataset, cfg, class_groups=ctx.class_groups(dataset),
                                  amp=cfg["amp"], **kw)
    elif task == "interpretability":
        from ..tasks import interpretability

        groups = ctx.class_groups(dataset)
        frame, skipped = interpretability.evaluate(ctx.model, samples, dataset, cfg, class_groups=groups, **kw)
        frame = pd.concat([frame, contract.task_frame(_skip_rows(dataset, "", skipped))], ignore_index=True)
        if cfg.get("gallery_images", 0) > 0:
            with_mask = [s for s in samples if s.mask is not None and s.mask.any()][: cfg["gallery_images"]]
            gallery = interpretability.gallery_maps(ctx.model, with_mask, cfg, class_groups=groups, **kw)
            gallery["images"] = np.stack([s.image for s in with_mask])
    elif task == "discovery":
        from ..tasks import discovery

        baseline = None
        cfg["baselines"] = cfg.get("baselines", True) and method == "dense"  # baselines do not depend on pruning
        if cfg["baselines"]:
            torch.manual_seed(ctx.seed)
            baseline = _discovery_model(ctx, models.create(ctx.arch_cfg, ctx.model.num_classes)).eval()
        frame, skipped = discovery.evaluate(_discovery_model(ctx, ctx.model), samples, dataset, cfg,
                                            baseline_model=baseline, **kw)
        frame = pd.concat([frame, contract.task_frame(_skip_rows(dataset, "lost", skipped))], ignore_index=True)
    elif task == "alignment":
        from ..tasks import alignment

        frame = alignment.evaluate(ctx.model, samples, dataset, cfg, class_groups=ctx.class_groups(dataset),
                                   trials=ctx.trials(dataset), distortion_seed=ctx.seed, **kw)
    else:
        raise ValueError(f"unknown task {task!r}")
    return frame, gallery


def _discovery_model(ctx: _EvalContext, model: torch.nn.Module) -> torch.nn.Module:
    """The model with a dilated last stage when tasks.discovery.output_stride asks for one."""
    stride = ctx.config["tasks"]["discovery"].get("output_stride")
    if stride is None or models.family(model) != "cnn":
        return model.to(ctx.device)
    arch_cfg = {**ctx.arch_cfg, "kwargs": {**(ctx.arch_cfg.get("kwargs") or {}), "output_stride": stride}}
    dilated = models.create(arch_cfg, model.num_classes)
    dilated.load_state_dict(model.state_dict())  # dilation changes no parameter shapes
    return dilated.eval().to(ctx.device)


def evaluate_job(config: Mapping, arch: str, method: str, sparsity: str, seed: int, checkpoint: str | Path,
                 outputs: Mapping[str, str], threads: int = 1) -> None:
    """Evaluate one checkpoint on every configured task; one Parquet file per task."""
    import pandas as pd
    from safetensors.numpy import save_file

    devmod.setup(threads, seed, config.get("reuse_freed_memory", True))
    device = devmod.resolve(config.get("device", "auto"))
    arch_cfg = config["architectures"][arch]
    model, sidecar = models.load_checkpoint(checkpoint, arch_cfg,
                                            expect={"arch": arch, "method": method, "sparsity": float(sparsity),
                                                    "seed": seed})
    model.to(device)
    ctx = _EvalContext(config, arch, seed, model, device)
    identity = dict(benchmark=config["benchmark"], arch=arch, method=method, sparsity=float(sparsity),
                    sparsity_actual=float(sidecar["sparsity_actual"]), seed=seed)
    meta = contract.provenance(config)
    for task in config["tasks"]:
        started = time.time()
        frames, gallery = [], None
        for dataset in config["tasks"][task]["datasets"]:
            frame, maps = _run_task(task, ctx, dataset, method)
            frames.append(frame)
            gallery = gallery if gallery is not None else maps
        result = contract.with_identity(pd.concat(frames, ignore_index=True), task=task, **identity)
        io.write_parquet(outputs[task], result, meta)
        log.info("%s: %d rows in %.1f s", task, len(result), time.time() - started)
        if task == "interpretability" and "gallery" in outputs:
            arrays = {k: np.ascontiguousarray(v) for k, v in (gallery or {}).items()}
            with io.atomic_path(outputs["gallery"]) as tmp:
                save_file(arrays, str(tmp), metadata={"sparsity": str(float(sparsity))})


def model_job(rule: str, config: Mapping, wildcards: Mapping[str, str], start: str | None, checkpoint: str,
              outputs: Mapping[str, str], threads: int = 1) -> None:
    """What the dense, prune and evaluate rules run.

    dense and prune write `checkpoint`; with fuse_evaluation their `outputs` also hold the task
    files, and the same process evaluates the checkpoint it just wrote. evaluate reads it.
    """
    arch, seed = wildcards["arch"], int(wildcards["seed"])
    method, sparsity = wildcards.get("method", "dense"), wildcards.get("sparsity", "0")
    if rule == "dense":
        dense_job(config, arch, seed, checkpoint, threads)
    elif rule == "prune":
        prune_job(config, arch, method, sparsity, seed, start, checkpoint, threads)
    elif rule != "evaluate":
        raise ValueError(f"unknown model rule {rule!r}")
    if outputs:
        evaluate_job(config, arch, method, sparsity, seed, checkpoint, outputs, threads)
