# The reproducibility check (docs/reproducibility.md), part of the default target:
#   check_figures  every figure's numbers (the CSVs beside the PNGs, wf_figdata.py) against the
#                  committed reference set (check.reference: figures/ for the default
#                  configuration) under tolerances derived from each quantity's kind, and the
#                  paper's stated results against this run (check.claims); writes
#                  {results}/report.md and report.html whatever the outcome;
#   check          fails when anything failed, so the main command fails.
# The one-line summary is printed at the end of the run (onsuccess / onerror below).

rule check_figures:
    input:
        figures=all_figures(),
        data=figure_data_files(),
        reference=reference_files(),
    output:
        report=f"{RESULTS}/report.md",
        html=f"{RESULTS}/report.html",
        summary=CHECK_SUMMARY,
    params:
        figures=[(k, Path(figure_path(k)).stem, k in TIMING_FIGURE_NAMES)
                 for k in figure_keys()],
        figures_dir=lambda wildcards: FIGURES,
        reference=lambda wildcards: REFERENCE,
        claims=bool(CHECK.get("claims", True)),
        figure_format=config.get("figure_format", "png"),
    log:
        log_path("check_figures"),
    threads: 1
    resources:
        mem_mb=mem_for("default"),
        runtime=runtime_for("default"),
    conda:
        "../envs/radsvd.yaml"
    script:
        "../scripts/check_figures.py"


rule check:
    input:
        CHECK_SUMMARY,
    output:
        touch(f"{RESULTS}/check/passed"),
    log:
        log_path("check"),
    threads: 1
    run:
        summary = json.loads(Path(input[0]).read_text())
        if not summary["passed"]:
            raise WorkflowError(summary["summary"])


onsuccess:
    _print_check_summary(fresh_only=False)


onerror:
    _print_check_summary(fresh_only=True)
