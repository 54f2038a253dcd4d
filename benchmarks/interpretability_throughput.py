"""Throughput of attribution maps and their faithfulness scores on CPU (images per second).

Batched (`sweetspot.attributions.attribute` on a whole batch, plus the one forward pass that
chooses the targets) against the paper's way for Grad-CAM and saliency: one image per call,
a new captum object per image and an extra forward pass for its prediction. Random weights;
the settings are the embedded config's (ig_steps 16, 4 SmoothGrad samples, 16 deletion steps).
Run from the repository root (or with the package installed):

    PYTHONPATH=. python benchmarks/interpretability_throughput.py [--threads 1 2] [--batch 32] [--resnet50-images 2]
"""

from __future__ import annotations

import argparse
import time
from typing import Callable

import timm
import torch
from captum.attr import LayerAttribution, LayerGradCam, Saliency

from sweetspot import attributions as A
from sweetspot.metrics.localization import deletion_auc, insertion_auc
from sweetspot.models import family

CFG = dict(pooling="l2sq", ig_steps=16, smoothgrad_samples=4, smoothgrad_stdev=0.15, deletion_steps=16, seed=0)


def images_per_second(fn: Callable[[], object], n_images: int, min_seconds: float = 2.0) -> float:
    """Calls after a warm-up until min_seconds have passed; a first call slower than that is
    the measurement itself (its one-off setup then counts, a slight underestimate)."""
    start = time.perf_counter()
    fn()
    first = time.perf_counter() - start
    if first >= min_seconds:
        return n_images / first
    calls, start = 0, time.perf_counter()
    while calls == 0 or time.perf_counter() - start < min_seconds:
        fn()
        calls += 1
    return n_images * calls / (time.perf_counter() - start)


def batched(model: torch.nn.Module, x: torch.Tensor, method: str) -> Callable[[], object]:
    def run() -> object:
        with torch.no_grad():
            targets = model(x).argmax(1)
        return A.attribute(model, x, targets, method, CFG)
    return run


def paper_way(model: torch.nn.Module, x: torch.Tensor, method: str) -> Callable[[], object]:
    def run() -> object:
        maps = []
        with A.gradcam_target(model, x) as layer:
            for image in x.split(1):
                target = int(model(image).argmax(1))  # an extra forward pass per image, as the paper's code does
                if method == "gradcam":
                    cam = LayerGradCam(model, layer).attribute(image, target=target, relu_attributions=True)
                    maps.append(LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear"))
                else:
                    maps.append(Saliency(model).attribute(image.requires_grad_(), target=target, abs=True))
        return maps
    return run


def faithfulness(model: torch.nn.Module, x: torch.Tensor) -> Callable[[], object]:
    with torch.no_grad():
        targets = model(x).argmax(1)
    maps = torch.rand(x.shape[0], *x.shape[-2:], generator=torch.Generator().manual_seed(0))

    def run() -> object:
        steps = CFG["deletion_steps"]
        return (deletion_auc(model, x, maps, targets, steps=steps, batch_size=32),
                insertion_auc(model, x, maps, targets, steps=steps, batch_size=32))
    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resnet50-images", type=int, default=2)
    args = parser.parse_args()
    setups = [("test_resnet", {}, 48, args.batch), ("test_vit", dict(img_size=48, patch_size=6), 48, args.batch),
              ("resnet50", {}, 224, args.resnet50_images)]
    print(f"settings: {CFG}")
    print(f"{'model':12s} {'px':>4s} {'n':>3s} {'threads':>7s} {'method':28s} {'images/s':>10s}")
    for name, kwargs, size, n in setups:
        torch.manual_seed(0)
        model = timm.create_model(name, num_classes=1000 if name == "resnet50" else 10, **kwargs).eval()
        x = torch.randn(n, 3, size, size, generator=torch.Generator().manual_seed(0))
        for threads in args.threads:
            torch.set_num_threads(threads)
            rows: list[tuple[str, Callable[[], object]]] = []
            for method in A.METHODS:
                if A.applicable(method, family(model)):
                    rows.append((method, batched(model, x, method)))
                    if method in ("gradcam", "saliency"):
                        rows.append((f"{method} (paper's way)", paper_way(model, x, method)))
            rows.append(("deletion+insertion AUC", faithfulness(model, x)))
            for label, fn in rows:
                rate = images_per_second(fn, n)
                print(f"{name:12s} {size:4d} {n:3d} {threads:7d} {label:28s} {rate:10.2f}", flush=True)


if __name__ == "__main__":
    main()
