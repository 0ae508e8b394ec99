# Figures: one script per figure, reading only the aggregated tables or the small arrays
# saved by the rules above.  fig01–fig12 are numbered as in the paper; fig13 (speedup as a
# function of K) and fig14 (radial-SVD against the baseline compressions) come from the
# reference code's extra experiments, fig15 from the workflow's own benchmark files.
# figure_path() (common.smk) puts the reference figures in `figures:` and the figures of
# measured times (fig08_speedup, fig11_speedup, fig13–15) in {results}/figures/.

CASESTUDY = f"{RESULTS}/{MAIN}/figdata/casestudy.npz"
IMAGE_TABLE = f"{RESULTS}/tables/image_alignment.tsv"
VOLUME_TABLE = f"{RESULTS}/tables/volume_alignment.tsv"


rule fig01_images:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig01"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig01"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig01_images.py"


rule fig02_two_rings_useful:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig02"),
    params:
        style=config["style"],
        pair="useful",
    log:
        log_path("figures/fig02"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig02_two_rings.py"


rule fig03_two_rings_amplitude:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig03"),
    params:
        style=config["style"],
        pair="amplitude",
    log:
        log_path("figures/fig03"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig03_two_rings.py"


rule fig04_spectrum_C:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig04"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig04"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig04_spectrum_C.py"


rule fig05_landscape_image_template:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig05"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig05"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig05_landscape_image_template.py"


rule fig06_landscape_image_image:
    input:
        CASESTUDY,
    output:
        *figure_outputs("fig06"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig06"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig06_landscape_image_image.py"


rule fig07_gallery:
    input:
        f"{RESULTS}/{MAIN}/figdata/gallery.npz",
    output:
        *figure_outputs("fig07"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig07"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig07_gallery.py"


rule fig08_image_alignment:
    input:
        IMAGE_TABLE,
    output:
        *figure_outputs("fig08"),
    params:
        style=config["style"],
        dataset=MAIN,
        title=dataset_config(MAIN)["description"],
    log:
        log_path("figures/fig08"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig08_image_alignment.py"


rule fig08_speedup:
    input:
        IMAGE_TABLE,
    output:
        *figure_outputs("fig08_speedup"),
    params:
        style=config["style"],
        table="image_alignment",
        dataset=MAIN,
        title=dataset_config(MAIN)["description"],
    log:
        log_path("figures/fig08_speedup"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/speedup_over_H.py"


rule fig09_isosurfaces:
    input:
        f"{RESULTS}/{MAIN}/figdata/isosurfaces.npz",
    output:
        *figure_outputs("fig09"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig09"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig09_isosurfaces.py"


rule fig10_volume_spectra:
    input:
        f"{RESULTS}/{MAIN}/figdata/volume_spectra.npz",
    output:
        *figure_outputs("fig10"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig10"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig10_volume_spectra.py"


rule fig11_volume_alignment:
    input:
        VOLUME_TABLE,
    output:
        *figure_outputs("fig11"),
    params:
        style=config["style"],
        dataset=MAIN,
        title=dataset_config(MAIN)["description"],
    log:
        log_path("figures/fig11"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig11_volume_alignment.py"


rule fig11_speedup:
    input:
        VOLUME_TABLE,
    output:
        *figure_outputs("fig11_speedup"),
    params:
        style=config["style"],
        table="volume_alignment",
        dataset=MAIN,
        title=dataset_config(MAIN)["description"],
    log:
        log_path("figures/fig11_speedup"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/speedup_over_H.py"


rule fig12_datasets:
    input:
        images=IMAGE_TABLE,
        volumes=VOLUME_TABLE,
        isosurfaces=expand(f"{RESULTS}/{{ds}}/figdata/isosurfaces.npz", ds=SURVEY),
    output:
        *figure_outputs("fig12"),
    params:
        style=config["style"],
        datasets=SURVEY,
        descriptions=[dataset_config(d)["description"] for d in SURVEY],
    log:
        log_path("figures/fig12"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig12_datasets.py"


rule fig13_speedup_vs_K:
    input:
        f"{RESULTS}/tables/speedup_vs_K.tsv",
    output:
        *figure_outputs("fig13"),
    params:
        style=config["style"],
        repeats=config["speedup_vs_K"]["repeats"],
    log:
        log_path("figures/fig13"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig13_speedup_vs_K.py"


rule fig14_method_comparison:
    input:
        IMAGE_TABLE,
        POSE_SCORE_INPUTS,
    output:
        *figure_outputs("fig14"),
    params:
        style=config["style"],
        dataset=MAIN,
        title=dataset_config(MAIN)["description"],
        shift_step=config["shifts"]["shift_step"],
    log:
        log_path("figures/fig14"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig14_method_comparison.py"


rule fig15_timings:
    input:
        f"{RESULTS}/tables/timings.tsv",
    output:
        *figure_outputs("fig15"),
    params:
        style=config["style"],
    log:
        log_path("figures/fig15"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig15_timings.py"
