# Merge every task's Parquet, compute sweet spots with intervals, draw the figures.
# Aggregation, plots and human data are small, quick jobs: on a cluster they run on the
# submitting node (so does the synthetic data generation, a few seconds that would otherwise
# cost a scheduler round trip).

localrules: aggregate, plots, human_data, synthetic_data


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
        + [checkpoint_path(wc.arch, wc.method, s, SEEDS[0]) for s in study.sparsity_labels(config, wc.method)],
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
    message:
        "human trials of the alignment datasets: " + ", ".join(HUMAN_EXPERIMENTS)
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
