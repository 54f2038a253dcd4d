# One job per checkpoint evaluates every configured task: the checkpoint and the datasets
# are loaded once, and the per-job start-up cost is paid once instead of once per task.
# Each task still writes its own Parquet file (the artifact contract). With `fuse_evaluation`
# the dense and prune jobs evaluate their own checkpoint instead (models.smk) and this rule
# does not exist.


if not FUSED:

    rule evaluate:
        input:
            data=data_inputs,
            checkpoint=lambda wc: checkpoint_path(wc.arch, wc.method, wc.sparsity, wc.seed),
        output:
            **evaluate_outputs(),
        params:
            tasks=config["tasks"],
            arch=lambda wc: config["architectures"][wc.arch],
        log:
            f"{RESULTS}/logs/evaluate/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.log",
        benchmark:
            f"{RESULTS}/benchmarks/evaluate/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.tsv"
        threads: res("evaluate")["threads"]
        resources:
            mem_mb=lambda wc, attempt: res("evaluate")["mem_mb"] * attempt,  # a retry after OOM asks for more
            runtime=res("evaluate")["runtime"],
            gpu=res("evaluate")["gpu"],
        conda:
            "../../envs/sweetspot.yaml"
        script:
            "../scripts/evaluate.py"
