# Dense models, their matched controls and the pruned models. IMP levels form a chain: each
# starts from the previous configured level; magnitude and random start from the dense model;
# SNIP and its control start from the seed's initialisation.


rule dense:
    input:
        data_inputs,
        dense_weights,
    output:
        out=f"{RESULTS}/models/{{arch}}/dense/seed{{seed}}.safetensors",
    params:
        job="sweetspot.jobs.checkpoints:train_dense",
        arch=lambda wc: wc.arch,
        arch_cfg=lambda wc: config["architectures"][wc.arch],
        seed=lambda wc: int(wc.seed),
        data=DATA_PARAMS,
        schedule=lambda wc: study.schedule(config, wc.arch),
        device=config["device"],
        amp=config["amp"],
    log:
        f"{RESULTS}/logs/dense/{{arch}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/dense/{{arch}}/seed{{seed}}.tsv"
    priority: 10  # every pruned model but SNIP waits for it: start it before the SNIP jobs
    threads: res("dense")["threads"]
    resources:
        mem_mb=lambda wc, attempt: res("dense")["mem_mb"] * attempt,  # a retry after OOM asks for more
        runtime=res("dense")["runtime"],
        gpu=res("dense")["gpu"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/model_job.py"


rule control:
    input:
        data_inputs,
        unpack(control_inputs),
    output:
        out=f"{RESULTS}/models/{{arch}}/control-{{recipe}}/seed{{seed}}.safetensors",
    params:
        job="sweetspot.jobs.checkpoints:train_control",
        recipe=lambda wc: wc.recipe,
        arch=lambda wc: wc.arch,
        arch_cfg=lambda wc: config["architectures"][wc.arch],
        seed=lambda wc: int(wc.seed),
        data=DATA_PARAMS,
        recovery=lambda wc: config["pruning"]["recovery"] if wc.recipe != "snip" else {},
        snip=lambda wc: config["pruning"]["snip"] if wc.recipe == "snip" else {},
        schedule=lambda wc: study.schedule(config, wc.arch),
        device=config["device"],
        amp=config["amp"],
    log:
        f"{RESULTS}/logs/control/{{arch}}/{{recipe}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/control/{{arch}}/{{recipe}}/seed{{seed}}.tsv"
    threads: res("control")["threads"]
    resources:
        mem_mb=lambda wc, attempt: res("control")["mem_mb"] * attempt,
        runtime=res("control")["runtime"],
        gpu=res("control")["gpu"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/model_job.py"


rule prune:
    input:
        data_inputs,
        unpack(prune_inputs),
    output:
        out=f"{RESULTS}/models/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.safetensors",
    wildcard_constraints:
        method=alternatives(catalog.PRUNING_METHODS),
    params:
        job="sweetspot.jobs.checkpoints:prune_and_recover",
        method=lambda wc: wc.method,
        sparsity=lambda wc: wc.sparsity,
        arch=lambda wc: wc.arch,
        arch_cfg=lambda wc: config["architectures"][wc.arch],
        seed=lambda wc: int(wc.seed),
        data=DATA_PARAMS,
        exclude=config["pruning"]["exclude"],
        recovery=lambda wc: config["pruning"]["recovery"] if wc.method != "snip" else {},
        snip=lambda wc: config["pruning"]["snip"] if wc.method == "snip" else {},
        schedule=lambda wc: study.schedule(config, wc.arch),
        device=config["device"],
        amp=config["amp"],
    log:
        f"{RESULTS}/logs/prune/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.log",
    benchmark:
        f"{RESULTS}/benchmarks/prune/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.tsv"
    threads: res("prune")["threads"]
    resources:
        mem_mb=lambda wc, attempt: res("prune")["mem_mb"] * attempt,
        runtime=res("prune")["runtime"],
        gpu=res("prune")["gpu"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/model_job.py"
