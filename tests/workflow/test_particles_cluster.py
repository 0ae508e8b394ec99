"""The particles_cluster target (workflow/rules/particles_cluster.smk): shard jobs that declare
threads, mem_mb and runtime, and a merge equal to the unsharded align-particles run, run
locally (--cores) and through the cluster-generic executor with a submit command that starts
the job script on this machine (the real executor path: job scripts, submission, polling)."""

from __future__ import annotations

import importlib.util
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from radsvd.data.molecules import synthetic_molecule
from radsvd.data.simulate import Microscope, simulate_particles, write_particles
from tests.workflow.test_workflow import REPO, SNAKEMAKE, run_snakemake

pytestmark = pytest.mark.skipif(SNAKEMAKE is None, reason="snakemake is not installed")
OPTIONS = "--K 12 --rank 4 --method shift-svd --max-shift 16 --chunk 4"


@pytest.fixture(scope="module")
def particle_set(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster-data")
    mol = synthetic_molecule("trpv1-like")
    imgs, table = simulate_particles(mol, 14, 32, 8.0, snr=1.0, seed=2, max_shift=8.0,
                                     microscope=Microscope(n_micrographs=2))
    paths = write_particles(d, imgs, table, volume=mol.volume(32))
    ref = d / "unsharded.star"
    # one thread, as the jobs (the templates' NUFFT is not yet thread-count invariant)
    res = subprocess.run([sys.executable, "-m", "radsvd", "--threads", "1", "align-particles",
                          str(paths["star"]), str(paths["map"]), *OPTIONS.split(),
                          "--no-progress", "--out", str(ref)], capture_output=True, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert res.returncode == 0, res.stderr
    return paths, ref


def _config(tmp_path, paths) -> Path:
    cfg = tmp_path / "pc.yaml"
    cfg.write_text(f"particles_cluster:\n  star: {paths['star']}\n  map: {paths['map']}\n"
                   f"  shards: 2\n  threads: 1\n  memory_gib: 1\n  options: \"{OPTIONS}\"\n")
    return cfg


def _body(path) -> list:
    return [line for line in Path(path).read_text().splitlines()
            if not line.startswith("# Created by")]


def test_shard_jobs_declare_their_resources(tmp_path, particle_set):
    paths, _ = particle_set
    res = run_snakemake("particles_cluster", "-n", "--cores", "2", "--configfile",
                        str(_config(tmp_path, paths)), cwd=tmp_path)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    assert out.count("rule particles_shard:") == 2 and "particles_merge" in out
    assert "mem_mb=1536" in out and "runtime=10" in out


@pytest.mark.slow
def test_local_run_equals_the_unsharded_command(tmp_path, particle_set):
    paths, ref = particle_set
    res = run_snakemake("particles_cluster", "--cores", "2", "--configfile",
                        str(_config(tmp_path, paths)), cwd=tmp_path, timeout=300)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-3000:]
    assert _body(tmp_path / "results" / "particles" / "poses.star") == _body(ref)
    assert not list((tmp_path / "results" / "particles" / "shards").glob("*.checkpoint"))


@pytest.mark.slow
@pytest.mark.skipif(importlib.util.find_spec("snakemake_executor_plugin_cluster_generic")
                    is None, reason="snakemake-executor-plugin-cluster-generic is missing")
def test_cluster_generic_executor_runs_the_shards(tmp_path, particle_set):
    """Jobs go through cluster-generic: a submit command that starts the job script in the
    background on this machine and prints its PID as the job id."""
    paths, ref = particle_set
    submit = tmp_path / "submit.sh"
    submit.write_text('#!/bin/sh\nnohup sh "$1" > "$1.out" 2>&1 &\necho $!\n')
    submit.chmod(submit.stat().st_mode | stat.S_IXUSR)
    res = run_snakemake("particles_cluster", "--executor", "cluster-generic",
                        "--cluster-generic-submit-cmd", str(submit), "--jobs", "2",
                        "--latency-wait", "5", "--configfile", str(_config(tmp_path, paths)),
                        cwd=tmp_path, timeout=300, env={"PYTHONPATH": str(REPO)})
    out = res.stdout + res.stderr
    assert res.returncode == 0, out[-4000:]
    assert "cluster-generic" in out or "Submitted job" in out
    assert _body(tmp_path / "results" / "particles" / "poses.star") == _body(ref)
    assert os.path.getsize(tmp_path / "logs" / "particles_cluster" / "shard1.log") > 0
