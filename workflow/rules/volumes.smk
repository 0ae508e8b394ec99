# Volume alignment (paper §4, Figs 9–12): a set of imperfect reconstructions of the
# reference, randomly rotated; full and compressed SO(3) landscapes over the H sweep; the
# spectra of the radial kernel C and the degree kernel D; small volumes for isosurfaces.


rule test_volumes:
    input:
        stack=f"{RESULTS}/{{ds}}/data/particles.mrcs",
        star=f"{RESULTS}/{{ds}}/data/particles.star",
        reference=f"{RESULTS}/{{ds}}/data/reference.mrc",
    output:
        f"{RESULTS}/{{ds}}/volumes/volumes.npz",
    params:
        cfg=dataset_keys("volumes.box", "volumes.n_volumes", "volumes.images_per_volume",
                         "volumes.pose_error_deg", "synthetic.snr", "seed"),
    log:
        log_path("{ds}/test_volumes"),
    threads: threads_for("volumes")
    resources:
        mem_mb=mem_for("volumes"),
        runtime=runtime_for("volumes"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/test_volumes.py"


rule align_volumes:
    input:
        f"{RESULTS}/{{ds}}/volumes/volumes.npz",
    output:
        table=f"{RESULTS}/{{ds}}/tables/volume_alignment.tsv",
        spectra=f"{RESULTS}/{{ds}}/figdata/volume_spectra.npz",
    params:
        cfg=dataset_keys("volumes.K", "volumes.ranks", "volumes.repeats", "name", "source",
                         "description"),
    log:
        log_path("{ds}/align_volumes"),
    benchmark:
        f"{RESULTS}/benchmarks/{{ds}}/align_volumes.tsv"
    threads: threads_for("volumes")
    resources:
        mem_mb=mem_for("volumes"),
        runtime=runtime_for("volumes"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/align_volumes.py"


rule isosurface_data:
    input:
        f"{RESULTS}/{{ds}}/volumes/volumes.npz",
    output:
        f"{RESULTS}/{{ds}}/figdata/isosurfaces.npz",
    params:
        cfg=dataset_keys("description"),
        figure=config["isosurfaces"],
    log:
        log_path("{ds}/isosurface_data"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/isosurface_data.py"
