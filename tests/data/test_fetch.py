"""The fetcher against a local HTTP server on 127.0.0.1 (started here; nothing else is contacted)."""

import json

import numpy as np
import pandas as pd
import pytest
import yaml
from fetch_mirror import put, sha

from radsvd.data.fetch import (
    FetchError,
    Limits,
    fetch_bytes,
    fetch_dataset,
    fetch_file,
    fetch_stack_head,
    find_star_files,
    load_manifest,
    parse_mrc_header,
)
from radsvd.data.mrc import read_mrc, read_stack, write_mrc
from radsvd.data.stacks import load_particles
from radsvd.data.star import write_star


def _parts(folder):
    return sorted(folder.glob(".*.partial"))


_sha, _put = sha, put


def test_good_file(server, tmp_path):
    data = np.random.default_rng(0).bytes(300_000)
    url = _put(server, "a/good.bin", data)
    dest = tmp_path / "dl" / "good.bin"
    fetch_file(url, dest, sha256=_sha(data), size=len(data))
    assert dest.read_bytes() == data
    assert sorted(p.name for p in dest.parent.iterdir()) == ["good.bin"]
    n = len(server.requests)
    fetch_file(url, dest, sha256=_sha(data), size=len(data))  # verified copy: no new request
    assert len(server.requests) == n


def test_wrong_checksum_writes_nothing(server, tmp_path):
    data = b"x" * 5000
    url = _put(server, "bad.bin", data)
    dest = tmp_path / "dl" / "bad.bin"
    with pytest.raises(FetchError) as err:
        fetch_file(url, dest, sha256="0" * 64)
    msg = str(err.value)
    assert "sha256" in msg and _sha(data) in msg and "0" * 64 in msg and "re-issued" in msg
    assert not dest.parent.exists() or list(dest.parent.iterdir()) == []
    with pytest.raises(FetchError, match="downloaded 5000 bytes, expected 4999"):
        fetch_file(url, dest, size=4999)
    assert list(dest.parent.iterdir()) == []


def test_missing_file(server, tmp_path):
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_file(f"{server.url}/nope.bin", tmp_path / "nope.bin")
    assert not (tmp_path / "nope.bin").exists()


def test_truncated_download_resumes_with_range(server, tmp_path):
    data = np.random.default_rng(1).bytes(200_000)
    url = _put(server, "t.bin", data)
    server.truncate["/t.bin"] = {"times": 1}
    dest = tmp_path / "t.bin"
    fetch_file(url, dest, sha256=_sha(data), limits=Limits(retries=2))
    assert dest.read_bytes() == data
    # first request plain, second resumes where the first stopped
    assert server.requests[0] == ("/t.bin", None)
    assert server.requests[1] == ("/t.bin", f"bytes={len(data) // 2}-")
    assert _parts(tmp_path) == []


def test_truncated_every_time_keeps_part_for_later(server, tmp_path):
    data = np.random.default_rng(2).bytes(100_000)
    url = _put(server, "t2.bin", data)
    server.truncate["/t2.bin"] = {"times": 2}
    dest = tmp_path / "t2.bin"
    with pytest.raises(FetchError, match="incomplete after 2 attempts.*resume"):
        fetch_file(url, dest, sha256=_sha(data), limits=Limits(retries=1))
    assert not dest.exists()
    [part] = _parts(tmp_path)
    assert 0 < part.stat().st_size < len(data)
    fetch_file(url, dest, sha256=_sha(data))  # a later run resumes and completes
    assert dest.read_bytes() == data and _parts(tmp_path) == []


def test_complete_part_file_is_verified_not_refetched(server, tmp_path):
    data = np.random.default_rng(7).bytes(30_000)
    url = _put(server, "c.bin", data)
    (tmp_path / ".c.bin.x1.partial").write_bytes(data)  # finished earlier, never renamed
    fetch_file(url, tmp_path / "c.bin", sha256=_sha(data))
    assert (tmp_path / "c.bin").read_bytes() == data
    assert server.sent == 0  # the server answered 416 (nothing left to send)
    (tmp_path / ".d.bin.x2.partial").write_bytes(data + b"junk")  # longer than the remote
    url = _put(server, "d.bin", data)
    fetch_file(url, tmp_path / "d.bin", sha256=_sha(data))
    assert (tmp_path / "d.bin").read_bytes() == data


def test_server_without_range_support(server, tmp_path):
    data = np.random.default_rng(3).bytes(50_000)
    url = _put(server, "nr.bin", data)
    server.no_range.add("/nr.bin")
    (tmp_path / ".nr.bin.x3.partial").write_bytes(data[:1000])  # a stale partial download
    fetch_file(url, tmp_path / "nr.bin", sha256=_sha(data))
    assert (tmp_path / "nr.bin").read_bytes() == data
    assert fetch_bytes(url, 100, 200) == data[100:200]


def _stack_bytes(tmp_path, n=40, box=12):
    imgs = np.random.default_rng(4).standard_normal((n, box, box)).astype(np.float32)
    p = write_mrc(tmp_path / "src.mrcs", imgs, 1.7, stack=True)
    return imgs, p.read_bytes()


def test_range_request_for_first_particles(server, tmp_path):
    imgs, raw = _stack_bytes(tmp_path)
    url = _put(server, "stacks/s.mrcs", raw)
    head = parse_mrc_header(raw[:1024])
    assert (head.nx, head.ny, head.nz, head.mode) == (12, 12, 40, 2)
    rec = fetch_stack_head(url, tmp_path / "local" / "s.mrcs", 7)
    got = read_stack(tmp_path / "local" / "s.mrcs")
    np.testing.assert_array_equal(got, imgs[:7])
    assert rec["images"] == 7 and rec["images_in_remote"] == 40
    needed = 1024 + head.nsymbt + 7 * 12 * 12 * 4
    assert rec["bytes"] == needed
    assert server.sent == 1024 + needed  # the header probe, then exactly the needed bytes
    assert all(r is not None for _, r in server.requests)  # every request was a Range
    _, vs = read_mrc(tmp_path / "local" / "s.mrcs")
    assert vs == pytest.approx(1.7, rel=1e-6)


def test_stack_head_edge_cases(server, tmp_path):
    imgs, raw = _stack_bytes(tmp_path, n=10)
    url = _put(server, "s.mrcs", raw)
    with pytest.raises(FetchError, match="refers to image 11 but the stack holds 10"):
        fetch_stack_head(url, tmp_path / "a.mrcs", 11)
    # a longer left-over prefix from an earlier run is cut to what is needed
    (tmp_path / ".b.mrcs.x4.partial").write_bytes(raw[: 1024 + 6 * 12 * 12 * 4])
    fetch_stack_head(url, tmp_path / "b.mrcs", 3)
    np.testing.assert_array_equal(read_stack(tmp_path / "b.mrcs"), imgs[:3])
    # gzip-compressed stacks cannot be cut: the whole file is fetched
    gz = write_mrc(tmp_path / "src.mrcs.gz", imgs, 1.7, stack=True)
    url = _put(server, "s.mrcs.gz", gz.read_bytes())
    rec = fetch_stack_head(url, tmp_path / "c.mrcs.gz", 2)
    assert rec["compressed"] and rec["images"] == 10
    np.testing.assert_array_equal(read_stack(tmp_path / "c.mrcs.gz"), imgs)
    not_mrc = _put(server, "junk.mrcs", b"\0" * 2048)
    with pytest.raises(FetchError, match="not a readable MRC file"):
        fetch_stack_head(not_mrc, tmp_path / "d.mrcs", 1)
    assert not (tmp_path / "d.mrcs").exists()


def _manifest(tmp_path, server, map_sha, star_rel="empiar/world_availability/1/data/p.star"):
    m = {"version": 1, "mirrors": {"ebi": "https://example.invalid"},
         "datasets": {"toy": {
             "title": "toy dataset", "aliases": ["EMPIAR-1", "EMD-1"], "empiar": 1,
             "pixel_size": 1.5, "box": 12, "particles": {"first": 5},
             "files": {"map": {"urls": ["{ebi}/maps/emd_1.map.gz"], "sha256": map_sha,
                               "header": {"box": 8, "voxel_size": 1.5}},
                       "star": {"urls": ["{ebi}/" + star_rel]}}}}}
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump(m))
    return path


def _serve_dataset(server, tmp_path, star_dir=""):
    vol = np.random.default_rng(5).standard_normal((8, 8, 8)).astype(np.float32)
    gz = write_mrc(tmp_path / "emd_1.map.gz", vol, 1.5)
    _put(server, "maps/emd_1.map.gz", gz.read_bytes())
    rng = np.random.default_rng(6)
    stacks = {}
    rows = []
    for name, n in (("Particles/mic1.mrcs", 4), ("Particles/mic2.mrcs", 6)):
        imgs = rng.standard_normal((n, 12, 12)).astype(np.float32)
        p = write_mrc(tmp_path / "tmp.mrcs", imgs, 1.5, stack=True)
        _put(server, f"empiar/world_availability/1/data/{name}", p.read_bytes())
        stacks[name] = imgs
        rows += [f"{i + 1:06d}@{name}" for i in range(n)]
    table = pd.DataFrame({"image_name": rows, "defocus_u": 1e4, "defocus_v": 9e3,
                          "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1,
                          "pixel_size": 1.5})
    star = write_star(tmp_path / "p.star", table, style="1")
    _put(server, f"empiar/world_availability/1/data/{star_dir}p.star", star.read_bytes())
    return vol, gz.read_bytes(), stacks


def test_fetch_dataset_end_to_end(server, tmp_path):
    vol, gz, stacks = _serve_dataset(server, tmp_path)
    manifest = load_manifest(_manifest(tmp_path, server, _sha(gz)))
    dest = tmp_path / "data"
    rec = fetch_dataset("EMPIAR-1", dest, manifest=manifest, base_url=server.url,
                        log=lambda *_: None)
    assert rec["dataset"] == "toy"
    got, _vs = read_mrc(rec["files"]["map"]["path"])
    np.testing.assert_array_equal(got, vol)
    # the first 5 particles: all 4 of mic1 and only the first image of mic2
    assert rec["particles"]["first"] == 5
    assert rec["particles"]["stacks"]["Particles/mic2.mrcs"]["images"] == 1
    images, _table = load_particles(rec["files"]["star"]["path"], n=5)
    np.testing.assert_array_equal(images[:4], stacks["Particles/mic1.mrcs"])
    np.testing.assert_array_equal(images[4], stacks["Particles/mic2.mrcs"][0])
    assert json.loads((dest / "fetched.json").read_text())["dataset"] == "toy"
    # a second run re-uses everything it verified
    n = len(server.requests)
    fetch_dataset("toy", dest, manifest=manifest, base_url=server.url, log=lambda *_: None)
    assert len(server.requests) == n


def test_stack_paths_relative_to_project_directory(server, tmp_path):
    """RELION image paths are relative to the project directory, not to the STAR file."""
    _, gz, stacks = _serve_dataset(server, tmp_path, star_dir="Refine3D/job01/")
    manifest = load_manifest(_manifest(
        tmp_path, server, _sha(gz), star_rel="empiar/world_availability/1/data/Refine3D/job01/p.star"))
    rec = fetch_dataset("toy", tmp_path / "d", manifest=manifest, base_url=server.url,
                        what=("particles",), log=lambda *_: None)
    assert rec["particles"]["stacks"]["Particles/mic1.mrcs"]["url"].endswith(
        "/1/data/Particles/mic1.mrcs")
    images, _ = load_particles(rec["files"]["star"]["path"], n=5)
    np.testing.assert_array_equal(images[:4], stacks["Particles/mic1.mrcs"])


def test_fetch_dataset_explains_problems(server, tmp_path):
    _vol, _gz, _ = _serve_dataset(server, tmp_path)
    # a re-issued map: the checksum in the manifest no longer matches
    manifest = load_manifest(_manifest(tmp_path, server, "f" * 64))
    with pytest.raises(FetchError, match="differs from the manifest's f{64}.*re-issued.*"
                                         "--accept-changed"):
        fetch_dataset("toy", tmp_path / "d1", manifest=manifest, base_url=server.url,
                      what=("map",), log=lambda *_: None)
    assert not (tmp_path / "d1" / "emd_1.map.gz").exists()
    # header fields differ from the manifest (box 8 expected; serve a 6³ map instead)
    other = write_mrc(tmp_path / "o.map.gz", np.zeros((6, 6, 6), np.float32), 1.5)
    _put(server, "maps/emd_1.map.gz", other.read_bytes())
    manifest = load_manifest(_manifest(tmp_path, server, None))
    with pytest.raises(FetchError, match=r"shape \(6, 6, 6\), expected \(8, 8, 8\)"):
        fetch_dataset("toy", tmp_path / "d2", manifest=manifest, base_url=server.url,
                      what=("map",), log=lambda *_: None)
    # a STAR file that is not where the manifest says: the error lists what the entry has
    manifest = load_manifest(_manifest(tmp_path, server, None,
                                       star_rel="empiar/world_availability/1/data/x/q.star"))
    with pytest.raises(FetchError, match=r"not found.*STAR files found under the entry: "
                                         r".*/data/p\.star.*--star-url"):
        fetch_dataset("toy", tmp_path / "d3", manifest=manifest, base_url=server.url,
                      what=("particles",), log=lambda *_: None)
    # a referenced stack missing on the server
    (server.root / "empiar/world_availability/1/data/Particles/mic2.mrcs").unlink()
    manifest = load_manifest(_manifest(tmp_path, server, None))
    with pytest.raises(FetchError, match=r"stack 'Particles/mic2.mrcs'.*not found.*stacks_base"):
        fetch_dataset("toy", tmp_path / "d4", manifest=manifest, base_url=server.url,
                      what=("particles",), log=lambda *_: None)
    assert not (tmp_path / "d4" / "fetched.json").exists()
    stars = find_star_files(f"{server.url}/empiar/world_availability/1/data/")
    assert stars == [f"{server.url}/empiar/world_availability/1/data/p.star"]


def test_cli_fetch_and_info(server, tmp_path, capsys):
    from radsvd.cli import main

    _, gz, _ = _serve_dataset(server, tmp_path)
    mpath = _manifest(tmp_path, server, _sha(gz))
    dest = tmp_path / "cli"
    assert main(["fetch", "EMD-1", "--manifest", str(mpath), "--base-url", server.url,
                 "--dest", str(dest)]) == 0
    assert main(["info", "--json", str(dest / "particles" / "p.star")]) == 0
    out = capsys.readouterr().out
    info = json.loads(out[out.index("{"):])
    assert info["particles"] == 10 and info["relion_style"] == "1" and info["box"] == 12
    assert main(["info", str(dest / "emd_1.map.gz")]) == 0
    out = capsys.readouterr().out
    assert "type: map" in out and "compressed: True" in out and "box: 8" in out
    assert main(["fetch", "nothing-like-this", "--manifest", str(mpath)]) == 2
    assert main(["fetch", "toy", "--manifest", str(mpath), "--base-url",
                 server.url + "/missing", "--dest", str(tmp_path / "x")]) == 1


def test_real_manifest_is_complete():
    m = load_manifest()
    want = {5778: 10005, 2660: 10028, 8674: 10091, 22116: 10536, 9718: 10482, 20244: 10278,
            8434: 10076}
    got = {ds["emdb"]: ds["empiar"] for ds in m["datasets"].values()}
    assert got == want
    for key, ds in m["datasets"].items():
        assert ds["particles"]["first"] == 1024, key
        assert ds["pixel_size"] > 0 and ds["citation"] and ds["licence"], key
        assert ds["files"]["map"]["urls"][0].startswith("{ebi}/pub/databases/emdb/"), key
    assert m["datasets"]["trpv1"]["files"]["map"]["sha256"].startswith("877cbe37")
    assert m["datasets"]["ribosome80s"]["files"]["map"]["sha256"].startswith("49aecfd4")
    assert m["datasets"]["ribosome50s"]["contrast_inverted"] is True
    from radsvd.data.molecules import SYNTHETIC_PRESETS

    assert set(m["synthetic"]) == set(SYNTHETIC_PRESETS)


def test_base_url_from_environment(server, tmp_path, monkeypatch):
    _, gz, _ = _serve_dataset(server, tmp_path)
    manifest = load_manifest(_manifest(tmp_path, server, _sha(gz)))
    monkeypatch.setenv("RADSVD_BASE_URL", server.url)
    rec = fetch_dataset("toy", tmp_path / "env", manifest=manifest, what=("map",),
                        log=lambda *_: None)
    assert rec["files"]["map"]["url"].startswith(server.url)


def test_relion_stack_without_map_id_is_fetched(server, tmp_path):
    """RELION 3.1 writes stacks with no 'MAP ' id and a blank machine stamp: fetched with a
    warning, read as little-endian."""
    imgs, raw = _stack_bytes(tmp_path, n=5)
    raw = bytearray(raw)
    raw[208:216] = bytes(8)  # no map id, no machine stamp
    url = _put(server, "relion.mrcs", bytes(raw))
    with pytest.warns(UserWarning, match="MAP"):
        rec = fetch_stack_head(url, tmp_path / "r.mrcs", 3)
    assert rec["images"] == 3
    with pytest.warns(UserWarning):
        np.testing.assert_array_equal(read_stack(tmp_path / "r.mrcs"), imgs[:3])
