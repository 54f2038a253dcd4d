# Datasets: the embedded synthetic benchmark is generated; real data is read where the config points.


rule synthetic_data:
    output:
        out=f"{DATA}/synthetic/MANIFEST.json",
    params:
        job="sweetspot.jobs.reports:generate_synthetic",
        synthetic=config.get("synthetic", {}),
    log:
        f"{RESULTS}/logs/synthetic_data.log",
    benchmark:
        f"{RESULTS}/benchmarks/synthetic_data.tsv"
    threads: 1
    resources:
        mem_mb=res("data")["mem_mb"],
        runtime=res("data")["runtime"],
    conda:
        "../../envs/sweetspot.yaml"
    script:
        "../scripts/report_job.py"
