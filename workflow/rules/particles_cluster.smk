# A user's particle set aligned on a cluster: `align-particles --shard I/N` jobs, then
# `merge-poses` (docs/cluster.md).  Off unless config `particles_cluster.star` is set:
#
#   snakemake particles_cluster --cores all --config particles_cluster='{star: P.star, map: M.mrc}'
#   snakemake particles_cluster --profile profiles/slurm --configfile my_particles.yaml
#
# Each shard job declares threads, mem_mb and runtime: mem_mb from the memory budget
# (`memory_gib`, passed as --memory, which sets the chunk size: peak RSS ≈ budget) plus
# headroom; runtime from the shard's particle count and the measured throughput per thread
# (`particles_per_s_per_thread`, docs/cluster.md), with a safety factor.  A job killed at its
# time limit resumes from its checkpoint when it is retried (profiles/slurm: retries: 1).

PC = config.get("particles_cluster") or {}
PC_ENABLED = bool(PC.get("star"))

if PC_ENABLED:
    PC_DIR = f"{RESULTS}/{PC.get('name', 'particles')}"
    PC_SHARDS = int(PC.get("shards", 4))

    from radsvd.data.star import read_star as _read_star

    PC_PER_SHARD = -(-len(_read_star(PC["star"], require_ctf=False)) // PC_SHARDS)
    PC_RATE = float(PC.get("particles_per_s_per_thread", 2.0))   # per thread
    PC_FACTOR = float(PC.get("runtime_factor", 2.0))

    localrules:
        particles_merge,
        particles_cluster,

    rule particles_shard:
        input:
            star=PC["star"],
            map=PC["map"],
        output:
            star=f"{PC_DIR}/shards/shard{{shard}}.star",
            npz=f"{PC_DIR}/shards/shard{{shard}}.npz",
        params:
            spec=lambda wildcards: f"{int(wildcards.shard)}/{PC_SHARDS}",
            memory=float(PC.get("memory_gib", 2.0)),
            options=PC.get("options", ""),
        log:
            log_path("particles_cluster/shard{shard}"),
        threads: int(PC.get("threads", 2))
        resources:
            mem_mb=int(1024 * (float(PC.get("memory_gib", 2.0)) + 0.5)),
            runtime=lambda wildcards, threads: int(
                10 + PC_FACTOR * PC_PER_SHARD / (PC_RATE * threads) / 60),
        conda:
            "../envs/radsvd.yaml"
        shell:
            "radsvd --threads {threads} align-particles {input.star} {input.map} "
            "{params.options} --shard {params.spec} --memory {params.memory} --no-progress "
            "--out {output.star} 2> {log}"

    rule particles_merge:
        input:
            expand(f"{PC_DIR}/shards/shard{{shard}}.star", shard=range(1, PC_SHARDS + 1)),
        output:
            star=f"{PC_DIR}/poses.star",
            npz=f"{PC_DIR}/poses.npz",
        log:
            log_path("particles_cluster/merge"),
        conda:
            "../envs/radsvd.yaml"
        shell:
            "radsvd merge-poses {input} --out {output.star} 2> {log}"

    rule particles_cluster:
        input:
            f"{PC_DIR}/poses.star",
