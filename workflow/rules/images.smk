# Image alignment (paper §2–3, Figs 1–8, 13, 14): polar Fourier–Bessel coefficients of the
# particles and of the CTF-modulated templates, then full (ground truth) and compressed
# landscapes over the H sweep, sharded over images, gathered into one tidy table per dataset.


rule polar_images:
    input:
        stack=f"{RESULTS}/{{ds}}/data/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
    output:
        f"{RESULTS}/{{ds}}/polar/images.npz",
    params:
        cfg=dataset_keys("images.n_images", "images.K", "images.ctf_tolerance"),
    log:
        log_path("{ds}/polar_images"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/polar_images.py"


rule templates:
    input:
        reference=f"{RESULTS}/{{ds}}/data/reference.mrc",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
    output:
        f"{RESULTS}/{{ds}}/polar/templates.npz",
    params:
        cfg=dataset_keys("images.K", "images.viewing_directions", "images.n_images", "seed"),
    log:
        log_path("{ds}/templates"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/templates.py"


rule align_images_shard:
    input:
        images=f"{RESULTS}/{{ds}}/polar/images.npz",
        templates=f"{RESULTS}/{{ds}}/polar/templates.npz",
    output:
        f"{RESULTS}/{{ds}}/align/{{method}}/shard{{shard}}.npz",
    params:
        cfg=dataset_keys("images.ranks", "images.kernel", "images.repeats"),
        n_shards=lambda wc: n_shards(wc.ds),
    log:
        log_path("{ds}/align_images/{method}_shard{shard}"),
    benchmark:
        f"{RESULTS}/benchmarks/{{ds}}/align_images_{{method}}_shard{{shard}}.tsv"
    threads: threads_for("align")
    resources:
        mem_mb=mem_for("align"),
        runtime=runtime_for("align"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/align_images_shard.py"


rule gather_images:
    input:
        lambda wc: expand(
            f"{RESULTS}/{wc.ds}/align/{{method}}/shard{{shard}}.npz",
            method=methods_for(wc.ds),
            shard=range(n_shards(wc.ds)),
        ),
    output:
        f"{RESULTS}/{{ds}}/tables/image_alignment.tsv",
    params:
        cfg=dataset_keys("name", "source"),
    log:
        log_path("{ds}/gather_images"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/gather_images.py"


rule case_study:
    input:
        stack=f"{RESULTS}/{{ds}}/data/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
        reference=f"{RESULTS}/{{ds}}/data/reference.mrc",
        templates=f"{RESULTS}/{{ds}}/polar/templates.npz",
    output:
        casestudy=f"{RESULTS}/{{ds}}/figdata/casestudy.npz",
        gallery=f"{RESULTS}/{{ds}}/figdata/gallery.npz",
    params:
        cfg=dataset_keys("images.K", "images.ctf_tolerance", "description"),
        casestudy=config["case_study"],
    log:
        log_path("{ds}/case_study"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/case_study.py"


rule speedup_at_K:
    input:
        stack=f"{RESULTS}/{{ds}}/data/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
        reference=f"{RESULTS}/{{ds}}/data/reference.mrc",
    output:
        f"{RESULTS}/{{ds}}/speedup/K{{K}}.tsv",
    params:
        cfg=dataset_keys("name", "images.ctf_tolerance", "images.kernel"),
        speedup={k: config["speedup_vs_K"][k] for k in ("n_images", "H", "repeats")},
    log:
        log_path("{ds}/speedup_at_K{K}"),
    benchmark:
        f"{RESULTS}/benchmarks/{{ds}}/speedup_at_K{{K}}.tsv"
    threads: threads_for("align")
    resources:
        mem_mb=mem_for("align"),
        runtime=runtime_for("align"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/speedup_at_K.py"
