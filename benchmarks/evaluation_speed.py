"""Evaluation speed near the compute bound, side by side with the per-image way (CPU).

For every evaluation method and task (saliency, ig, ig_smoothgrad, gradcam, guided_gradcam,
attention; deletion+insertion AUC; LOST discovery; accuracy and alignment forward) on the
default architectures (config.yaml's resnet and vit, built as the study builds them: timm
test_resnet and test_vit with the config's keyword arguments, 48 px, batch 64)
and on ResNet-50 at 224 px (batch 16), all with random weights, it prints:

- ours/s: images per second of the library call as the task makes it, target picking included
  (`attribute_batch` with the one method, whose forward pass picks the targets;
  `perturbation_scores`, `tasks.discovery.evaluate`, `tasks.accuracy.evaluate`,
  `tasks.alignment.evaluate`);
- bound/s: images per second if the method cost nothing but its passes, each pass timed here
  at the same batch size: fwd (inference_mode), fwd+bwd to the input ("in"), fwd+bwd to the
  Grad-CAM layer only ("layer"), fwd+bwd into every parameter ("full", what
  pytorch-grad-cam's loss.backward() runs); every pass of ours, as every library call of
  ours, runs on the faster copy the tasks pass (sweetspot.speedups.faster_copy: CNNs with
  BatchNorm folded and channels-last weights, ViTs with the last block trimmed to the class
  token), the paper's on the model as it is, so pass-x includes the copy's gain. Passes per
  batch: saliency 1 in; gradcam 1 layer; guided_gradcam 1 in (one forward pass; Grad-CAM's
  layer gradient adds only the head's backward; captum's GuidedGradCam, the paper's way,
  runs 1 layer + 1 in); ig steps x in + 1 fwd (the targets); ig_smoothgrad samples x steps x
  in + 1 fwd; attention 1 fwd;
  deletion+insertion (steps+1) x 2 fwd; LOST 1 fwd (of the model LOST reads: the dilated
  one where the study dilates); accuracy and alignment 1 fwd;
- eff: bound time / our time (1 = at the bound; above 1 when the method does less than a full
  pass, e.g. attention and LOST on a ViT stop at the last block's qkv projection, or from
  timing noise of about +-10%);
- shared: the single-pass methods in one `attribute_batch` call, as the interpretability task
  runs them: one forward pass that also picks the targets, one backward pass for saliency's
  and Grad-CAM's gradients (attention reads the same forward pass), one more for guided
  backprop (CNNs); against the paper's way of running each of these methods alone;
- paper/s: images per second done the paper's way: one image per call, a new attribution
  object per image, an extra forward pass for the prediction (LOST, accuracy and alignment: one
  image per forward pass; deletion/insertion: one perturbed image per forward pass, as RISE's
  single run), on fewer images. Grad-CAM the way the paper's explain.py runs it (batch size 1,
  its default): a new pytorch_grad_cam.GradCAM per image, a forward pass for the predicted
  class, then the library's own forward pass, loss.backward() into every parameter and the map
  in numpy, rescaled and resized by OpenCV. That is the real library (`pip install grad-cam`),
  not a dependency of sweetspot: where it is missing the script says so and leaves the row's
  paper side out. The row "gradcam, captum/img" has captum's LayerGradCam per image instead,
  whose backward pass stops at the layer. Saliency, IG and guided Grad-CAM through captum, as
  the paper's code uses it (saliency is not in the paper: the same per-image pattern);
- speedup: ours / paper; pass-x: the speedup the passes alone allow, (the paper's passes at
  batch 1) / (our bound): the gain from batching, without the per-image Python overhead;
- MB: the largest resident memory above the level before the call (psutil, sampled every
  2 ms in the first round; memory the allocator kept from earlier calls is not seen again).

glibc keeps freed memory for reuse (sweetspot.runtime.memory, as every workflow job does) unless
--no-reuse-freed-memory is given. Both ways run in this one process, so the setting is the same
for both; it moves the ratio (it speeds up the batched passes more), so run the script both ways.

Every row charges picking the targets on both sides, as a user's run pays it. Time is
the main thread's CPU time with --threads 1 (every op, the backward pass included, runs on
the calling thread), so other processes on a shared machine do not inflate it; wall time
with more threads (--threads 2 uses the whole 2-core development machine for both ways, as
torch runs the paper's code there by default). Every figure is the best of --repeats rounds,
and each round times the method's bound passes right before the method. The load average is
printed before and after.

    PYTHONPATH=. python benchmarks/evaluation_speed.py [--threads 1] [--quick] [--repeats 3]
        [--cases test_resnet test_vit resnet50] [--config config.yaml] [--clock auto|cpu|wall]
        [--no-reuse-freed-memory]
"""

from __future__ import annotations

import argparse
import os
import threading
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import psutil
import timm
import torch
import yaml
from captum.attr import GuidedGradCam, IntegratedGradients, LayerAttribution, LayerGradCam, NoiseTunnel, Saliency

from sweetspot import attributions as A
from sweetspot.runtime.memory import reuse_freed_memory
from sweetspot.data.samples import Sample
from sweetspot.metrics.localization import localization_scores, perturbation_scores
from sweetspot.models import Preprocess, family
from sweetspot.speedups.faster_copy import faster_copy
from sweetspot.tasks import accuracy, alignment, discovery

try:  # the paper's Grad-CAM library, for the comparison only: never a dependency of sweetspot
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget
except ImportError:
    GradCAM = ClassifierOutputTarget = None
NO_GRAD_CAM = ("pytorch-grad-cam is not installed (`pip install grad-cam`, the PyPI name of the library the "
               "paper's explain.py uses): the paper's Grad-CAM is left out")

# The embedded study's settings (config.yaml); ResNet-50 keeps the paper's SmoothGrad samples
# and noise (presets/paper.yaml) but 16 IG steps, so that one pass covers one image.
TINY_SETTINGS = dict(pooling="l2sq", ig_steps=16, smoothgrad_samples=4, smoothgrad_stdev=0.15, deletion_steps=16,
                     seed=0, target="predicted")
RESNET50_SETTINGS = dict(TINY_SETTINGS, smoothgrad_samples=2, smoothgrad_stdev=1.0)


@dataclass
class Case:
    label: str
    timm_name: str
    kwargs: dict[str, Any]
    size: int
    batch: int
    num_classes: int
    settings: dict[str, Any]
    lost_kwargs: dict[str, Any] = field(default_factory=dict)  # the study dilates CNNs for LOST


def cases(config_path: Path) -> dict[str, Case]:
    """The default study's two architectures as config.yaml builds them, and ResNet-50."""
    archs = yaml.safe_load(config_path.read_text())["architectures"]
    resnet, vit = archs["resnet"], archs["vit"]
    return {
        "test_resnet": Case("test_resnet", resnet["timm"], resnet.get("kwargs") or {}, 48, 64, 8, TINY_SETTINGS,
                            {"output_stride": 8}),
        "test_vit": Case("test_vit", vit["timm"], vit.get("kwargs") or {}, 48, 64, 8, TINY_SETTINGS),
        "resnet50": Case("resnet50", "resnet50", {}, 224, 16, 1000, RESNET50_SETTINGS),
    }


# ---------------------------------------------------------------------------------------- timing

# With one torch thread every op, backward passes included, runs on the calling thread, so that
# thread's CPU time is the work done, unaffected by other processes taking turns on the cores.
# With more threads only wall time counts them all.
CLOCKS: dict[str, Callable[[], float]] = {"cpu": time.thread_time, "wall": time.perf_counter}
clock = CLOCKS["wall"]


def seconds_per_call(fn: Callable[[], object], min_seconds: float) -> float:
    """Mean time (the chosen clock) of calls repeated until min_seconds have passed (at least one)."""
    calls, start = 0, clock()
    while calls == 0 or clock() - start < min_seconds:
        fn()
        calls += 1
    return (clock() - start) / calls


class PeakRSS:
    """Largest resident set size above the level at entry, sampled by a thread every 2 ms."""

    def __enter__(self) -> "PeakRSS":
        self._process = psutil.Process()
        self._base = self._process.memory_info().rss
        self._peak = self._base
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        return self

    def _sample(self) -> None:
        while not self._stop.wait(0.002):
            self._peak = max(self._peak, self._process.memory_info().rss)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self._peak = max(self._peak, self._process.memory_info().rss)
        self.megabytes = (self._peak - self._base) / 2**20


# ---------------------------------------------------------------------------------------- passes

# Passes per batch of the single-pass methods as the library runs them, and per image the
# paper's way (each with its own forward pass for the prediction; pytorch-grad-cam's
# loss.backward() reaches every parameter, captum's LayerGradCam stops at the layer; captum's
# GuidedGradCam runs Grad-CAM and guided backprop apart). Attention stops after the last
# block's qkv projection, less than the full forward pass counted here.
OUR_PASSES = {"saliency": {"in": 1}, "gradcam": {"layer": 1}, "guided_gradcam": {"in": 1}, "attention": {"fwd": 1}}
PAPER_PASSES = {"saliency": {"in": 1, "fwd": 1}, "gradcam": {"full": 1, "fwd": 1},
                "gradcam_captum": {"layer": 1, "fwd": 1}, "guided_gradcam": {"layer": 1, "in": 1, "fwd": 1},
                "attention": {"fwd": 2}}
SHORT = {"saliency": "sal", "gradcam": "gc", "guided_gradcam": "ggc", "attention": "att"}


class Passes:
    """One batch's forward / backward passes of a model, the units every bound is made of: of
    the faster copy for ours, of the model as it is for the paper's."""

    def __init__(self, model: torch.nn.Module, x: torch.Tensor, targets: torch.Tensor):
        self.model, self.x, self.targets = model, x, targets

    def fwd(self) -> None:
        with torch.inference_mode():
            self.model(self.x)

    def bwd_to_input(self) -> None:
        x = self.x.detach().requires_grad_(True)
        out = self.model(x).gather(1, self.targets[:, None]).sum()
        torch.autograd.grad(out, x)

    def bwd_to_layer(self) -> None:
        """fwd + the backward pass from the target logits down to the Grad-CAM layer only."""
        with A.gradcam_target(self.model, self.x) as layer:
            captured: list[torch.Tensor] = []
            handle = layer.register_forward_hook(lambda _m, _i, out: captured.append(out))
            try:
                out = self.model(self.x).gather(1, self.targets[:, None]).sum()
            finally:
                handle.remove()
            torch.autograd.grad(out, captured[-1])

    def bwd_full(self) -> None:
        """fwd + loss.backward() into every parameter, as pytorch-grad-cam runs it."""
        self.model.zero_grad()
        self.model(self.x).gather(1, self.targets[:, None]).sum().backward()


# -------------------------------------------------------------------------- the methods, two ways

def batched_method(model: torch.nn.Module, x: torch.Tensor, method: str, cfg: dict[str, Any]) -> Callable[[], object]:
    """The method as the interpretability task runs it: `attribute_batch`, which also picks the targets."""
    return lambda: A.attribute_batch(model, x, [method], cfg, lambda logits: logits.argmax(1))


def paper_method(model: torch.nn.Module, x: torch.Tensor, method: str, cfg: dict[str, Any]) -> Callable[[], object]:
    """One image per call, a new attribution object per image, an extra forward pass for the prediction.

    method "gradcam" is Grad-CAM as the paper runs it (pytorch-grad-cam), "gradcam_captum" captum's
    LayerGradCam per image."""
    steps, samples, stdev = int(cfg["ig_steps"]), int(cfg["smoothgrad_samples"]), float(cfg["smoothgrad_stdev"])

    def run() -> object:
        if method == "gradcam":  # explain.py's gradCAM() picks the target itself
            layer = A.gradcam_layer(model, x[:1]) if family(model) == "cnn" else None
            return [paper_gradcam(model, layer, image) for image in x.split(1)]
        maps = []
        with warnings.catch_warnings(), A.gradcam_target(model, x[:1]) as layer:
            warnings.filterwarnings("ignore", message="Setting backward hooks on ReLU")
            for image in x.split(1):
                target = int(model(image).argmax(1))
                image = image.detach().clone().requires_grad_(True)
                if method == "saliency":
                    attr = Saliency(model).attribute(image, target=target, abs=False)
                elif method == "ig":
                    attr = IntegratedGradients(model).attribute(image, target=target, n_steps=steps)
                elif method == "ig_smoothgrad":
                    attr = NoiseTunnel(IntegratedGradients(model)).attribute(
                        image, nt_type="smoothgrad", nt_samples=samples, stdevs=stdev, target=target, n_steps=steps)
                elif method == "gradcam_captum":
                    cam = LayerGradCam(model, layer).attribute(image, target=target, relu_attributions=True)
                    attr = LayerAttribution.interpolate(cam, tuple(image.shape[-2:]), "bilinear")
                elif method == "guided_gradcam":
                    attr = GuidedGradCam(model, layer).attribute(
                        image, target=target, interpolate_mode="bilinear")
                elif method == "attention":
                    attr = A.attribute(model, image.detach(), torch.tensor([target]), "attention", cfg)
                else:
                    raise ValueError(method)
                maps.append(attr.detach())
        return maps
    return run


def faithfulness(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, targets: torch.Tensor,
                 steps: int, batch: int) -> Callable[[], object]:
    return lambda: perturbation_scores(model, x, maps, targets, steps=steps, batch_size=batch)


def paper_gradcam(model: torch.nn.Module, layer: torch.nn.Module | None, image: torch.Tensor) -> np.ndarray:
    """Grad-CAM of one image as the paper's explain.py runs it: a new pytorch_grad_cam.GradCAM,
    a forward pass for the predicted class, then the CAM (its own forward pass, loss.backward()
    into every parameter, the map in numpy, min-max rescaled and resized by OpenCV). A ViT's
    layer is blocks[-1].norm1 with its patch tokens as a grid, pytorch-grad-cam's ViT recipe."""
    reshape = None
    if family(model) == "vit":
        prefix, (ph, pw) = int(getattr(model, "num_prefix_tokens", 1)), model.patch_embed.patch_size
        h, w = image.shape[-2] // ph, image.shape[-1] // pw
        layer = model.blocks[-1].norm1
        reshape = lambda tokens: tokens[:, prefix:].reshape(len(tokens), h, w, -1).permute(0, 3, 1, 2)  # noqa: E731
    with GradCAM(model=model, target_layers=[layer], reshape_transform=reshape) as cam:
        pred = model(image).detach().cpu().numpy()
        return cam(input_tensor=image, targets=[ClassifierOutputTarget(np.argmax(p)) for p in pred])


def faithfulness_paper(model: torch.nn.Module, x: torch.Tensor, maps: torch.Tensor, steps: int) -> Callable[[], object]:
    def run() -> object:
        out = []
        for i in range(len(x)):
            with torch.no_grad():
                target = model(x[i:i + 1]).argmax(1)
            out.append(faithfulness(model, x[i:i + 1], maps[i:i + 1], target, steps, 1)())
        return out
    return run


# ---------------------------------------------------------------------------------------- report

@dataclass
class Row:
    case: str
    name: str
    n: int
    ours_s: float
    bound_s: float | None
    efficiency: float | None
    paper_s: float | None = None
    paper_n: int = 0
    paper_bound_s: float | None = None
    ours_mb: float = float("nan")
    paper_mb: float = float("nan")
    passes: str = ""

    @property
    def speedup(self) -> float | None:
        return None if self.paper_s is None else (self.n / self.ours_s) / (self.paper_n / self.paper_s)

    @property
    def max_speedup(self) -> float | None:
        if self.paper_bound_s is None or self.bound_s is None:
            return None
        return (self.paper_bound_s / self.paper_n) / (self.bound_s / self.n)


def fmt(value: float | None, spec: str) -> str:
    return "-" if value is None or not np.isfinite(value) else format(value, spec)


HEADER = (f"{'case':12s} {'method/task':22s} {'n':>4s} {'ours/s':>9s} {'bound/s':>9s} {'eff':>5s} "
          f"{'paper/s':>9s} {'speedup':>7s} {'pass-x':>6s} {'MB ours':>8s} {'MB paper':>8s}  passes per batch")


def print_row(r: Row) -> None:
    bound_rate = None if r.bound_s is None else r.n / r.bound_s
    paper_rate = None if r.paper_s is None else r.paper_n / r.paper_s
    print(f"{r.case:12s} {r.name:22s} {r.n:4d} {r.n / r.ours_s:9.2f} {fmt(bound_rate, '9.2f'):>9s} "
          f"{fmt(r.efficiency, '5.2f'):>5s} {fmt(paper_rate, '9.2f'):>9s} {fmt(r.speedup, '7.1f'):>7s} "
          f"{fmt(r.max_speedup, '6.1f'):>6s} {fmt(r.ours_mb, '8.0f'):>8s} {fmt(r.paper_mb, '8.0f'):>8s}  {r.passes}",
          flush=True)


# ------------------------------------------------------------------------------------- measuring

class Bench:
    def __init__(self, repeats: int, min_seconds: float):
        self.repeats, self.min_seconds = repeats, min_seconds
        self.warmup = True  # off for ResNet-50: the pass warm-ups already built its kernels

    def _timed(self, fn: Callable[[], object], with_memory: bool) -> tuple[float, float]:
        """Seconds per call of `fn`, and its peak RSS growth in MB when asked (else NaN)."""
        if not with_memory:
            return seconds_per_call(fn, self.min_seconds), float("nan")
        with PeakRSS() as peak:
            seconds = seconds_per_call(fn, self.min_seconds)
        return seconds, peak.megabytes

    def measure(self, case: str, name: str, n: int, ours: Callable[[], object], bound: Callable[[], float] | None,
                paper: Callable[[], object] | None = None, paper_n: int = 0,
                paper_bound: Callable[[], float] | None = None, passes: str = "") -> Row:
        """Best of rounds of: the bound (seconds, from freshly timed passes), ours, the paper's way."""
        if self.warmup:
            ours()  # kernels for this shape, captum's first-call set-up
        ours_t, bound_t, paper_t, paper_bound_t = [], [], [], []
        ours_mb = paper_mb = float("nan")
        for round_ in range(self.repeats):
            first = round_ == 0  # memory is measured once, in the first round
            if bound is not None:
                bound_t.append(bound())
            seconds, megabytes = self._timed(ours, first)
            ours_t.append(seconds)
            ours_mb = megabytes if first else ours_mb
            if paper is not None:
                if first and self.warmup:
                    paper()
                seconds, megabytes = self._timed(paper, first)
                paper_t.append(seconds)
                paper_mb = megabytes if first else paper_mb
                if paper_bound is not None:
                    paper_bound_t.append(paper_bound())
        best = min  # the round least disturbed by other processes
        row = Row(case, name, n, best(ours_t), best(bound_t) if bound_t else None,
                  best(bound_t) / best(ours_t) if bound_t else None, best(paper_t) if paper_t else None, paper_n,
                  best(paper_bound_t) if paper_bound_t else None, ours_mb, paper_mb, passes)
        print_row(row)
        return row


def images(case: Case, n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, case.size, case.size, 3), dtype=np.uint8)


def samples_of(case: Case, n: int) -> list[Sample]:
    s, rng = case.size, np.random.default_rng(1)
    mask = np.zeros((s, s), bool)
    mask[s // 4: 3 * s // 4, s // 4: 3 * s // 4] = True
    return [Sample(item=f"img{i:04d}", image=image, label=int(rng.integers(case.num_classes)), mask=mask,
                   boxes=np.array([[s / 4, s / 4, 3 * s / 4, 3 * s / 4]]),
                   texture_label=int(rng.integers(case.num_classes)))
            for i, image in enumerate(images(case, n))]


def run_case(case: Case, bench: Bench, quick: bool, methods: list[str]) -> list[Row]:
    torch.manual_seed(0)
    model = timm.create_model(case.timm_name, pretrained=False, num_classes=case.num_classes, **case.kwargs).eval()
    preprocess = Preprocess(mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225), image_size=case.size)
    B = case.batch
    x = preprocess(images(case, B))
    with torch.no_grad():
        targets = model(x).argmax(1)
    cfg = dict(case.settings, ig_internal_batch_size=B)
    fam = family(model)
    fast = faster_copy(model, x)  # what the tasks pass to the library (EvalContext.fast_model)
    small = case.size <= 64
    bench.warmup = small
    paper_n = (min(B, 16) if small else 2) if not quick else (8 if small else 1)
    rows: list[Row] = []

    full = Passes(fast, x, targets)
    one = Passes(model, x[:1], targets[:1])  # the paper's passes, on the model as it is
    unit = {"fwd": (full.fwd, one.fwd), "in": (full.bwd_to_input, one.bwd_to_input),
            "layer": (full.bwd_to_layer, one.bwd_to_layer), "full": (full.bwd_full, one.bwd_full)}
    for fn in (*unit["fwd"], *unit["in"], *unit["layer"], one.bwd_full):
        fn()  # warm-up at batch B and 1

    def bound(parts: dict[str, float]) -> Callable[[], float]:
        """Seconds of the given number of batch-B passes of each kind, timed now."""
        return lambda: sum(k * seconds_per_call(unit[kind][0], bench.min_seconds) for kind, k in parts.items())

    def paper_bound(parts: dict[str, float]) -> Callable[[], float]:
        """Seconds of the paper's passes for paper_n images at batch 1."""
        return lambda: paper_n * sum(k * seconds_per_call(unit[kind][1], bench.min_seconds)
                                     for kind, k in parts.items())

    steps, samples = int(cfg["ig_steps"]), int(cfg["smoothgrad_samples"])
    for method in methods:
        if not A.applicable(method, fam):
            continue
        if method in ("ig", "ig_smoothgrad"):
            rows_per_image = steps * (samples if method == "ig_smoothgrad" else 1)
            # Images for one (quick, ResNet-50) or four B-row passes per IG call: the task's batches
            # of 32+ images fill every IG call's passes; SmoothGrad runs one IG call per noisy copy.
            n = max(1, (B * (1 if quick or not small else 4)) // steps)
            per_batch = {"in": n * rows_per_image / B, "fwd": n / B}  # + the targets' forward pass
            paper_per_image = None  # the target here is eff; the paper batches the steps too
            passes = f"{rows_per_image} x in per image ({n} images, {B}-row passes) + 1 fwd (targets)"
        else:
            n = B
            per_batch, paper_per_image = OUR_PASSES[method], PAPER_PASSES[method]
            passes = " + ".join(f"{k} x {kind}" for kind, k in per_batch.items()) + " (its fwd picks the targets)"
        xs = x[:n]
        pn = min(paper_n, n)
        paper = paper_method(model, x[:pn], method, cfg)
        if method == "gradcam" and GradCAM is None:
            print(f"  ({NO_GRAD_CAM})")
            paper = paper_per_image = None
        rows.append(bench.measure(case.label, method, n, batched_method(fast, xs, method, cfg),
                                  bound(per_batch), paper, pn,
                                  paper_bound(paper_per_image) if paper_per_image else None, passes))
        if method == "gradcam":  # the same maps against captum's per-image LayerGradCam
            rows.append(bench.measure(case.label, "gradcam, captum/img", n, batched_method(fast, xs, method, cfg),
                                      bound(per_batch), paper_method(model, x[:pn], "gradcam_captum", cfg), pn,
                                      paper_bound(PAPER_PASSES["gradcam_captum"]), passes))

    single = [m for m in methods if m in A.SINGLE_PASS and A.applicable(m, fam)]
    if len(single) > 1:
        # As the interpretability task runs them: one call that also picks the targets, against
        # the paper's way of running each method alone.
        per_batch = ({"in": 2, "fwd": -1} if "guided_gradcam" in single
                     else {"in": 1} if "saliency" in single else {"layer": 1})  # without saliency: to the layer
        paper_parts: dict[str, float] = {}
        for method in single:
            for kind, k in PAPER_PASSES[method].items():
                paper_parts[kind] = paper_parts.get(kind, 0) + k
        papers = [paper_method(model, x[:paper_n], method, cfg) for method in single]
        paper_all = lambda: [paper() for paper in papers]  # noqa: E731
        if "gradcam" in single and GradCAM is None:
            print(f"  ({NO_GRAD_CAM}, and so is the paper's side of the shared row)")
            paper_all = None
        rows.append(bench.measure(
            case.label, "shared: " + "+".join(SHORT[m] for m in single), B,
            lambda: A.attribute_batch(fast, x, single, cfg, lambda logits: logits.argmax(1)), bound(per_batch),
            paper_all, paper_n, paper_bound(paper_parts) if paper_all else None,
            "1 fwd (targets too) + 1 bwd to in" + (" + 1 guided bwd to in" if "guided_gradcam" in single else "")))

    steps_del = int(cfg["deletion_steps"])
    n = B if small else 1
    maps = torch.rand(n, case.size, case.size, generator=torch.Generator().manual_seed(0))
    per_batch = {"fwd": n * (steps_del + 1) * 2 / B}
    rows.append(bench.measure(case.label, "deletion+insertion", n,
                              faithfulness(fast, x[:n], maps, targets[:n], steps_del, B), bound(per_batch),
                              faithfulness_paper(model, x[:min(paper_n, n)], maps, steps_del), min(paper_n, n),
                              paper_bound({"fwd": 1 + (steps_del + 1) * 2}),
                              f"(steps+1) x 2 fwd per image, steps={steps_del}"))

    masks = np.zeros((B, case.size, case.size), bool)
    masks[:, case.size // 4: 3 * case.size // 4, case.size // 4: 3 * case.size // 4] = True
    maps_b = torch.rand(B, case.size, case.size, generator=torch.Generator().manual_seed(1))
    rows.append(bench.measure(case.label, "rma+rra+pointing", B, lambda: localization_scores(maps_b, masks), None,
                              passes="numpy, no model pass"))

    rows += task_rows(case, model, fast, preprocess, bench, paper_n)
    return rows


def task_rows(case: Case, model: torch.nn.Module, fast: torch.nn.Module, preprocess: Preprocess, bench: Bench,
              paper_n: int) -> list[Row]:
    """LOST discovery, accuracy and alignment through the task functions the workflow calls: ours
    on the faster copy (for LOST: of the dilated model, as the discovery task builds it), the
    paper's way on the model as it is."""
    B = case.batch
    samples = samples_of(case, B)
    rows = []
    x = preprocess(images(case, B))
    lost_model = model
    if case.lost_kwargs:
        lost_model = timm.create_model(case.timm_name, pretrained=False, num_classes=case.num_classes,
                                       **case.kwargs, **case.lost_kwargs).eval()
        lost_model.load_state_dict(model.state_dict())
    lost_fast = faster_copy(lost_model, x) if family(model) == "cnn" else lost_model  # ViTs: the model itself
    lost_passes = Passes(lost_fast, x, torch.zeros(B, dtype=torch.long))
    lost_passes.fwd()
    cfg = {"n_images": B, "k_patches": 100, "feature_layer": "auto", "baselines": False}

    def lost_task(m: torch.nn.Module, batch_size: int, subset: list[Sample]) -> Callable[[], object]:
        return lambda: discovery.evaluate(m, subset, "bench", {**cfg, "batch_size": batch_size},
                                          preprocess=preprocess, device="cpu")

    label = "LOST" + (" (os" + str(case.lost_kwargs["output_stride"]) + ")" if case.lost_kwargs else "")
    rows.append(bench.measure(case.label, label, B, lost_task(lost_fast, B, samples),
                              lambda: seconds_per_call(lost_passes.fwd, bench.min_seconds),
                              lost_task(lost_model, 1, samples[:paper_n]), paper_n, passes="1 fwd"))

    full_fwd = Passes(fast, x, torch.zeros(B, dtype=torch.long)).fwd

    def accuracy_task(m: torch.nn.Module, batch_size: int, subset: list[Sample]) -> Callable[[], object]:
        return lambda: accuracy.evaluate(m, subset, "bench", {"batch_size": batch_size}, preprocess=preprocess,
                                         device=torch.device("cpu"), amp=False)

    def alignment_task(m: torch.nn.Module, batch_size: int, subset: list[Sample]) -> Callable[[], object]:
        return lambda: alignment.evaluate(m, subset, "bench", {"batch_size": batch_size, "amp": False},
                                          preprocess=preprocess, device=torch.device("cpu"))

    for name, task in (("accuracy", accuracy_task), ("alignment", alignment_task)):
        rows.append(bench.measure(case.label, name, B, task(fast, B, samples),
                                  lambda: seconds_per_call(full_fwd, bench.min_seconds),
                                  task(model, 1, samples[:paper_n]), paper_n, passes="1 fwd"))
    return rows


# ------------------------------------------------------------------------------------------ main

TARGETS = """targets (issue 8): single-pass methods (saliency, gradcam, guided_gradcam, attention) >= 8x the paper's
way on the default architectures and >= 2.5x on ResNet-50 at 224 px; ig and ig_smoothgrad eff >= 0.8;
LOST <= 2 forward passes per image (1 / eff)."""


def verdicts(rows: list[Row]) -> None:
    print("\n" + TARGETS)
    for r in rows:
        if r.name in A.SINGLE_PASS or r.name.startswith(("shared", "gradcam,")):
            need = 2.5 if r.case == "resnet50" else 8.0
            ok = r.speedup is not None and r.speedup >= need
            print(f"  {'met ' if ok else 'MISS'} {r.case:12s} {r.name:22s} speedup {fmt(r.speedup, '.1f')} "
                  f"(need {need}; at most {fmt(r.max_speedup, '.1f')} from the passes alone)")
        elif r.name in ("ig", "ig_smoothgrad"):
            ok = r.efficiency is not None and r.efficiency >= 0.8
            print(f"  {'met ' if ok else 'MISS'} {r.case:12s} {r.name:16s} eff {fmt(r.efficiency, '.2f')} (need 0.8)")
        elif r.name.startswith("LOST"):
            passes = None if not r.efficiency else 1 / r.efficiency
            ok = passes is not None and passes <= 2
            print(f"  {'met ' if ok else 'MISS'} {r.case:12s} {r.name:16s} {fmt(passes, '.2f')} forward passes "
                  "per image (need <= 2)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--threads", type=int, default=1, help="torch intra-op threads (1 or 2 on this machine)")
    parser.add_argument("--quick", action="store_true", help="one round, fewer images: a few minutes")
    parser.add_argument("--repeats", type=int, default=3, help="rounds per measurement (the best is reported)")
    parser.add_argument("--repeats-resnet50", type=int, default=1, help="rounds for ResNet-50 (minutes each)")
    parser.add_argument("--clock", choices=["auto", "cpu", "wall"], default="auto",
                        help="auto: the main thread's CPU time with --threads 1, wall time otherwise")
    parser.add_argument("--cases", nargs="+", default=["test_resnet", "test_vit", "resnet50"])
    parser.add_argument("--methods", nargs="+", default=list(A.METHODS))
    parser.add_argument("--config", type=Path, default=Path("config.yaml"),
                        help="the study whose architectures test_resnet and test_vit are built as")
    parser.add_argument("--min-seconds", type=float, default=0.5, help="repeat a call until this long")
    parser.add_argument("--no-reuse-freed-memory", action="store_true",
                        help="leave glibc's malloc as it is (the workflow's jobs keep freed memory)")
    args = parser.parse_args()
    reused = False if args.no_reuse_freed_memory else reuse_freed_memory()
    torch.set_num_threads(args.threads)
    torch.set_num_interop_threads(1)
    global clock
    clock_name = args.clock if args.clock != "auto" else ("cpu" if args.threads == 1 else "wall")
    clock = CLOCKS[clock_name]
    repeats = 1 if args.quick else args.repeats
    all_cases = cases(args.config)
    print(f"torch {torch.__version__}, {args.threads} thread(s), {os.cpu_count()} CPUs, {clock_name} time, "
          f"{repeats} round(s) ({1 if args.quick else args.repeats_resnet50} for resnet50), "
          f"freed memory {'kept for reuse' if reused else 'returned (glibc default)'}, "
          f"load average {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    print(f"settings tiny: {TINY_SETTINGS}\nsettings resnet50: {RESNET50_SETTINGS}\n")
    print(HEADER)
    rows: list[Row] = []
    for name in args.cases:
        case = all_cases[name]
        rounds = repeats if name != "resnet50" or args.quick else args.repeats_resnet50
        rows += run_case(case, Bench(rounds, 0.0 if args.quick else args.min_seconds), args.quick, args.methods)
    print(f"\nload average at the end {' '.join(f'{v:.1f}' for v in os.getloadavg())}")
    verdicts(rows)


if __name__ == "__main__":
    main()
