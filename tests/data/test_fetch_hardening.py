"""The fetcher under hostile answers and faults (a local server on 127.0.0.1): nothing
written outside --dest, nothing bad kept, no traceback, no hang."""

import fcntl
import json
import os
import threading
import time

import numpy as np
import pandas as pd
import pytest
import yaml
from fetch_mirror import put, sha

from radsvd._validate import InputError
from radsvd.data.fetch import (
    LEDGER,
    DeadlineError,
    FetchError,
    Limits,
    fetch_dataset,
    fetch_file,
    fetch_stack_head,
    load_manifest,
)
from radsvd.data.mrc import read_stack, write_mrc
from radsvd.data.star import write_star

FAST = Limits(read_timeout=0.5, deadline=1.5, retries=5)
QUIET = {"log": lambda *_: None}


def _parts(folder):
    return sorted(folder.rglob(".*.partial"))


def _map_bytes(tmp_path, box=8, voxel=1.5, seed=0):
    vol = np.random.default_rng(seed).standard_normal((box,) * 3).astype(np.float32)
    return write_mrc(tmp_path / f"m{seed}.map.gz", vol, voxel).read_bytes()


def _stack_bytes(tmp_path, n=6, box=12, seed=1):
    imgs = np.random.default_rng(seed).standard_normal((n, box, box)).astype(np.float32)
    return imgs, write_mrc(tmp_path / f"s{seed}.mrcs", imgs, 1.5, stack=True).read_bytes()


def _manifest(tmp_path, map_sha=None, star="data/p.star", **extra):
    ds = {"title": "toy", "empiar": 1, "pixel_size": 1.5, "box": 12, "particles": {"first": 3},
          "files": {"map": {"urls": ["{ebi}/maps/emd_1.map.gz"], "sha256": map_sha,
                            "header": {"box": 8, "voxel_size": 1.5}},
                    "star": {"urls": ["{ebi}/empiar/world_availability/1/" + star]}}}
    ds.update(extra)
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"version": 1, "mirrors": {"ebi": "https://x.invalid"},
                                    "datasets": {"toy": ds}}))
    return path


def _star(tmp_path, names, pixel=1.5):
    t = pd.DataFrame({"image_name": names, "defocus_u": 1e4, "defocus_v": 9e3, "voltage": 300.0,
                      "cs": 2.7, "amplitude_contrast": 0.1, "pixel_size": pixel})
    return write_star(tmp_path / "p.star", t, style="1").read_bytes()


# ---- 1. paths escaping --dest ------------------------------------------------------------


@pytest.mark.parametrize("ref", ["../../../../escaped.mrcs", "ABS",
                                 "http://127.0.0.1:1/escaped.mrcs"])
def test_image_paths_cannot_escape_dest(server, tmp_path, ref):
    victim = tmp_path / "victim.mrcs"
    victim.write_bytes(b"precious")
    if ref == "ABS":
        ref = str(victim)
    _, raw = _stack_bytes(tmp_path)
    put(server, "empiar/world_availability/1/data/" + ref.lstrip("/").replace("../", ""), raw)
    put(server, "empiar/world_availability/1/data/p.star", _star(tmp_path, [f"1@{ref}"]))
    dest = tmp_path / "dest"
    with pytest.raises(InputError, match="(absolute|leads outside|is a URL).*refusing"):
        fetch_dataset("toy", dest, manifest=_manifest(tmp_path), base_url=server.url,
                      what=("particles",), **QUIET)
    assert victim.read_bytes() == b"precious"
    outside = [p for p in tmp_path.parents[1].rglob("escaped.mrcs")
               if "www" not in p.parts]  # the served copies
    assert outside == []
    assert not (dest / "fetched.json").exists()


def test_map_file_name_cannot_escape_dest(server, tmp_path):
    put(server, "maps/emd_1.map.gz", _map_bytes(tmp_path))
    m = load_manifest(_manifest(tmp_path))
    m["datasets"]["toy"]["files"]["map"]["filename"] = "../outside.map.gz"
    with pytest.raises(InputError, match="leads outside"):
        fetch_dataset("toy", tmp_path / "dest", manifest=m, base_url=server.url,
                      what=("map",), **QUIET)
    assert not (tmp_path / "outside.map.gz").exists()


# ---- 2. error pages, validation, hash of the first good download ---------------------------


def test_html_error_page_is_never_kept_as_a_map(server, tmp_path):
    good = _map_bytes(tmp_path)
    put(server, "maps/emd_1.map.gz", good)
    server.html.add("/maps/emd_1.map.gz")
    dest = tmp_path / "dest"
    mpath = _manifest(tmp_path)  # no sha256: only validation can tell
    with pytest.raises(FetchError, match="not what was expected.*not an MRC file.*HTML"):
        fetch_dataset("toy", dest, manifest=mpath, base_url=server.url, what=("map",), **QUIET)
    assert not (dest / "emd_1.map.gz").exists() and _parts(dest) == []
    assert not (dest / "fetched.json").exists() and not (dest / LEDGER).exists()
    server.html.clear()  # the archive recovers: the next run fetches the real map
    rec = fetch_dataset("toy", dest, manifest=mpath, base_url=server.url, what=("map",),
                        **QUIET)
    assert (dest / "emd_1.map.gz").read_bytes() == good
    assert json.loads((dest / LEDGER).read_text())["emd_1.map.gz"]["sha256"] == sha(good)
    assert rec["files"]["map"]["sha256"] == sha(good)


def test_truncated_or_foreign_files_are_refused(server, tmp_path):
    good = _map_bytes(tmp_path)
    url = put(server, "maps/cut.map.gz", good[:-100])  # gzip without its tail
    from radsvd.data.fetch import check_mrc_file

    with pytest.raises(FetchError, match="not what was expected"):
        fetch_file(url, tmp_path / "cut.map.gz", limits=FAST,
                   validate=lambda p: check_mrc_file(p))
    plain = write_mrc(tmp_path / "plain.mrc", np.zeros((8, 8, 8), np.float32), 1.5).read_bytes()
    url = put(server, "maps/short.mrc", plain[:-4])
    with pytest.raises(FetchError, match="the header promises"):
        fetch_file(url, tmp_path / "short.mrc", limits=FAST, validate=lambda p: check_mrc_file(p))
    url = put(server, "data/p.star", b"<html>oops</html>")
    from radsvd.data.fetch import check_star_file

    with pytest.raises(FetchError, match="not a STAR file"):
        fetch_file(url, tmp_path / "p.star", limits=FAST, validate=check_star_file)
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("cut", "short", "p.")))\
        == []


def test_first_good_hash_is_checked_on_reuse_and_on_reissue(server, tmp_path):
    first = _map_bytes(tmp_path, seed=0)
    put(server, "maps/emd_1.map.gz", first)
    dest, mpath = tmp_path / "dest", _manifest(tmp_path)
    run = lambda **kw: fetch_dataset("toy", dest, manifest=mpath, base_url=server.url,
                                     what=("map",), **QUIET, **kw)
    run()
    n = len(server.requests)
    run()  # reused: the local copy matches the recorded hash, nothing requested
    assert len(server.requests) == n
    local = dest / "emd_1.map.gz"
    local.write_bytes(first[:-1] + bytes([first[-1] ^ 1]))  # damaged: fetched again, replaced
    run()
    assert local.read_bytes() == first and len(server.requests) == n + 1
    second = _map_bytes(tmp_path, seed=1)  # the archive re-issues the map
    put(server, "maps/emd_1.map.gz", second)
    local.unlink()
    with pytest.raises(FetchError) as err:
        run()
    msg = str(err.value)
    assert sha(first) in msg and sha(second) in msg and "re-issued" in msg
    assert "--accept-changed" in msg and not local.exists()
    rec = run(accept_changed=True)
    assert local.read_bytes() == second
    assert rec["files"]["map"]["sha256"] == sha(second)
    assert rec["files"]["map"]["replaced_sha256"] == sha(first)
    assert json.loads((dest / LEDGER).read_text())["emd_1.map.gz"]["sha256"] == sha(second)


# ---- 3. temp files: private, exclusive, never through a link ------------------------------


def test_planted_symlinks_are_never_followed(server, tmp_path):
    data = np.random.default_rng(3).bytes(50_000)
    url = put(server, "f.bin", data)
    dest = tmp_path / "d" / "f.bin"
    dest.parent.mkdir()
    victim = tmp_path / "victim"
    victim.write_bytes(b"precious")
    for name in ("f.bin.part", ".f.bin.evil.partial", ".f.bin.head.part"):
        os.symlink(victim, dest.parent / name)
    fetch_file(url, dest, sha256=sha(data), limits=FAST)
    assert dest.read_bytes() == data and victim.read_bytes() == b"precious"
    os.symlink(victim, tmp_path / "d" / "g.bin")  # a link at the destination is replaced
    fetch_file(url, tmp_path / "d" / "g.bin", sha256=sha(data), limits=FAST, reuse=False)
    assert victim.read_bytes() == b"precious"
    assert not (tmp_path / "d" / "g.bin").is_symlink()


def test_two_fetches_into_one_place(server, tmp_path):
    data = np.random.default_rng(4).bytes(400_000)
    url = put(server, "big.bin", data)
    server.stall["/big.bin"] = 0.3  # both are in flight at once
    dest = tmp_path / "big.bin"
    errors = []

    def run():
        try:
            fetch_file(url, dest, sha256=sha(data), limits=Limits(deadline=10))
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and dest.read_bytes() == data and _parts(tmp_path) == []
    assert len([r for r in server.requests if r[0] == "/big.bin"]) == 2


def test_partial_files_of_other_names_are_left_alone(server, tmp_path):
    data = b"m" * 3000
    url = put(server, "emd.map", data)
    other = tmp_path / ".emd.map.gz.abc123.partial"  # a partial download of emd.map.gz
    other.write_bytes(b"\x1f\x8b partial")
    fetch_file(url, tmp_path / "emd.map", sha256=sha(data), limits=FAST)
    assert other.read_bytes() == b"\x1f\x8b partial"
    assert (tmp_path / "emd.map").read_bytes() == data


def test_a_partial_file_in_use_is_not_taken_over(server, tmp_path):
    data = np.random.default_rng(5).bytes(20_000)
    url = put(server, "u.bin", data)
    busy = tmp_path / ".u.bin.busy.partial"
    busy.write_bytes(b"another run's bytes")
    with open(busy, "rb") as f:
        fcntl.flock(f, fcntl.LOCK_EX)  # another fetch is writing it
        fetch_file(url, tmp_path / "u.bin", sha256=sha(data), limits=FAST)
        assert busy.read_bytes() == b"another run's bytes"
    assert (tmp_path / "u.bin").read_bytes() == data


# ---- 6. deadlines, retries --------------------------------------------------------------


def test_silent_server_times_out_within_the_deadline(server, tmp_path):
    url = put(server, "slow.bin", b"x" * 100)
    server.stall["/slow.bin"] = 5.0
    t0 = time.monotonic()
    with pytest.raises(DeadlineError, match=r"deadline of 1.5 s \(per-read timeout 0.5 s\)"):
        fetch_file(url, tmp_path / "slow.bin", limits=FAST)
    assert time.monotonic() - t0 < 3.0
    assert _parts(tmp_path) == [] and not (tmp_path / "slow.bin").exists()


def test_trickling_server_hits_the_total_deadline(server, tmp_path):
    url = put(server, "trickle.bin", b"y" * 1000)
    server.trickle["/trickle.bin"] = 0.1  # a byte every 0.1 s: each read is "on time"
    t0 = time.monotonic()
    with pytest.raises(DeadlineError, match=r"deadline of 1.5 s.*bytes received"):
        fetch_file(url, tmp_path / "trickle.bin", limits=FAST)
    assert time.monotonic() - t0 < 3.0
    [part] = _parts(tmp_path)  # what arrived is kept for the next run, byte by byte
    assert 5 <= part.stat().st_size < 1000


def test_transient_errors_are_retried_on_every_request(server, tmp_path):
    imgs, raw = _stack_bytes(tmp_path)
    url = put(server, "s.mrcs", raw)
    server.statuses["/s.mrcs"] = [500, 503, 502]  # the header probe, then the images
    fetch_stack_head(url, tmp_path / "s.mrcs", 2, limits=Limits(retries=3))
    np.testing.assert_array_equal(read_stack(tmp_path / "s.mrcs"), imgs[:2])
    url = put(server, "f.bin", b"z" * 10)
    server.statuses["/f.bin"] = [500] * 3
    with pytest.raises(FetchError, match=r"after 3 attempts \(nothing was kept\).*HTTP 500"):
        fetch_file(url, tmp_path / "f.bin", limits=Limits(retries=2))
    assert _parts(tmp_path) == []


def test_server_ignoring_range_is_read_only_as_far_as_needed(server, tmp_path):
    imgs = np.zeros((4000, 32, 32), np.float32)  # 16 MB stack
    imgs[:3] = np.random.default_rng(6).standard_normal((3, 32, 32))
    raw = write_mrc(tmp_path / "big.mrcs", imgs, 1.5, stack=True).read_bytes()
    url = put(server, "big.mrcs", raw)
    server.no_range.add("/big.mrcs")
    rec = fetch_stack_head(url, tmp_path / "local.mrcs", 3, limits=FAST)
    np.testing.assert_array_equal(read_stack(tmp_path / "local.mrcs"), imgs[:3])
    assert rec["bytes"] == 1024 + 3 * 32 * 32 * 4
    time.sleep(0.2)
    assert server.sent < len(raw) / 2  # the rest was never pulled


def test_redirects_only_to_http(server, tmp_path):
    put(server, "real.bin", b"abc")
    server.redirect["/moved.bin"] = f"{server.url}/real.bin"
    fetch_file(f"{server.url}/moved.bin", tmp_path / "a.bin", limits=FAST)
    assert (tmp_path / "a.bin").read_bytes() == b"abc"
    server.redirect["/loop.bin"] = f"{server.url}/loop.bin"
    with pytest.raises(FetchError, match="redirect loop") as err:
        fetch_file(f"{server.url}/loop.bin", tmp_path / "c.bin", limits=FAST)
    assert "\n" not in str(err.value)
    server.redirect["/ftp.bin"] = "ftp://127.0.0.1/real.bin"
    with pytest.raises(FetchError, match="redirects to 'ftp://.*only http"):
        fetch_file(f"{server.url}/ftp.bin", tmp_path / "b.bin", limits=FAST)
    assert not (tmp_path / "b.bin").exists()


# ---- 13. arguments read as they are written ---------------------------------------------


def test_limits_and_counts_are_validated():
    for bad in ({"retries": -1}, {"retries": 1.5}, {"read_timeout": 0},
                {"deadline": float("inf")}, {"deadline": -3}):
        with pytest.raises(InputError):
            Limits(**bad)


def test_all_digit_sha256_must_be_quoted(tmp_path):
    digits = "1" * 64
    text = _manifest(tmp_path).read_text().replace("sha256: null", f"sha256: {digits}")
    (tmp_path / "digits.yaml").write_text(text)
    with pytest.raises(InputError, match="64 hex digits.*quote it"):
        load_manifest(tmp_path / "digits.yaml")
    (tmp_path / "quoted.yaml").write_text(text.replace(digits, f"'{digits}'"))
    assert load_manifest(tmp_path / "quoted.yaml")["datasets"]["toy"]["files"]["map"][
        "sha256"] == digits


@pytest.mark.parametrize("args, message", [
    (["--n", "0"], "--n must be >= 1"),
    (["--n", "-2"], "--n must be >= 1"),
    (["--retries", "-1"], "retries must be an integer >= 0"),
    (["--timeout", "0"], "read_timeout must be a positive"),
    (["--base-url", "notaurl"], "'notaurl' is not an http"),
    (["--base-url", "ftp://127.0.0.1/x"], "is not an http"),
    (["--star-url", "file:///etc/passwd"], "--star-url 'file:///etc/passwd' is not an http"),
    (["--dest", "FILE"], "exists and is not a directory"),
])
def test_cli_refuses_bad_arguments(tmp_path, capsys, args, message):
    from radsvd.cli import main

    (tmp_path / "FILE").write_text("keep")
    args = [str(tmp_path / "FILE") if a == "FILE" else a for a in args]
    code = main(["fetch", "toy", "--manifest", str(_manifest(tmp_path)),
                 "--base-url", "http://127.0.0.1:9", *args])
    err = capsys.readouterr().err
    assert code == 2 and message in err and "Traceback" not in err
    assert err.startswith("radsvd fetch: error:")
    assert (tmp_path / "FILE").read_text() == "keep"


def test_fetch_dataset_n_zero_is_an_error(tmp_path):
    with pytest.raises(InputError, match=">= 1, got 0"):
        fetch_dataset("toy", tmp_path / "d", manifest=_manifest(tmp_path), n_particles=0,
                      base_url="http://127.0.0.1:9", **QUIET)
