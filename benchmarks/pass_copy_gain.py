"""What the faster copy's rewrites (sweetspot.speedups.faster_copy) gain on the passes the study runs (CPU).

The library's own calls run once on the model as it is and once on each rewrite of it, which
the tasks pass to them as they pass EvalContext.fast_model, random weights:

- forward: one forward pass under inference_mode, what accuracy, alignment, deletion/insertion
  and LOST on CNNs run;
- shared: `attribute_batch` with the single-pass methods, as the interpretability task runs it
  per batch (targets picked by its forward pass; saliency + Grad-CAM + attention on a ViT,
  saliency + Grad-CAM + guided Grad-CAM on a CNN);
- saliency: `attribute(..., "saliency")`, one forward + backward pass to the input;
- gradcam: `attribute(..., "gradcam")`, forward + backward to the Grad-CAM layer;
- ig: `attribute(..., "ig")` on batch/8 images with 8 steps, one IG step batch of `batch` rows
  (IG and SmoothGrad-IG push every step through such batches);
- mix: the gradient passes of one image in the interpretability task with the given study's
  settings: shared/batch + ig_steps x (1 + smoothgrad_samples) IG rows (SmoothGrad runs one IG
  per noisy copy). Deletion/insertion forward passes and the other tasks are not in it.

Variants: ViT: none, faster_copy (both rewrites), cls_block (the last block computes the class
token alone), patch_matmul (the patch embedding as one matrix product); CNN: none, faster_copy
(BatchNorm folded, channels-last weights), bn_folded (folding alone), channels_last (alone).
Inputs are NCHW-contiguous unless --channels-last-input gives them the layout of the tasks'
preprocessed batches (sweetspot.models.Preprocess permutes NHWC images), with which the model's
own convolutions already run channels-last. Cases: timm vit_base_patch32_224 at 224 px (batch 8, the paper's settings,
presets/paper.yaml), config.yaml's test_vit at 48 px (batch 64, config.yaml's settings),
resnet50 at 224 px (batch 16, the paper's settings), config.yaml's test_resnet (batch 64),
tf_efficientnet_lite0 at 224 px (batch 16, presets/geirhos16.yaml's settings).

Time is the main thread's CPU time with --threads 1 (every op, backward passes included, runs
on that thread, so other processes do not inflate it), wall time otherwise. Every round times
each variant in turn (calls repeated for --min-seconds), so drift of the machine hits all variants alike; the table
gives the mean and the min over rounds, the speed-up none / variant of both, and the median and
range of the speed-ups within a round (paired: the variant against the model timed just before it). glibc keeps
freed memory for reuse, as every workflow job does (sweetspot.runtime.memory).

    PYTHONPATH=. python benchmarks/pass_copy_gain.py [--cases vit_b32 test_vit resnet50 test_resnet lite0]
        [--rounds 5] [--batch N] [--threads 1] [--min-seconds 0.5] [--passes forward shared saliency gradcam ig]
        [--channels-last-input] [--quick]
"""

from __future__ import annotations

import argparse
import copy
import os
import statistics
import time
import warnings
from pathlib import Path
from typing import Any, Callable

import timm
import torch
import yaml

from sweetspot import attributions as A
from sweetspot.models import family
from sweetspot.runtime.memory import reuse_freed_memory
from sweetspot.speedups import vit_trimming
from sweetspot.speedups.bn_folding import fold_batchnorm
from sweetspot.speedups.faster_copy import faster_copy

ROOT = Path(__file__).resolve().parents[1]
IG_STEPS = 8  # steps of the IG call that fills one step batch


def settings(preset: str) -> dict[str, Any]:
    """The interpretability task's settings of a study config."""
    return yaml.safe_load((ROOT / preset).read_text())["tasks"]["interpretability"]


def cases() -> dict[str, dict[str, Any]]:
    archs = yaml.safe_load((ROOT / "config.yaml").read_text())["architectures"]
    return {
        "vit_b32": dict(timm="vit_base_patch32_224", kwargs={}, size=224, batch=8, classes=1000,
                        study="presets/paper.yaml"),
        "test_vit": dict(timm=archs["vit"]["timm"], kwargs=archs["vit"]["kwargs"], size=48, batch=64, classes=8,
                         study="config.yaml"),
        "resnet50": dict(timm="resnet50", kwargs={}, size=224, batch=16, classes=1000, study="presets/paper.yaml"),
        "test_resnet": dict(timm=archs["resnet"]["timm"], kwargs=archs["resnet"]["kwargs"] or {}, size=48, batch=64,
                            classes=8, study="config.yaml"),
        "lite0": dict(timm="tf_efficientnet_lite0", kwargs={}, size=224, batch=16, classes=1000,
                      study="presets/geirhos16.yaml"),
    }


def variants(model: torch.nn.Module, x: torch.Tensor) -> dict[str, torch.nn.Module]:
    found = {"none": model, "faster_copy": faster_copy(model, x)}
    if family(model) == "vit":
        cls_block = copy.deepcopy(model)
        cls_block.blocks[-1] = vit_trimming._ClassTokenBlock(cls_block.blocks[-1])
        patch = copy.deepcopy(model)
        patch.patch_embed.proj = vit_trimming._PatchMatmul(patch.patch_embed.proj)
        found.update(cls_block=cls_block, patch_matmul=patch)
    else:
        folded = copy.deepcopy(model)
        fold_batchnorm(folded, x)
        found.update(bn_folded=folded, channels_last=copy.deepcopy(model).to(memory_format=torch.channels_last))
    with torch.no_grad():  # each variant must compute the model's function
        want = model(x)
        for name, variant in found.items():
            torch.testing.assert_close(variant(x), want, rtol=1e-4, atol=1e-4, msg=f"{name} changed the logits")
    return found


def forward(model: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    with torch.inference_mode():
        return model(x)


def passes(model: torch.nn.Module, x: torch.Tensor,
           cfg: dict[str, Any]) -> dict[str, Callable[[torch.nn.Module], object]]:
    """Each pass as a call on the model (or variant) it is given."""
    fam = family(model)
    single = [m for m in A.SINGLE_PASS if A.applicable(m, fam)]
    with torch.no_grad():
        targets = model(x).argmax(1)
    n_ig = max(1, len(x) // IG_STEPS)
    ig_cfg = {**cfg, "ig_steps": IG_STEPS, "ig_internal_batch_size": n_ig * IG_STEPS}
    return {
        "forward": lambda m: forward(m, x),
        "shared": lambda m: A.attribute_batch(m, x, single, cfg, lambda logits: logits.argmax(1)),
        "saliency": lambda m: A.attribute(m, x, targets, "saliency", cfg),
        "gradcam": lambda m: A.attribute(m, x, targets, "gradcam", cfg),
        "ig": lambda m: A.attribute(m, x[:n_ig], targets[:n_ig], "ig", ig_cfg),
    }


def seconds_per_call(fn: Callable[[], object], clock: Callable[[], float], min_seconds: float) -> float:
    """Mean time of calls repeated until min_seconds have passed (at least one)."""
    calls, start = 0, clock()
    while calls == 0 or clock() - start < min_seconds:
        fn()
        calls += 1
    return (clock() - start) / calls


def run_case(name: str, case: dict[str, Any], rounds: int, wanted: list[str], clock: Callable[[], float],
             min_seconds: float, input_format: torch.memory_format) -> None:
    torch.manual_seed(0)
    model = timm.create_model(case["timm"], pretrained=False, num_classes=case["classes"], **case["kwargs"]).eval()
    x = torch.randn(case["batch"], 3, case["size"], case["size"], generator=torch.Generator().manual_seed(0))
    x = x.contiguous(memory_format=input_format)
    study = settings(case["study"])
    cfg = {"pooling": study["pooling"], "seed": 0}
    found = variants(model, x)
    calls = {p: fn for p, fn in passes(model, x, cfg).items() if p in wanted}
    times: dict[tuple[str, str], list[float]] = {(p, v): [] for p in calls for v in found}
    for variant in found.values():  # kernels for these shapes, captum's first-call set-up
        for fn in calls.values():
            fn(variant)
    for _ in range(rounds):
        for p, fn in calls.items():
            for v, variant in found.items():
                times[p, v].append(seconds_per_call(lambda: fn(variant), clock, min_seconds))
    n_ig = max(1, case["batch"] // IG_STEPS)
    rows_per_image = int(study["ig_steps"]) * (1 + int(study["smoothgrad_samples"]))
    layout = "channels-last" if input_format == torch.channels_last else "NCHW"
    print(f"\n{name}: timm {case['timm']} {case['kwargs'] or ''}, {case['size']} px, batch {case['batch']}, "
          f"{layout} input, {rounds} rounds; mix: {case['study']} (ig_steps {study['ig_steps']}, smoothgrad_samples "
          f"{study['smoothgrad_samples']}: {rows_per_image} IG rows per image); load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"  {'pass':9s} {'variant':13s} {'mean s':>8s} {'min s':>8s} {'img/s':>8s} {'x mean':>7s} {'x min':>7s}"
          f" {'x paired':>8s} {'range':>9s}")
    for p in calls:
        per = n_ig if p == "ig" else case["batch"]
        base = times[p, "none"]
        for v in found:
            t = times[p, v]
            # paired per round: the variant against the model in the same round
            paired = [b / s for b, s in zip(base, t)]
            print(f"  {p:9s} {v:13s} {statistics.mean(t):8.3f} {min(t):8.3f} {per / min(t):8.1f} "
                  f"{statistics.mean(base) / statistics.mean(t):7.3f} {min(base) / min(t):7.3f} "
                  f"{statistics.median(paired):8.3f} {min(paired):4.2f}-{max(paired):4.2f}", flush=True)
    if {"shared", "ig"} <= set(calls):
        for v in found:
            mix = {stat: stat_fn(times["shared", v]) / case["batch"] + rows_per_image * stat_fn(times["ig", v])
                   / (n_ig * IG_STEPS) for stat, stat_fn in (("mean", statistics.mean), ("min", min))}
            base = {stat: stat_fn(times["shared", "none"]) / case["batch"] + rows_per_image
                    * stat_fn(times["ig", "none"]) / (n_ig * IG_STEPS)
                    for stat, stat_fn in (("mean", statistics.mean), ("min", min))}
            print(f"  {'mix':9s} {v:13s} {mix['mean']:8.3f} {mix['min']:8.3f} {1 / mix['min']:8.2f} "
                  f"{base['mean'] / mix['mean']:7.3f} {base['min'] / mix['min']:7.3f}   (s per image)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--cases", nargs="+", default=list(cases()), choices=list(cases()))
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batch", type=int, help="images per pass instead of each case's own")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=0.5, help="repeat a call until this long, per round")
    parser.add_argument("--passes", nargs="+", default=["forward", "shared", "saliency", "gradcam", "ig"])
    parser.add_argument("--channels-last-input", action="store_true", help="inputs laid out as the tasks' batches")
    parser.add_argument("--quick", action="store_true", help="one round, each call once: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.rounds, args.min_seconds = 1, 0.0
    reused = reuse_freed_memory()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    clock = time.thread_time if args.threads == 1 else time.perf_counter
    warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
    print(f"torch {torch.__version__}, timm {timm.__version__}, {args.threads} thread(s), "
          f"{'CPU time of the main thread' if args.threads == 1 else 'wall time'}, freed memory "
          f"{'kept' if reused else 'returned'}, {os.cpu_count()} CPUs, load average "
          f"{' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    all_cases = cases()
    for name in args.cases:
        case = {**all_cases[name], **({"batch": args.batch} if args.batch else {})}
        run_case(name, case, args.rounds, args.passes, clock, args.min_seconds,
                 torch.channels_last if args.channels_last_input else torch.contiguous_format)
    print(f"\nload average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
