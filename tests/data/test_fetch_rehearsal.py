"""Offline rehearsal of the real-data path: a local mirror of all seven EMPIAR/EMDB entries
(laid out as the archive is, with each entry's quirks) fetched through the real manifest."""

import json
from pathlib import Path

import numpy as np
import pytest
from fetch_mirror import build_mirror, sha, start_server, write_manifest

from radsvd.data.fetch import (
    PACKAGED,
    FetchError,
    fetch_dataset,
    load_fetched,
    load_manifest,
)

REPO = Path(__file__).resolve().parents[2]
N, BOX = 24, 32


@pytest.fixture(scope="module")
def mirror(tmp_path_factory):
    root = tmp_path_factory.mktemp("mirror")
    rehearsal, truth = build_mirror(root / "www", load_manifest(PACKAGED), n=N, box=BOX)
    server = start_server(root / "www")
    yield server, write_manifest(root / "rehearsal.yaml", rehearsal), rehearsal, truth
    server.shutdown()
    server.server_close()


def test_packaged_manifest_is_the_repository_copy():
    assert PACKAGED.read_bytes() == (REPO / "data_manifest.yaml").read_bytes()
    import tomllib

    patterns = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"][
        "package-data"]["radsvd"]
    rel = PACKAGED.relative_to(REPO / "radsvd").as_posix()
    from fnmatch import fnmatch

    assert any(fnmatch(rel, p) for p in patterns), patterns  # setuptools globs, "*" spans "/"
    assert "DESIGN" not in PACKAGED.read_text()


def test_every_dataset_fetches_from_the_mirror(mirror, tmp_path, capsys):
    from radsvd.cli import main

    server, mpath, rehearsal, truth = mirror
    for key, ds in rehearsal["datasets"].items():
        dest = tmp_path / key
        code = main(["fetch", ds["aliases"][0], "--manifest", str(mpath), "--base-url",
                     server.url, "--dest", str(dest), "--timeout", "5", "--deadline", "30"])
        out = capsys.readouterr()
        assert code == 0, (key, out.err)
        rec = json.loads((dest / "fetched.json").read_text())
        assert rec["files"]["map"]["sha256"] == sha(truth[key]["map"]), key
        assert rec["pixel_size_source"] == "star", key
        assert rec["pixel_size"] == pytest.approx(ds["pixel_size"], rel=1e-4), key
        images, table = load_fetched(rec)
        want = truth[key]["images"]
        if key == "ribosome80s":  # the row with the stray character is skipped
            want = np.delete(want, N - 2, axis=0)
        np.testing.assert_array_equal(images, want)
        assert table[["voltage", "cs", "amplitude_contrast"]].notna().all().all(), key
        if key == "ribosome50s":
            assert "took 'L17Combine_weight_local.mrc' of the same stem" in out.out
            [stack] = rec["particles"]["stacks"].values()
            assert stack["remote_name"] == "L17Combine_weight_local.mrc"
            assert rec["contrast_inverted"] is True
        if key == "mlafedb":
            assert rec["ctf_supplied"] == ds["ctf_defaults"]
            assert "supplied, not read" in rec["ctf_supplied_note"]
        else:
            assert "ctf_supplied" not in rec, key
        if key in ("proteasome", "mlafedb", "iswi_ncp", "tmem16f"):
            assert rec["files"]["star"].get("found_by_listing"), key
        if key == "ribosome80s":
            assert all("/10028/data/Particles/MRC_" in s["url"]
                       for s in rec["particles"]["stacks"].values())


def test_real_manifest_meets_a_reissued_map(mirror, tmp_path):
    """The unmodified manifest's EMD-5778 hash cannot match the mirror's map: the error says
    why, names both hashes and the option that accepts the new file."""
    server, _, _, truth = mirror
    with pytest.raises(FetchError) as err:
        fetch_dataset("trpv1", tmp_path / "t", base_url=server.url, what=("map",),
                      log=lambda *_: None)
    msg = str(err.value)
    real = load_manifest(PACKAGED)["datasets"]["trpv1"]["files"]["map"]["sha256"]
    assert real in msg and sha(truth["trpv1"]["map"]) in msg
    assert "re-issued" in msg and "--accept-changed" in msg
    assert not (tmp_path / "t" / "emd_5778.map.gz").exists()


def test_pixel_size_disagreement_beyond_one_percent(mirror, tmp_path):
    server, _, rehearsal, _ = mirror
    m = json.loads(json.dumps(rehearsal))
    m["_path"] = "test"
    m["datasets"]["trpv1"]["pixel_size"] = 1.2156 * 1.02
    with pytest.raises(FetchError, match=r"pixel size of 1\.2156 Å, the manifest 1\.2399"):
        fetch_dataset("trpv1", tmp_path / "a", manifest=m, base_url=server.url,
                      what=("particles",), log=lambda *_: None)
    m["datasets"]["trpv1"]["pixel_size"] = 1.2156 * 1.009  # within 1%: the STAR's value
    rec = fetch_dataset("trpv1", tmp_path / "b", manifest=m, base_url=server.url,
                        what=("particles",), log=lambda *_: None)
    assert rec["pixel_size"] == pytest.approx(1.2156, rel=1e-6)


def test_missing_ctf_columns_need_defaults(mirror, tmp_path):
    server, _, rehearsal, _ = mirror
    m = json.loads(json.dumps(rehearsal))
    m["_path"] = "test"
    del m["datasets"]["mlafedb"]["ctf_defaults"]
    with pytest.raises(FetchError, match="lacks CTF column.*rlnVoltage.*ctf_defaults"):
        fetch_dataset("mlafedb", tmp_path / "m", manifest=m, base_url=server.url,
                      what=("particles",), log=lambda *_: None)


def test_stacks_base_and_stem_fallback(mirror, tmp_path):
    """Image paths relative to a folder that is not above the STAR file are found only
    through particles.stacks_base; a referenced .mrc served as .mrcs is taken too."""
    server, _, rehearsal, truth = mirror
    root = server.root / "empiar/world_availability/10005/data"
    elsewhere = root / "elsewhere"
    elsewhere.mkdir(exist_ok=True)
    for p in (root / "particles").glob("*.mrcs"):
        (elsewhere / p.name).write_bytes(p.read_bytes())
    star = (root / "particles" / "tv1_relion_data.star").read_text()
    moved = root / "moved"
    moved.mkdir(exist_ok=True)
    (moved / "tv1_relion_data.star").write_text(star.replace(".mrcs", ".mrc"))
    m = json.loads(json.dumps(rehearsal))
    m["_path"] = "test"
    f = m["datasets"]["trpv1"]["files"]["star"]
    f["urls"] = ["{ebi}/empiar/world_availability/10005/data/moved/tv1_relion_data.star"]
    with pytest.raises(FetchError, match="stack 'stack_0001.mrc'.*not found.*stacks_base"):
        fetch_dataset("trpv1", tmp_path / "a", manifest=m, base_url=server.url,
                      what=("particles",), log=lambda *_: None)
    m["datasets"]["trpv1"]["particles"]["stacks_base"] = \
        "{ebi}/empiar/world_availability/10005/data/elsewhere"
    logs = []
    rec = fetch_dataset("trpv1", tmp_path / "b", manifest=m, base_url=server.url,
                        what=("particles",), log=logs.append)
    assert any("took 'stack_0001.mrcs' of the same stem" in line for line in logs)
    images, _ = load_fetched(rec)
    np.testing.assert_array_equal(images, truth["trpv1"]["images"])


@pytest.mark.slow
def test_real_workflow_runs_against_the_mirror(mirror, tmp_path):
    """`snakemake --configfile config/real/all.yaml` plus a tiny override, end to end against
    the mirror: fetch, preprocessing, templates, alignments and every real-data figure,
    written under a temporary directory (never the repository's figures/)."""
    import os
    import shutil
    import subprocess
    import sys

    import yaml

    snakemake = Path(sys.executable).parent / "snakemake"
    if not snakemake.exists() and shutil.which("snakemake") is None:
        pytest.skip("snakemake is not installed (pip install -e '.[workflow]')")
    server, mpath, _, _ = mirror
    tiny = yaml.safe_load((REPO / "config" / "tiny.yaml").read_text())
    override = {k: tiny[k] for k in ("threads", "volumes", "case_study", "isosurfaces",
                                     "style")}
    override["images"] = dict(tiny["images"], n_images=12, shards=1, ranks=[1, 2, 4])
    override["volumes"] = dict(tiny["volumes"], n_volumes=3, ranks=[1, 2])
    override["speedup_vs_K"] = dict(tiny["speedup_vs_K"], K=[6], n_images=12)
    override["check"] = {"reference": None, "claims": False}   # far too small for the paper
    (tmp_path / "override.yaml").write_text(yaml.safe_dump(override))
    env = {**os.environ, "RADSVD_MANIFEST": str(mpath), "RADSVD_BASE_URL": server.url,
           "MPLBACKEND": "Agg"}
    before = sorted((p.name, p.stat().st_mtime_ns) for p in (REPO / "figures").glob("*"))
    res = subprocess.run(
        [str(snakemake) if snakemake.exists() else "snakemake", "-s",
         str(REPO / "workflow" / "Snakefile"), "--directory", str(tmp_path), "--cores", "2",
         "--configfile", str(REPO / "config" / "real" / "all.yaml"),
         str(tmp_path / "override.yaml")],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1500, check=False)
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-5000:]
    # every figure under results/real/figures (fig16 is synthetic-only: real particles have
    # no true shifts), with the numbers it plots beside it
    pngs = sorted(p.name for p in (tmp_path / "results" / "real" / "figures").glob("*.png"))
    assert [p[:5] for p in pngs if "_speedup" not in p and p[:5] <= "fig12"] == [
        "fig01", "fig02", "fig03", "fig04", "fig05", "fig06", "fig07", "fig08", "fig09",
        "fig10", "fig11", "fig12"], pngs
    assert {"fig08_speedup.png", "fig11_speedup.png", "fig13_speedup_vs_K.png",
            "fig14_method_comparison.png", "fig15_timings.png"} <= set(pngs), pngs
    assert all((tmp_path / "results" / "real" / "figures" / p).with_suffix(".csv").exists()
               for p in pngs)
    assert not (tmp_path / "figures").exists()
    assert before == sorted((p.name, p.stat().st_mtime_ns)
                            for p in (REPO / "figures").glob("*"))
    for key in ("trpv1", "ribosome80s", "proteasome", "mlafedb", "iswi_ncp", "tmem16f",
                "ribosome50s"):
        rec = json.loads((tmp_path / "resources" / f"{key}_real" / "fetched.json").read_text())
        assert rec["particles"]["first"] == 12, key
    log = (tmp_path / "logs" / "real" / "mlafedb_real" / "preprocess.log").read_text()
    assert "supplied by the manifest" in log
    log = (tmp_path / "logs" / "real" / "ribosome50s_real" / "preprocess.log").read_text()
    assert "contrast inverted" in log
