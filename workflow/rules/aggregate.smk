# Aggregation: the per-dataset tidy tables concatenated into one table per experiment
# (one row per dataset × method × H, or dataset × method × K × H for the speedup sweep).


rule aggregate_image_tables:
    input:
        expand(f"{RESULTS}/{{ds}}/tables/image_alignment.tsv", ds=DATASETS),
    output:
        f"{RESULTS}/tables/image_alignment.tsv",
    params:
        table="image_alignment",
    log:
        log_path("aggregate_image_tables"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/aggregate_tables.py"


rule aggregate_volume_tables:
    input:
        expand(f"{RESULTS}/{{ds}}/tables/volume_alignment.tsv", ds=DATASETS),
    output:
        f"{RESULTS}/tables/volume_alignment.tsv",
    params:
        table="volume_alignment",
    log:
        log_path("aggregate_volume_tables"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/aggregate_tables.py"


rule aggregate_speedup_tables:
    input:
        expand(f"{RESULTS}/{MAIN}/speedup/K{{K}}.tsv", K=speedup_Ks()),
    output:
        f"{RESULTS}/tables/speedup_vs_K.tsv",
    params:
        table="speedup_vs_K",
    log:
        log_path("aggregate_speedup_tables"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/aggregate_tables.py"


# Timings: every `benchmark:` file gathered into one table, one row per rule × wildcards
# (the jobs: timing_jobs() in common.smk).


rule aggregate_timings:
    input:
        timing_inputs,
    output:
        f"{RESULTS}/tables/timings.tsv",
    params:
        jobs=timing_jobs,
    log:
        log_path("aggregate_timings"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/aggregate_timings.py"
