# Data: synthetic stand-ins (simulated offline) or real datasets fetched through
# data_manifest.yaml (radsvd.data.fetch: verified, atomic, resumable, only the first
# particles), then the same preprocessing for both.  Outputs of this stage, per dataset:
#   {results}/{ds}/data/particles.mrcs   normalised particle stack (first n_images)
#   {results}/{ds}/data/particles.star   RELION 3.1 STAR: poses (estimated or true) and CTF
#   {results}/{ds}/data/reference.mrc    the reference map, at the particles' box and pixel


rule simulate_dataset:
    output:
        stack=f"{RESULTS}/{{ds}}/raw/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/raw/particles.star",
        reference=f"{RESULTS}/{{ds}}/raw/reference.mrc",
    params:
        cfg=dataset_keys("synthetic", "images.n_images", "images.box", "seed"),
    wildcard_constraints:
        ds=_alternatives(SYNTHETIC),
    log:
        log_path("{ds}/simulate_dataset"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/simulate_dataset.py"


rule fetch_dataset:
    output:
        record=f"{config['resources_dir']}/{{ds}}/fetched.json",
    params:
        cfg=dataset_keys("real", "images.n_images"),
        dest=lambda wc: f"{config['resources_dir']}/{wc.ds}",
    wildcard_constraints:
        ds=_alternatives(REAL),
    log:
        log_path("{ds}/fetch_dataset"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("fetch"),
    retries: 2
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fetch_dataset.py"


rule preprocess:
    input:
        unpack(preprocess_inputs),
    output:
        stack=f"{RESULTS}/{{ds}}/data/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
        reference=f"{RESULTS}/{{ds}}/data/reference.mrc",
    params:
        cfg=dataset_keys("source", "real", "images.box", "images.n_images"),
    log:
        log_path("{ds}/preprocess"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/preprocess.py"
