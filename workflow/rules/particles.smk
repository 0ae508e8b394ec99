# Translations (paper §5, eq. 118–121) and pose assignment, on the main dataset when it is
# synthetic: particles simulated with random shifts (not centred), then
#   shift_landscapes  landscapes X(γ, δ) over the searched shift disc, full against rank H for
#                     the unshifted radial-SVD kernel, the eq. 118 (shift-svd) and eq. 119
#                     (gaussian-shift-svd) kernels and the baselines: correlation and f (fig16);
#   pose_scores       align-particles' poses (radsvd.images.particles) against the true poses:
#                     median angular and shift errors per method (fig14's last panel).
# Deterministic (no timings): fig16 is checked against the reference.  Each rule gets only the
# configuration it reads (the `shifts` section, and of the main dataset its simulation
# settings, box, seed and CTF tolerance).

SHIFTS_DIR = f"{RESULTS}/{MAIN}/shifts"
POSE_TABLE = f"{RESULTS}/tables/pose_scores.tsv"
SHIFT_TABLE = f"{RESULTS}/tables/shift_landscapes.tsv"
SHIFT_METHODS = ["radial-svd", "shift-svd", "gaussian-shift-svd", "frequency-marching",
                 "energy-pca"]

SHIFTS_ENABLED = config["datasets"][MAIN]["source"] == "synthetic"
POSE_SCORE_INPUTS = [POSE_TABLE] if SHIFTS_ENABLED else []   # fig14's extra input
if SHIFTS_ENABLED:
    FIGURE_NAMES["fig16"] = "fig16_shifts"


rule simulate_shifted:
    output:
        stack=f"{SHIFTS_DIR}/particles.mrcs",
        star=f"{SHIFTS_DIR}/particles.star",
        map=f"{SHIFTS_DIR}/map.mrc",
    params:
        synthetic=dataset_config(MAIN)["synthetic"],
        box=dataset_config(MAIN)["images"]["box"],
        seed=dataset_config(MAIN)["seed"],
        shifts=config["shifts"],
    log:
        log_path(f"{MAIN}/simulate_shifted"),
    threads: threads_for("default")
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/simulate_shifted.py"


rule shift_landscapes:
    input:
        star=f"{SHIFTS_DIR}/particles.star",
        map=f"{SHIFTS_DIR}/map.mrc",
    output:
        SHIFT_TABLE,
    params:
        ctf_tolerance=dataset_config(MAIN)["images"]["ctf_tolerance"],
        shifts=config["shifts"],
        methods=SHIFT_METHODS,
    log:
        log_path(f"{MAIN}/shift_landscapes"),
    threads: threads_for("align")
    resources:
        mem_mb=mem_for("align"),
        runtime=runtime_for("align"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/shift_landscapes.py"


rule pose_scores:
    input:
        star=f"{SHIFTS_DIR}/particles.star",
        map=f"{SHIFTS_DIR}/map.mrc",
    output:
        POSE_TABLE,
    params:
        ctf_tolerance=dataset_config(MAIN)["images"]["ctf_tolerance"],
        shifts=config["shifts"],
        methods=SHIFT_METHODS,
    log:
        log_path(f"{MAIN}/pose_scores"),
    threads: threads_for("align")
    resources:
        mem_mb=mem_for("align"),
        runtime=runtime_for("align"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/score_poses.py"


rule fig16_shifts:
    input:
        SHIFT_TABLE,
    output:
        *figure_outputs("fig16"),
    params:
        style=config["style"],
        title=dataset_config(MAIN)["description"],
        shifts=config["shifts"],
    log:
        log_path("figures/fig16"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/fig16_shifts.py"
