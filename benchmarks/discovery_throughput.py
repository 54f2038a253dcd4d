"""Throughput of the discovery task (LOST + CorLoc) on CPU, and forward passes per image.

Random weights and random images: the numbers measure cost, not quality.

    PYTHONPATH=. python benchmarks/discovery_throughput.py [--threads 1] [--batch-size 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import timm
import torch

from sweetspot.data.samples import Sample
from sweetspot.features import patch_features
from sweetspot.metrics.lost import lost
from sweetspot.models import Preprocess, family
from sweetspot.tasks.discovery import evaluate

CASES = [  # label, timm name, kwargs, image size, images
    ("test_resnet", "test_resnet", {}, 48, 256),
    ("test_vit", "test_vit", {"img_size": 48, "patch_size": 6}, 48, 256),
    ("resnet50", "resnet50", {}, 224, 16),
    ("resnet50 os16", "resnet50", {"output_stride": 16}, 224, 16),
]


def stem(model: torch.nn.Module) -> torch.nn.Module:
    """The first module every forward pass goes through."""
    if family(model) == "vit":
        return model.patch_embed
    return next(m for m in model.modules() if isinstance(m, torch.nn.Conv2d))


def run(name: str, kwargs: dict, size: int, n_images: int, batch_size: int) -> dict:
    torch.manual_seed(0)
    model = timm.create_model(name, pretrained=False, num_classes=10, **kwargs).eval()
    rng = np.random.default_rng(0)
    samples = [Sample(item=str(i), image=rng.integers(0, 256, (size, size, 3), dtype=np.uint8),
                      mask=np.ones((size, size), dtype=bool), boxes=np.array([[0.0, 0.0, size / 2, size / 2]]))
               for i in range(n_images)]
    preprocess = Preprocess(mean=(0.5,) * 3, std=(0.5,) * 3, image_size=size)
    cfg = {"n_images": n_images, "k_patches": 100, "feature_layer": "auto", "batch_size": batch_size,
           "baselines": False}
    passes = []
    handle = stem(model).register_forward_hook(lambda _m, inp, _o: passes.append(len(inp[0])))
    evaluate(model, samples[:2], "warmup", {**cfg, "n_images": 2}, preprocess=preprocess, device="cpu")
    passes.clear()
    start = time.perf_counter()
    evaluate(model, samples, "bench", cfg, preprocess=preprocess, device="cpu")
    task_s = time.perf_counter() - start
    handle.remove()

    # Split of one batch: the forward pass vs LOST itself.
    x = preprocess(np.stack([s.image for s in samples[:batch_size]]))
    start = time.perf_counter()
    feats, grid, layer = patch_features(model, x)
    forward_s = time.perf_counter() - start
    start = time.perf_counter()
    lost(feats, grid, (size, size))
    lost_s = time.perf_counter() - start
    return {"images_per_s": n_images / task_s, "forward_passes_per_image": sum(passes) / n_images,
            "grid": f"{grid[0]}x{grid[1]}", "layer": layer, "channels": feats.shape[-1],
            "batch_forward_ms_per_image": 1e3 * forward_s / len(x), "batch_lost_ms_per_image": 1e3 * lost_s / len(x)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=64)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} thread(s), batch {args.batch_size}, CPU")
    for label, name, kwargs, size, n_images in CASES:
        r = run(name, kwargs, size, n_images, args.batch_size)
        print(f"{label:14s} {size:3d}px  {n_images:3d} images  {r['images_per_s']:8.1f} img/s  "
              f"forward passes/image {r['forward_passes_per_image']:.2f}  grid {r['grid']:5s} C={r['channels']:<4d} "
              f"forward {r['batch_forward_ms_per_image']:.2f} ms/img  LOST {r['batch_lost_ms_per_image']:.2f} ms/img  "
              f"({r['layer']})")


if __name__ == "__main__":
    main()
