"""Forward-only passes on one CPU thread: time per image and logits by batch size.

The forward-only tasks (accuracy, alignment, discovery) run their images `batch_size` at a
time. On a GPU larger batches are faster; on one CPU thread a large batch's activations spill
out of the caches, so smaller batches can be faster, and the question is whether they change a
number. This runs `sweetspot.training.predict_logits`, as those tasks do, on the faster copy of
a timm model (sweetspot.speedups.faster_copy, random weights) over the same images at each batch
size and prints, per batch size, the main thread's CPU time per image (mean and min over
rounds) and the largest difference of any logit from the first batch size's logits.

    PYTHONPATH=. python benchmarks/cpu_batch_size.py [--model tf_efficientnet_lite0] [--size 224]
        [--images 256] [--batch-sizes 128 64 32 16 8] [--rounds 3]
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import timm
import torch

from sweetspot import models
from sweetspot.runtime import device as devmod
from sweetspot.speedups.faster_copy import faster_copy
from sweetspot.training import predict_logits


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="tf_efficientnet_lite0")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=[128, 64, 32, 16, 8])
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()

    devmod.setup(1, 0, True)  # one thread, seeded, freed memory kept for reuse: as every workflow job
    model = timm.create_model(args.model, pretrained=False).eval()
    arch_cfg = {"timm": args.model, "num_classes": model.num_classes}
    preprocess = models.preprocess_for(model, arch_cfg, args.size)
    images = np.random.default_rng(0).integers(0, 256, (args.images, args.size, args.size, 3), dtype=np.uint8)
    fast = faster_copy(model, preprocess(images[:2], torch.device("cpu")))
    print(f"{args.model} at {args.size} px, {args.images} images, 1 thread, faster copy; "
          f"CPU ms per image over {args.rounds} rounds")
    print("| batch size | mean ms/image | min ms/image | max |logit - logit at batch %d| |" % args.batch_sizes[0])
    print("| --- | --- | --- | --- |")
    reference = None
    for batch_size in args.batch_sizes:
        times = []
        for _ in range(args.rounds):
            started = time.process_time()
            logits = predict_logits(fast, images, preprocess=preprocess, batch_size=batch_size, device="cpu")
            times.append((time.process_time() - started) / args.images * 1000)
        reference = logits if reference is None else reference
        print(f"| {batch_size} | {statistics.mean(times):.1f} | {min(times):.1f} | "
              f"{float((logits - reference).abs().max()):.2g} |")


if __name__ == "__main__":
    main()
