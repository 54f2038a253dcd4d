# Dense models and their pruned descendants. IMP levels form a chain: each starts from the
# previous configured level; every other method starts from the dense model (SNIP from its
# initialisation, which the seed reproduces). With `fuse_evaluation` each of these jobs also
# evaluates the checkpoint it wrote (evaluate.smk explains the separate rule otherwise).


def prune_start(wildcards):
    if wildcards.method == "snip":
        return []
    parent = study.imp_parent(config, wildcards.sparsity) if wildcards.method == "imp" else None
    if parent is None:
        return checkpoint_path(wildcards.arch, "dense", "0", wildcards.seed)
    return checkpoint_path(wildcards.arch, "imp", parent, wildcards.seed)


def dense_weights(wildcards):
    """A local weights file is an input, so a change to it redoes the study of that architecture."""
    arch = config["architectures"][wildcards.arch]
    return [arch["weights_path"]] if arch.get("weights", "scratch") == "file" else []


rule dense:
    input:
        data=data_inputs,
        weights=dense_weights,
    output:
        checkpoint=f"{RESULTS}/models/{{arch}}/dense/seed{{seed}}.safetensors",
        **(evaluate_outputs("dense", "0") if FUSED else {}),
    params:
        arch=lambda wc: config["architectures"][wc.arch],
        schedule=lambda wc: study.schedule(config, wc.arch),
        recovery=config["pruning"]["recovery"] if config["pruning"]["recovery"]["mode"] == "bn" else {},
        tasks=config["tasks"] if FUSED else {},
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
        "../scripts/dense.py"


rule prune:
    input:
        data=data_inputs,
        start=prune_start,
    output:
        checkpoint=f"{RESULTS}/models/{{arch}}/{{method}}/{{sparsity}}/seed{{seed}}.safetensors",
        **(evaluate_outputs() if FUSED else {}),
    wildcard_constraints:
        method="magnitude|imp|snip|random",
    params:
        arch=lambda wc: config["architectures"][wc.arch],
        exclude=config["pruning"]["exclude"],
        recovery=config["pruning"]["recovery"],
        snip=lambda wc: config["pruning"]["snip"] if wc.method == "snip" else {},
        schedule=lambda wc: study.schedule(config, wc.arch) if wc.method == "snip" or config["pruning"]["recovery"]["mode"] == "finetune" else {},
        tasks=config["tasks"] if FUSED else {},
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
        "../scripts/prune.py"
