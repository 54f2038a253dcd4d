"""How long does aggregation of a paper-sized study take, and how much memory does it need?

Writes synthetic per-job Parquet files laid out like the workflow's
(results/metrics/<task>/<arch>/<method>/<sparsity>/seed<k>.parquet) for 4 architectures x
(dense, two controls, 4 methods x 12 sparsities) x 3 seeds x 4 tasks, 1000 items each and a few
metrics per task, then, in a fresh process, times reading + concatenating them,
`table.compute` (paired bootstrap of every comparison against its control, set-level shape bias
recomputed from its per-item decisions, the family-wise bands) and writing the tables, and prints
wall times and peak resident memory.

    python benchmarks/aggregate_scale.py [--n-boot 1000] [--items 1000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from sweetspot.contract import COLUMNS  # noqa: E402

ARCHS = ["resnet18", "resnet50", "vit_b32", "efficientnet"]
METHODS = ["magnitude", "imp", "snip", "random"]
SPARSITIES = [0.2, 0.36, 0.49, 0.59, 0.67, 0.74, 0.79, 0.83, 0.87, 0.89, 0.91, 0.95]
SEEDS = [0, 1, 2]
# task -> (dataset, [(variant, metric, per_item)])
TASKS = {
    "accuracy": ("imagenet-val", [("", "top1", True), ("", "top5", True)]),
    "interpretability": ("voc12-val", [("gradcam", "rma", True), ("gradcam", "rra", True),
                                       ("ig", "rma", True), ("gradcam", "deletion_auc_norm", True)]),
    "discovery": ("voc07-trainval", [("lost", "corloc", True), ("lost", "iou", True)]),
    "alignment": ("cue-conflict", [("", "shape_decision", True), ("", "texture_decision", True),
                                   ("", "shape_bias", False)]),
}
CONTROLS = {"magnitude": "control-finetune", "imp": "control-finetune", "random": "control-finetune",
            "snip": "control-snip"}


def job_frame(arch: str, method: str, sparsity: float, seed: int, task: str, n_items: int,
              rng: np.random.Generator) -> pa.Table:
    dataset, metrics = TASKS[task]
    items = np.array([f"{dataset}/{i:06d}.jpg" for i in range(n_items)])
    columns: dict[str, list] = {c: [] for c in COLUMNS}
    for variant, metric, per_item in metrics:
        n = n_items if per_item else 1
        effect = 0.05 * np.sin(3 * sparsity)  # a smooth made-up curve
        if metric in ("top1", "top5", "corloc", "shape_decision", "texture_decision"):
            value = (rng.random(n) < 0.6 + effect).astype(float)
        else:
            value = rng.normal(0.4 + effect, 0.15, n)
        columns["item"].append(items if per_item else np.array([""]))
        columns["value"].append(value)
        for key, val in (("variant", variant), ("metric", metric)):
            columns[key].append(np.full(n, val, dtype=object))
    n_rows = sum(len(v) for v in columns["value"])
    data = {
        "benchmark": np.full(n_rows, "paper", dtype=object), "arch": np.full(n_rows, arch, dtype=object),
        "method": np.full(n_rows, method, dtype=object), "sparsity": np.full(n_rows, sparsity),
        "sparsity_actual": np.full(n_rows, sparsity), "seed": np.full(n_rows, seed, dtype=np.int64),
        "task": np.full(n_rows, task, dtype=object), "dataset": np.full(n_rows, dataset, dtype=object),
        "variant": np.concatenate(columns["variant"]), "metric": np.concatenate(columns["metric"]),
        "item": np.concatenate(columns["item"]), "value": np.concatenate(columns["value"]),
    }
    return pa.table(data)


def generate(root: Path, n_items: int) -> list[Path]:
    rng = np.random.default_rng(0)
    paths = []
    jobs = [("dense", 0.0), ("control-finetune", 0.0), ("control-snip", 0.0)]
    jobs += [(m, s) for m in METHODS for s in SPARSITIES]
    for task in TASKS:
        for arch in ARCHS:
            for method, sparsity in jobs:
                for seed in SEEDS:
                    path = root / "metrics" / task / arch / method / f"{sparsity:g}" / f"seed{seed}.parquet"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    pq.write_table(job_frame(arch, method, sparsity, seed, task, n_items, rng), path)
                    paths.append(path)
    return paths


def measure(root: Path, n_boot: int) -> None:
    from sweetspot.analysis import summary, table

    paths = sorted((root / "metrics").rglob("*.parquet"))
    start = time.perf_counter()
    frame = table.read_metrics(paths)
    read_s = time.perf_counter() - start
    start = time.perf_counter()
    curves, found = table.compute(frame, table.Settings(controls=CONTROLS, n_boot=n_boot))
    compute_s = time.perf_counter() - start
    start = time.perf_counter()
    summary.write_tables(found, summary.summary(found, curves, 1.0), table=root / "t.parquet", csv=root / "t.csv",
                         markdown=root / "t.md")
    write_s = time.perf_counter() - start
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"files {len(paths)}  rows {len(frame):,}  curves {len(curves)}  table rows {len(found)}  "
          f"comparisons {int((curves['sparsity'] > 0).sum())}  n_boot {n_boot}")
    print(f"read+concat {read_s:.1f} s  compute {compute_s:.1f} s  write {write_s:.2f} s  "
          f"total {read_s + compute_s + write_s:.1f} s  peak RSS {peak_mb:.0f} MB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n-boot", type=int, default=1000)
    parser.add_argument("--items", type=int, default=1000)
    parser.add_argument("--keep", type=Path, help="write the files here and keep them")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the timed child process
    args = parser.parse_args()
    if args.measure:
        measure(args.measure, args.n_boot)
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = args.keep or Path(tmp)
        start = time.perf_counter()
        paths = generate(root, args.items)
        print(f"generated {len(paths)} files in {time.perf_counter() - start:.1f} s (not timed below)")
        # a fresh process, so that peak memory is aggregation's alone
        subprocess.run([sys.executable, __file__, "--measure", str(root), "--n-boot", str(args.n_boot)], check=True)


if __name__ == "__main__":
    main()
