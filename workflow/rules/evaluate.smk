# One evaluation job per checkpoint and task. A task's settings are exactly its job's params,
# so editing one task re-runs that task's jobs only, and never training. On a cluster the
# profile can bundle a checkpoint's task jobs into one submission (profiles/slurm/config.yaml).


rule evaluate:
    input:
        data_inputs,
        checkpoint=lambda wc: checkpoint_path(wc.arch, wc.method, wc.sparsity, wc.seed),
    output:
        out=f"{RESULTS}/metrics/{{task}}/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.parquet",
    params:
        job="sweetspot.jobs.evaluation:evaluate_task",
        task=lambda wc: wc.task,
        settings=lambda wc: study.task_settings(config, wc.task),
        arch=lambda wc: wc.arch,
        arch_cfg=lambda wc: config["architectures"][wc.arch],
        method=lambda wc: wc.method,
        sparsity=lambda wc: wc.sparsity,
        seed=lambda wc: int(wc.seed),
        data=DATA_PARAMS,
        device=config["device"],
        amp=config["amp"],
    log:
        f"{RESULTS}/logs/evaluate/{{task}}/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/evaluate/{{task}}/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.tsv"
    threads: lambda wc: task_resources(wc)["threads"]
    resources:
        mem_mb=lambda wc, attempt: task_resources(wc)["mem_mb"] * attempt,  # a retry after OOM asks for more
        runtime=lambda wc: task_resources(wc)["runtime"],
        gpu=lambda wc: task_resources(wc)["gpu"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/model_job.py"
