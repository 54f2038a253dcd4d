# Merge every task's Parquet, compute sweet spots with intervals, draw the figures.
# These are small, quick jobs: on a cluster they run on the submitting node (so does the
# synthetic data generation, a few seconds that would otherwise cost a scheduler round trip).

localrules: aggregate, plots, gallery, human_reference, synthetic_data


def plot_targets():
    targets = []
    for ext in ("png", "svg"):
        targets += [f"{RESULTS}/plots/curves-{task}.{ext}" for task in TASKS]
        targets += [f"{RESULTS}/plots/gains-{arch}.{ext}" for arch in ARCHS]
    if "interpretability" in TASKS and config["tasks"]["interpretability"].get("gallery_images", 4) > 0:
        targets += [f"{RESULTS}/plots/gallery/{arch}-{method}.png" for arch in ARCHS for method in METHODS]
    return targets


# Alignment datasets with human trials get the human-to-human reference values beside the model's.
HUMAN_EXPERIMENTS = sorted(
    {study.HUMAN_EXPERIMENTS[d] for d in config["tasks"].get("alignment", {}).get("datasets", []) if d in study.HUMAN_EXPERIMENTS}
)


rule aggregate:
    input:
        all_metrics(),
    output:
        metrics=f"{RESULTS}/metrics.parquet",
        curves=f"{RESULTS}/curves.parquet",
        table=f"{RESULTS}/sweet_spots.parquet",
        csv=report(f"{RESULTS}/sweet_spots.csv", caption="../report/sweet_spots.rst", category="Sweet spots"),
        markdown=f"{RESULTS}/sweet_spots.md",
        summary=f"{RESULTS}/summary.md",
    params:
        stats=config["stats"],
    log:
        f"{RESULTS}/logs/aggregate.log",
    benchmark:
        f"{RESULTS}/benchmarks/aggregate.tsv"
    threads: res("aggregate")["threads"]
    resources:
        mem_mb=res("aggregate")["mem_mb"],
        runtime=res("aggregate")["runtime"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/aggregate.py"


rule plots:
    input:
        curves=f"{RESULTS}/curves.parquet",
    output:
        curves=[
            report(f"{RESULTS}/plots/curves-{task}.{ext}", caption="../report/curves.rst", category="Curves",
                   subcategory=task)
            for task in TASKS for ext in ("png", "svg")
        ],
        gains=[
            report(f"{RESULTS}/plots/gains-{arch}.{ext}", caption="../report/gains.rst", category="Gains",
                   subcategory=arch)
            for arch in ARCHS for ext in ("png", "svg")
        ],
    log:
        f"{RESULTS}/logs/plots.log",
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/plots.py"


rule gallery:
    input:
        lambda wc: [f"{RESULTS}/gallery/{wc.arch}/dense/0/seed{SEEDS[0]}.safetensors"]
        + [f"{RESULTS}/gallery/{wc.arch}/{wc.method}/{s}/seed{SEEDS[0]}.safetensors" for s in SPARSITIES],
    output:
        report(f"{RESULTS}/plots/gallery/{{arch}}-{{method}}.png", caption="../report/gallery.rst",
               category="Attribution gallery", subcategory="{arch}"),
    log:
        f"{RESULTS}/logs/gallery/{{arch}}-{{method}}.log",
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/gallery.py"


rule human_reference:
    output:
        report(f"{RESULTS}/human_reference.csv", caption="../report/human_reference.rst", category="Sweet spots"),
    params:
        experiments=HUMAN_EXPERIMENTS,
    log:
        f"{RESULTS}/logs/human_reference.log",
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/human_reference.py"
