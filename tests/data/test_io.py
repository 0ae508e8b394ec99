"""MRC and STAR I/O: round trips for every RELION style, clear errors, atomic writes."""

import gzip
import warnings

import numpy as np
import pandas as pd
import pytest

from radsvd._validate import InputError
from radsvd.data.io import (atomic_path, check_map_matches_particles, ctf_params,
                            load_particles, mrc_info, read_mrc, read_stack, read_star,
                            write_mrc, write_star)


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
    info = mrc_info(tmp_path / name)
    assert info.shape == (5, 6, 7) and info.compressed == name.endswith(".gz")
    assert info.is_stack == name.endswith(".mrcs")
    np.testing.assert_array_equal(read_stack(tmp_path / name, [4, 0]), a[[4, 0]])
    assert [p.name for p in tmp_path.iterdir()] == [name]  # no temporaries left


def test_corrupt_and_truncated_mrc(tmp_path):
    a = np.ones((4, 8, 8), np.float32)
    good = write_mrc(tmp_path / "good.mrcs", a, 1.0)
    raw = good.read_bytes()
    bad = tmp_path / "bad.mrc"
    bad.write_bytes(raw[:208] + b"XXXX" + raw[212:])  # destroy the 'MAP ' label
    with pytest.raises(InputError, match="not a readable MRC"):
        read_mrc(bad)
    trunc = tmp_path / "trunc.mrcs"
    trunc.write_bytes(raw[: len(raw) - 100])
    with pytest.raises(InputError, match="truncated"):
        read_mrc(trunc)
    with pytest.raises(InputError, match="truncated"):
        read_stack(trunc)
    noisy = write_mrc(tmp_path / "noisy.mrcs",
                      np.random.default_rng(0).standard_normal((4, 8, 8)).astype(np.float32))
    packed = gzip.compress(noisy.read_bytes())
    gz = tmp_path / "trunc.mrc.gz"
    gz.write_bytes(packed[: len(packed) // 2])
    with pytest.raises(InputError):
        read_mrc(gz)
    with pytest.raises(FileNotFoundError):
        read_mrc(tmp_path / "missing.mrc")
    with pytest.raises(InputError, match="out of range"):
        read_stack(good, [4])


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
