"""MRC and STAR I/O: round trips for every RELION style, clear errors, atomic writes."""

import gzip
import struct
import warnings

import numpy as np
import pandas as pd
import pytest

from radsvd._validate import InputError, InputWarning
from radsvd.data.info import describe
from radsvd._files import atomic_path
from radsvd.data.mrc import (mrc_header, parse_mrc_header, read_mrc, read_stack,
                             write_mrc)
from radsvd.data.stacks import check_map_matches_particles, ctf_params, load_particles
from radsvd.data.star import read_star, write_star


def _table(n=6, stack="stack.mrcs", pixel=1.5, seed=0):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({
        "image_name": [f"{i + 1:06d}@{stack}" for i in range(n)],
        "defocus_u": rng.uniform(1e4, 2e4, n), "defocus_v": rng.uniform(8e3, 1e4, n),
        "defocus_angle": rng.uniform(0, 180, n), "phase_shift": 0.0, "bfactor": 0.0,
        "voltage": 300.0, "cs": 2.7, "amplitude_contrast": 0.1, "pixel_size": pixel,
        "rot": rng.uniform(-180, 180, n), "tilt": rng.uniform(0, 180, n),
        "psi": rng.uniform(-180, 180, n), "shift_x": rng.uniform(-5, 5, n),
        "shift_y": rng.uniform(-5, 5, n), "micrograph": [f"mic{i // 3}.mrc" for i in range(n)],
    })


def _files(tmp_path, n=6, box=16, stack="stack.mrcs"):
    imgs = np.random.default_rng(1).standard_normal((n, box, box)).astype(np.float32)
    write_mrc(tmp_path / stack, imgs, 1.5, stack=True)
    return imgs


# -- MRC ------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["map.mrc", "map.mrc.gz", "stack.mrcs"])
def test_mrc_round_trip(tmp_path, name):
    a = np.random.default_rng(0).standard_normal((5, 6, 7)).astype(np.float32)
    write_mrc(tmp_path / name, a, voxel_size=2.25)
    b, vs = read_mrc(tmp_path / name)
    np.testing.assert_array_equal(b, a)
    assert vs == pytest.approx(2.25)
    info = mrc_header(tmp_path / name)
    assert info.shape == (5, 6, 7) and info.compressed == name.endswith(".gz")
    assert info.is_stack == name.endswith(".mrcs")
    np.testing.assert_array_equal(read_stack(tmp_path / name, [4, 0]), a[[4, 0]])
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporaries left


def _mrc_bytes(data, mode=2, ispg=0, map_id=b"MAP ", stamp=b"\x44\x44\x00\x00", order="<",
               nsymbt=0, axes=(1, 2, 3), voxel=1.5, dims=None, extra=b""):
    """MRC file bytes written here from the MRC2014 layout (independent of mrcfile).

    ``data`` is the stored array (sections, rows, columns); ``dims`` overrides nx, ny, nz."""
    data = np.asarray(data)
    nz, ny, nx = data.shape if dims is None else dims[::-1]
    h = bytearray(1024)
    struct.pack_into(order + "4i", h, 0, nx, ny, nz, mode)
    struct.pack_into(order + "3i", h, 28, nx, ny, nz)                    # mx, my, mz
    struct.pack_into(order + "3f", h, 40, nx * voxel, ny * voxel, nz * voxel)
    struct.pack_into(order + "3f", h, 52, 90.0, 90.0, 90.0)
    struct.pack_into(order + "3i", h, 64, *axes)
    struct.pack_into(order + "2i", h, 88, ispg, nsymbt)
    h[208:212] = map_id
    h[212:216] = stamp
    body = data.astype(data.dtype.newbyteorder(order)).tobytes()
    return bytes(h) + b"\0" * max(nsymbt, 0) + body + extra


def _relion31_stack(n=5, box=12, seed=3):
    """A RELION-3.1-like particle stack: no 'MAP ' id, blank machine stamp, space group 0."""
    imgs = np.random.default_rng(seed).standard_normal((n, box, box)).astype(np.float32)
    return imgs, _mrc_bytes(imgs, map_id=bytes(4), stamp=bytes(4), voxel=1.31)


def test_relion31_stack_without_map_id_is_read_with_warnings(tmp_path, capsys):
    from radsvd.cli import main

    imgs, raw = _relion31_stack()
    path = tmp_path / "particles.mrcs"
    path.write_bytes(raw)
    with pytest.warns(InputWarning) as rec:
        got = read_stack(path)
    msgs = " | ".join(str(w.message) for w in rec)
    assert "no 'MAP ' id" in msgs and "blank machine stamp" in msgs
    np.testing.assert_array_equal(got, imgs)
    h = parse_mrc_header(raw, len(raw), str(path))
    assert (h.nx, h.ny, h.nz, h.is_stack, h.byte_order) == (12, 12, 5, True, "<")
    assert h.voxel_size == pytest.approx(1.31, rel=1e-6)
    assert main(["info", str(path)]) == 0
    out, err = capsys.readouterr()
    assert "type: stack" in out and "images: 5" in out and "box: 12" in out
    assert "radsvd info: warning:" in err and "Traceback" not in err
    mean = float(np.mean(imgs.astype(np.float64)))
    assert f"mean: {mean}" in out or abs(describe(path)["mean"] - mean) < 1e-12


@pytest.mark.parametrize("name", ["m.map", "m.map.gz", "m.mrc", "s.mrcs", "s.mrcs.gz"])
def test_every_mrc_name_and_compression_reads_alike(tmp_path, name):
    """Written by mrcfile, read by our parser: same data, shape, voxel size and kind."""
    import mrcfile

    a = np.random.default_rng(0).standard_normal((6, 6, 6)).astype(np.float32)
    write_mrc(tmp_path / name, a, voxel_size=2.5)
    with mrcfile.open(str(tmp_path / name), permissive=True) as m:  # the reference reader
        ref, ref_voxel = np.array(m.data), float(m.voxel_size.x)
    h = mrc_header(tmp_path / name)
    assert h.shape == ref.shape and h.voxel_size == pytest.approx(ref_voxel)
    assert h.compressed == name.endswith(".gz")
    assert h.is_stack == (".mrcs" in name)
    np.testing.assert_array_equal(read_mrc(tmp_path / name)[0], ref)
    np.testing.assert_array_equal(read_stack(tmp_path / name, [5, 1]), ref[[5, 1]])
    d = describe(tmp_path / name)
    assert d["type"] == ("stack" if ".mrcs" in name else "map") and d["box"] == 6
    assert d["mean"] == pytest.approx(float(ref.astype(np.float64).mean()), rel=1e-12)
    assert d["std"] == pytest.approx(float(ref.astype(np.float64).std()), rel=1e-12)


def test_byte_order_from_stamp_or_guessed(tmp_path):
    a = np.arange(2 * 4 * 4, dtype=np.float32).reshape(2, 4, 4)
    big = tmp_path / "big.mrcs"
    big.write_bytes(_mrc_bytes(a, order=">", stamp=b"\x11\x11\x00\x00"))
    np.testing.assert_array_equal(read_stack(big), a)
    blank = tmp_path / "blank.mrcs"
    blank.write_bytes(_mrc_bytes(a, order=">", stamp=bytes(4)))
    with pytest.warns(InputWarning, match="read as big-endian"):
        np.testing.assert_array_equal(read_stack(blank), a)


@pytest.mark.parametrize("name, ispg, shape, stack", [
    ("x.mrcs", 1, (8, 8, 8), True),     # the name wins
    ("x.map", 0, (7, 8, 8), False),
    ("x.mrc", 0, (8, 8, 8), True),      # MRC2014: space group 0 is an image stack
    ("x.mrc", 1, (8, 8, 8), False),
    ("x.mrc", 1, (7, 8, 8), True),      # 7 square sections of another size: a stack (warned)
    ("x.mrc", 1, (1, 8, 8), True),      # one image
    ("x.mrc", 1, (5, 6, 7), False),     # not square sections: a (non-cubic) map
    ("x", 999, (8, 8, 8), False),       # unknown space group: the shape decides (warned)
])
def test_stack_or_map_policy(name, ispg, shape, stack):
    raw = _mrc_bytes(np.zeros(shape, np.float32), ispg=ispg)
    h = parse_mrc_header(raw, len(raw), name)
    assert h.is_stack is stack
    assert bool(h.warnings) == ((name, ispg, shape) in [("x.mrc", 1, (7, 8, 8)),
                                                        ("x", 999, (8, 8, 8))])


def test_axis_order_is_applied_to_maps(tmp_path):
    v = np.random.default_rng(2).standard_normal((4, 5, 6)).astype(np.float32)   # V[z, y, x]
    stored = v.transpose(2, 1, 0)      # columns along z, rows along y, sections along x
    path = tmp_path / "xyz.map"
    path.write_bytes(_mrc_bytes(stored, axes=(3, 2, 1), ispg=1))
    with pytest.warns(InputWarning, match="transposed"):
        got, _ = read_mrc(path)
    np.testing.assert_array_equal(got, v)


def _bad_headers():
    a = np.zeros((2, 4, 4), np.float32)
    good = _mrc_bytes(a)
    return {
        "short": (good[:300], "shorter than the 1024-byte MRC header"),
        "nz0": (_mrc_bytes(a, dims=(4, 4, 0)), "nz = 0"),
        "nz<0": (_mrc_bytes(a, dims=(4, 4, -3)), "nz = -3"),
        "complex64": (_mrc_bytes(a, mode=4), r"mode 4 \(complex64\) is not supported.*2 \(float32\)"),
        "complex16": (_mrc_bytes(a, mode=3), r"mode 3 \(complex int16\) is not supported"),
        "mode99": (_mrc_bytes(a, mode=99), "mode 99 .* not supported"),
        "nsymbt<0": (_mrc_bytes(a, nsymbt=-8), "negative extended header"),
        "truncated": (good[:-10], "truncated"),
        "space group 401": (_mrc_bytes(a, ispg=401), "stack of volumes"),
    }


@pytest.mark.parametrize("case", list(_bad_headers()))
def test_inconsistent_mrc_is_a_clear_error_everywhere(tmp_path, case, capsys):
    from radsvd.cli import main

    raw, message = _bad_headers()[case]
    path = tmp_path / "bad.mrc"
    path.write_bytes(raw)
    for read in (read_mrc, read_stack, mrc_header, describe):
        with pytest.raises(InputError, match=message):
            read(path)
    assert main(["info", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("radsvd info: error:") and "Traceback" not in err
    gz = tmp_path / "bad.mrc.gz"
    gz.write_bytes(gzip.compress(raw))
    if case != "truncated":   # a gzip stream has no size to check before reading the data
        with pytest.raises(InputError, match=message):
            mrc_header(gz)
    with pytest.raises(InputError, match=message):
        read_mrc(gz)


def test_extended_header_bomb_allocates_nothing(tmp_path):
    """A header claiming a 2 GiB extended header is refused from the file size alone."""
    import tracemalloc

    path = tmp_path / "bomb.mrc"
    raw = bytearray(_mrc_bytes(np.zeros((2, 4, 4), np.float32)))
    struct.pack_into("<i", raw, 92, 2**31 - 1)
    path.write_bytes(bytes(raw))
    tracemalloc.start()
    try:
        for read in (read_mrc, read_stack, describe):
            with pytest.raises(InputError, match="extended header of 2147483647 bytes"):
                read(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20


def test_gzip_bombs_are_never_expanded(tmp_path):
    """(a) a small header followed by 256 MiB of zeros: only the described data plus a small
    slack is decompressed (warned); (b) a header describing more than deflate's 1032:1 limit
    allows for the file's size: refused before reading."""
    import tracemalloc
    import zlib

    a = np.random.default_rng(5).standard_normal((8, 8, 8)).astype(np.float32)
    comp = zlib.compressobj(9, zlib.DEFLATED, 31)        # gzip container
    parts = [comp.compress(_mrc_bytes(a, ispg=1))]
    zeros = bytes(1 << 20)
    parts += [comp.compress(zeros) for _ in range(256)]
    parts.append(comp.flush())
    bomb = tmp_path / "bomb.map.gz"
    bomb.write_bytes(b"".join(parts))
    assert bomb.stat().st_size < 2 << 20
    tracemalloc.start()
    try:
        with pytest.warns(InputWarning, match="gzip stream continues"):
            got, _ = read_mrc(bomb)
            d = describe(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    np.testing.assert_array_equal(got, a)
    assert d["box"] == 8 and peak < 4 << 20
    claims = tmp_path / "claims.map.gz"
    claims.write_bytes(gzip.compress(_mrc_bytes(a, ispg=1, dims=(2000, 2000, 2000))[:1024]))
    with pytest.raises(InputError, match="expands to at most"):
        read_mrc(claims)


def test_gzip_truncated_or_corrupt(tmp_path):
    a = np.random.default_rng(0).standard_normal((4, 8, 8)).astype(np.float32)
    packed = gzip.compress(_mrc_bytes(a))
    cut = tmp_path / "cut.mrcs.gz"
    cut.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError, match="truncated"):
        read_stack(cut)
    garbled = tmp_path / "garbled.mrcs.gz"
    garbled.write_bytes(packed[:600] + bytes(64) + packed[664:])
    with pytest.raises(InputError, match="gzip|truncated|corrupt"):
        read_stack(garbled)


def test_trailing_bytes_and_odd_files(tmp_path):
    a = np.ones((2, 4, 4), np.float32)
    long = tmp_path / "long.mrcs"
    long.write_bytes(_mrc_bytes(a, extra=b"\0" * 100))
    with pytest.warns(InputWarning, match="100 bytes after the data"):
        np.testing.assert_array_equal(read_stack(long), a)
    nan = tmp_path / "nan.mrcs"
    nan.write_bytes(_mrc_bytes(np.full((2, 4, 4), np.nan, np.float32)))
    with pytest.raises(InputError, match="NaN"):
        read_stack(nan)
    with pytest.raises(FileNotFoundError):
        read_mrc(tmp_path / "missing.mrc")
    with pytest.raises(InputError, match="folder"):
        read_mrc(tmp_path)
    good = write_mrc(tmp_path / "good.mrcs", np.ones((4, 8, 8), np.float32), 1.0)
    with pytest.raises(InputError, match="out of range"):
        read_stack(good, [4])
    with pytest.raises(InputError, match="complex"):
        write_mrc(tmp_path / "c.mrc", np.ones((2, 2, 2), np.complex64))
    int16 = tmp_path / "int16.mrcs"
    int16.write_bytes(_mrc_bytes(np.arange(32, dtype=np.int16).reshape(2, 4, 4), mode=1))
    np.testing.assert_array_equal(read_stack(int16), np.arange(32).reshape(2, 4, 4))


def test_read_map_refuses_a_stack(tmp_path):
    path = tmp_path / "s.mrcs"
    write_mrc(path, np.ones((8, 8, 8), np.float32), 1.0, stack=True)
    with pytest.raises(InputError, match="image stack"):
        read_mrc(path, expect="map")
    cubic = tmp_path / "old.mrc"   # a cubic map an older program marked space group 0
    cubic.write_bytes(_mrc_bytes(np.ones((8, 8, 8), np.float32), ispg=0))
    with pytest.warns(InputWarning, match="read as a map"):
        assert read_mrc(cubic, expect="map")[0].shape == (8, 8, 8)


def test_atomic_write_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.mrc"
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"partial")
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(InputError):
        write_mrc(target, np.zeros((2, 2, 2, 2)))
    assert list(tmp_path.iterdir()) == []
    # an existing file survives a failed rewrite untouched
    write_mrc(target, np.ones((2, 4, 4), np.float32), 1.0)
    before = target.read_bytes()
    with pytest.raises(InputError):
        write_mrc(target, np.zeros(3))
    assert target.read_bytes() == before
    with pytest.raises(InputError):
        write_star(tmp_path / "x.star", _table().drop(columns=["voltage"]))
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.mrc"]


# -- STAR -----------------------------------------------------------------------------------

@pytest.mark.parametrize("style", ["1", "3.0", "3.1"])
def test_star_round_trip(tmp_path, style):
    t = _table()
    path = write_star(tmp_path / "p.star", t, style=style)
    r = read_star(path)
    assert r.attrs["style"] == style
    for col in ("defocus_u", "defocus_v", "defocus_angle", "voltage", "cs",
                "amplitude_contrast", "pixel_size", "rot", "tilt", "psi", "shift_x",
                "shift_y"):
        np.testing.assert_allclose(r[col], t[col], rtol=1e-7, err_msg=col)
    assert r["image_index"].tolist() == list(range(6))
    assert set(r["image_path"]) == {"stack.mrcs"}
    assert r["micrograph"].tolist() == t["micrograph"].tolist()
    params = ctf_params(r)
    assert params[2].defocus_u == pytest.approx(t.defocus_u[2])


def test_relion1_pixel_size_from_detector(tmp_path):
    """RELION 1 / 3.0: pixel size = DetectorPixelSize (µm) · 1e4 / Magnification; origins in px."""
    text = """
data_images

loop_
_rlnImageName #1
_rlnDefocusU #2
_rlnDefocusV #3
_rlnDefocusAngle #4
_rlnVoltage #5
_rlnSphericalAberration #6
_rlnAmplitudeContrast #7
_rlnMagnification #8
_rlnDetectorPixelSize #9
_rlnOriginX #10
_rlnOriginY #11
_rlnAngleRot #12
_rlnAngleTilt #13
_rlnAnglePsi #14
000001@Particles/mic1.mrcs 12000.5 11000.25 45.0 300 2.0 0.1 41152.263 5.0 2.0 -1.0 10 20 30
000002@Particles/mic1.mrcs 12100.5 11100.25 46.0 300 2.0 0.1 41152.263 5.0 0.0 0.5 11 21 31
"""
    path = tmp_path / "r1.star"
    path.write_text(text)
    t = read_star(path)
    assert t.attrs["style"] == "1"
    p = 5.0 * 1e4 / 41152.263  # = 1.2150 Å
    np.testing.assert_allclose(t.pixel_size, p)
    np.testing.assert_allclose(t.shift_x, [2.0 * p, 0.0])
    np.testing.assert_allclose(t.shift_y, [-1.0 * p, 0.5 * p])
    assert t.image_path.tolist() == ["Particles/mic1.mrcs"] * 2
    assert t.image_index.tolist() == [0, 1]


@pytest.mark.parametrize("style", ["3.0", "3.1"])
def test_stray_character_row_is_skipped_with_warning(tmp_path, style):
    path = write_star(tmp_path / "p.star", _table(5), style=style)
    lines = path.read_text().splitlines()
    i = next(j for j, line in enumerate(lines) if line.startswith("000003@"))
    lines[i] = lines[i] + " x"  # EMPIAR-10028's shiny_2sets.star has such a line
    path.write_text("\n".join(lines) + "\n")
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        t = read_star(path)
    assert any(f"line(s) {i + 1}" in str(w.message) for w in rec)
    assert t["image_index"].tolist() == [0, 1, 3, 4]
    assert t.attrs["style"] == style
    np.testing.assert_allclose(t["defocus_u"], _table(5)["defocus_u"][[0, 1, 3, 4]], rtol=1e-7)


def test_missing_ctf_columns(tmp_path):
    path = write_star(tmp_path / "p.star", _table(), style="3.0")
    text = path.read_text().replace("_rlnDefocusV", "_rlnSomethingElse")
    path.write_text(text)
    with pytest.raises(InputError, match="missing CTF column.*rlnDefocusV"):
        read_star(path)
    assert len(read_star(path, require_ctf=False)) == 6
    no_loop = tmp_path / "empty.star"
    no_loop.write_text("data_\n\n# nothing\n")
    with pytest.raises(InputError):
        read_star(no_loop)


def test_optics_group_errors(tmp_path):
    path = write_star(tmp_path / "p.star", _table(), style="3.1")
    lines = path.read_text().splitlines()
    idx = [j for j, line in enumerate(lines) if line.startswith("1\topticsGroup1")]
    lines[idx[0]] = lines[idx[0]].replace("1\topticsGroup1", "7\topticsGroup7", 1)
    path.write_text("\n".join(lines) + "\n")
    with pytest.raises(InputError, match="optics group"):
        read_star(path)


def test_load_particles_and_errors(tmp_path):
    imgs = _files(tmp_path)
    star = write_star(tmp_path / "p.star", _table(), style="3.1")
    back, t = load_particles(star, n=4)
    np.testing.assert_array_equal(back, imgs[:4])
    assert len(t) == 4
    # references to a stack that is not there
    sub = tmp_path / "elsewhere"
    sub.mkdir()
    star2 = write_star(sub / "p.star", _table(), style="3.1")
    with pytest.raises(FileNotFoundError, match="missing under .*stack.mrcs"):
        load_particles(star2)
    back2, _ = load_particles(star2, data_dir=tmp_path)  # resolved against a data directory
    np.testing.assert_array_equal(back2, imgs)
    # an index beyond the stack
    t8 = _table(8)
    star3 = write_star(tmp_path / "p8.star", t8, style="3.1")
    with pytest.raises(InputError, match="out of range"):
        load_particles(star3)
    # two stacks with different boxes
    _files(tmp_path, n=3, box=20, stack="other.mrcs")
    t2 = pd.concat([_table(3), _table(3, stack="other.mrcs")], ignore_index=True)
    star4 = write_star(tmp_path / "mixed.star", t2, style="3.1")
    with pytest.raises(InputError, match="mismatched box sizes"):
        load_particles(star4)


def test_map_particle_box_check():
    check_map_matches_particles((64, 64, 64), 4.8, 256, 1.2)  # same 307 Å box
    with pytest.raises(InputError, match="mismatched box sizes"):
        check_map_matches_particles((128, 128, 128), 1.2156, 256, 1.2156)
    with pytest.raises(InputError, match="not cubic"):
        check_map_matches_particles((64, 64, 32), 1.0, 64, 1.0)
