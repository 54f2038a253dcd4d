# Merge every task's Parquet, compute sweet spots with intervals, draw the figures.
# Aggregation, plots and human data are small, quick jobs: on a cluster they run on the
# submitting node (so does the synthetic data generation, a few seconds that would otherwise
# cost a scheduler round trip).

localrules: aggregate, plots, human_data, synthetic_data

# Alignment datasets with human trials: dataset -> human experiment.
HUMAN_EXPERIMENTS = study.human_experiments(config)
FIGURES = study.figures(config)  # figure name -> what the plots job draws there


def plot_targets():
    targets = [f"{RESULTS}/plots/{name}.{ext}" for name in FIGURES for ext in ("png", "svg")]
    targets.append(f"{RESULTS}/summary.html")
    if "interpretability" in TASKS and config["tasks"]["interpretability"].get("gallery_images", 4) > 0:
        targets += [f"{RESULTS}/plots/gallery/{arch}-{method}.png" for arch in ARCHS for method in METHODS]
    return targets


def figure_in_report(name):
    """A figure's PNG in the report: the overview beside the summary, curves by task."""
    spec, path = FIGURES[name], f"{RESULTS}/plots/{name}.png"
    if spec["kind"] == "curves":
        return report(path, caption="../report/curves.rst", category="2 Curves", subcategory=spec["task"])
    if spec["role"] == "headline":
        return report(path, caption="../report/overview.rst", category="1 Summary")
    return report(path, caption="../report/overview_exploratory.rst", category="3 Exploratory metrics")


def plots_inputs(wildcards):
    inputs = {"curves": f"{RESULTS}/curves.parquet", "summary": f"{RESULTS}/summary.md"}
    if HUMAN_EXPERIMENTS:
        inputs["reference"] = f"{RESULTS}/human/reference.csv"
    return inputs


def aggregate_inputs(wildcards):
    inputs = {"evaluations": all_metrics()}
    if HUMAN_EXPERIMENTS:
        inputs["human_trials"] = f"{RESULTS}/human/trials.parquet"
    return inputs


rule aggregate:
    input:
        unpack(aggregate_inputs),
    output:
        metrics=f"{RESULTS}/metrics.parquet",
        curves=f"{RESULTS}/curves.parquet",
        table=f"{RESULTS}/sweet_spots.parquet",
        csv=report(f"{RESULTS}/sweet_spots.csv", caption="../report/sweet_spots.rst", category="4 Sweet-spot table"),
        markdown=f"{RESULTS}/sweet_spots.md",
        summary=f"{RESULTS}/summary.md",
    params:
        job="sweetspot.jobs.reports:aggregate_study",
        stats=config["stats"],
        controls=CONTROLS,
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
        "../scripts/report_job.py"


rule plots:
    input:
        unpack(plots_inputs),
    output:
        # PNG for the report, SVG for papers
        figures=[figure_in_report(name) for name in FIGURES] + [f"{RESULTS}/plots/{name}.svg" for name in FIGURES],
        summary_page=report(f"{RESULTS}/summary.html", caption="../report/summary.rst", category="1 Summary"),
    params:
        job="sweetspot.jobs.reports:draw_plots",
        specs=FIGURES,
        human_experiments=HUMAN_EXPERIMENTS,
    log:
        f"{RESULTS}/logs/plots.log",
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/report_job.py"


rule gallery:
    input:
        checkpoints=lambda wc: [checkpoint_path(wc.arch, catalog.DENSE, "0", SEEDS[0])]
        + ([checkpoint_path(wc.arch, CONTROLS[wc.method], "0", SEEDS[0])] if catalog.is_control(CONTROLS[wc.method]) else [])
        + [checkpoint_path(wc.arch, wc.method, s, SEEDS[0]) for s in SPARSITIES],
    output:
        out=report(f"{RESULTS}/plots/gallery/{{arch}}-{{method}}.png", caption="../report/gallery.rst",
                   category="5 Attribution gallery", subcategory="{arch}"),
    params:
        job="sweetspot.jobs.evaluation:draw_gallery",
        arch=lambda wc: wc.arch,
        arch_cfg=lambda wc: config["architectures"][wc.arch],
        method=lambda wc: wc.method,
        settings=lambda wc: study.task_settings(config, "interpretability"),
        data=DATA_PARAMS,
        device=config["device"],
        title=lambda wc: f"{wc.arch}, {wc.method} pruning",
    log:
        f"{RESULTS}/logs/gallery/{{arch}}-{{method}}.log",
    threads: res("evaluate")["threads"]
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/model_job.py"


rule human_data:
    output:
        trials=f"{RESULTS}/human/trials.parquet",
        reference=report(f"{RESULTS}/human/reference.csv", caption="../report/human_reference.rst",
                         category="4 Sweet-spot table"),
    params:
        job="sweetspot.jobs.reports:collect_human_data",
        experiments=HUMAN_EXPERIMENTS,
        data=DATA_PARAMS,
    log:
        f"{RESULTS}/logs/human_data.log",
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/report_job.py"
