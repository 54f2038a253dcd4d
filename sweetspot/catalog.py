"""One list per concept: checkpoint kinds and metrics. Schema checks, the sweet-spot table, the
summary and the figures all read these lists; nothing else names a metric's direction or role.

Metric roles (docs/methods.md, "What a sweet spot is"):
- headline: tested with family-wise control per (architecture, task); can make a sweet spot.
  The defaults below are the paper's metrics; `stats.headline` picks others per task.
- exploratory: reported with its interval and a false-discovery-rate q-value, never a sweet spot.
- diagnostic: kept in metrics.parquet, never tested, never plotted as a metric. Either it
  describes the run (flags, layer sparsity) or a weaker model improves it for free
  (raw deletion AUC, the fraction of texture decisions), so a gain would not be a pruning
  benefit.
"""

from __future__ import annotations

from dataclasses import dataclass

DENSE = "dense"
PRUNING_METHODS = ("magnitude", "imp", "snip", "random")
# A control is a dense model trained exactly like a pruned model, minus the mask.
CONTROL_PREFIX = "control-"
CONTROL_RECIPES = ("finetune", "bn", "snip")
CONTROLS = tuple(CONTROL_PREFIX + recipe for recipe in CONTROL_RECIPES)
CHECKPOINT_METHODS = (DENSE, *CONTROLS, *PRUNING_METHODS)

TASKS = ("accuracy", "interpretability", "discovery", "alignment", "structure")


@dataclass(frozen=True)
class Metric:
    task: str
    display: str
    higher_is_better: bool
    role: str  # headline (a default headline metric), exploratory or diagnostic
    set_level: bool = False  # one value per condition (item "") instead of one per item


METRICS: dict[str, Metric] = {
    "top1": Metric("accuracy", "top-1 accuracy", True, "headline"),
    "top5": Metric("accuracy", "top-5 accuracy", True, "exploratory"),
    "rma": Metric("interpretability", "relevance mass accuracy", True, "headline"),
    "rra": Metric("interpretability", "relevance rank accuracy", True, "headline"),
    "pointing_game": Metric("interpretability", "pointing game", True, "exploratory"),
    # Deletion/insertion curves divided by the target's probability on the intact image: a
    # model that has lost confidence no longer scores a lower (better) deletion AUC for free.
    "deletion_auc_norm": Metric("interpretability", "deletion AUC (relative)", False, "exploratory"),
    "insertion_auc_norm": Metric("interpretability", "insertion AUC (relative)", True, "exploratory"),
    "deletion_auc": Metric("interpretability", "deletion AUC (raw probability)", False, "diagnostic"),
    "insertion_auc": Metric("interpretability", "insertion AUC (raw probability)", True, "diagnostic"),
    "flag_zero_map": Metric("interpretability", "all-zero maps", False, "diagnostic"),
    "flag_nonfinite_map": Metric("interpretability", "non-finite maps", False, "diagnostic"),
    "flag_skipped": Metric("", "items a task could not score", False, "diagnostic"),
    "corloc": Metric("discovery", "CorLoc", True, "headline"),
    "iou": Metric("discovery", "box IoU", True, "exploratory"),
    "mask_iou": Metric("discovery", "mask IoU", True, "exploratory"),
    # LOST's candidate count: k_patches, or fewer when an image has fewer patches (then LOST ranked them all).
    "k_effective": Metric("discovery", "LOST candidate patches", True, "diagnostic"),
    "shape_bias": Metric("alignment", "shape bias", True, "headline", set_level=True),
    "error_consistency": Metric("alignment", "error consistency with humans", True, "headline", set_level=True),
    "correct": Metric("alignment", "decision accuracy", True, "exploratory"),
    "observed_consistency": Metric("alignment", "observed consistency with humans", True, "exploratory",
                                   set_level=True),
    "accuracy_difference": Metric("alignment", "accuracy difference to humans", False, "exploratory",
                                  set_level=True),
    # The mean of `correct` (its interval comes from there) and the ingredients of shape bias:
    # a model that has stopped deciding makes fewer texture decisions for free.
    "accuracy": Metric("alignment", "decision accuracy (per condition)", True, "diagnostic", set_level=True),
    "shape_decision": Metric("alignment", "shape decisions", True, "diagnostic"),
    "texture_decision": Metric("alignment", "texture decisions", False, "diagnostic"),
    "shape_or_texture": Metric("alignment", "shape-or-texture decisions", True, "diagnostic", set_level=True),
    "layer_sparsity": Metric("structure", "layer sparsity", False, "diagnostic"),
    "layer_collapsed": Metric("structure", "collapsed layer", False, "diagnostic"),
    "collapsed_layers": Metric("structure", "collapsed layers", False, "diagnostic", set_level=True),
}

VARIANT_NAMES = {
    "saliency": "saliency", "ig": "Integrated Gradients", "ig_smoothgrad": "IG+SmoothGrad", "gradcam": "Grad-CAM",
    "guided_gradcam": "guided Grad-CAM", "attention": "attention", "lost": "LOST", "center_box": "centre box",
    "random_init": "LOST on an untrained model",
}


def default_headline() -> dict[str, list[str]]:
    """task -> its default headline metrics."""
    out: dict[str, list[str]] = {}
    for name, metric in METRICS.items():
        if metric.role == "headline":
            out.setdefault(metric.task, []).append(name)
    return out


def testable(task: str) -> list[str]:
    """Metrics of `task` that may be headline or exploratory (every non-diagnostic one)."""
    return [name for name, m in METRICS.items() if m.task == task and m.role != "diagnostic"]


def is_control(method: str) -> bool:
    return method.startswith(CONTROL_PREFIX)


def display(metric: str) -> str:
    return METRICS[metric].display if metric in METRICS else metric
