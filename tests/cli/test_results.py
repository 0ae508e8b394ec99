"""``radsvd info`` and ``radsvd plot`` on result files: kinds, summaries, found vs true."""

import numpy as np
import pytest

from radsvd._validate import InputError
from radsvd.cli import main
from radsvd.data import read_star
from radsvd.results import load_result, summarize

pytest.importorskip("matplotlib")   # a dependency of the test extra ('radsvd[plot]')


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    d = tmp_path_factory.mktemp("results")
    assert main(["simulate", "--molecule", "ribosome-like", "--n", "12", "--box", "32",
                 "--snr", "0", "--no-ctf", "--max-shift", "3", "--out", str(d / "sim")]) == 0
    return d


def _poses_result(d, star, dpsi=3.0, d_origin=(0.5, 0.0)):
    """A poses result whose poses differ from the STAR's by psi + dpsi (a rotation of dpsi
    degrees about the viewing axis: geodesic error exactly dpsi) and whose origins differ by
    d_origin Å."""
    t = read_star(star, require_ctf=False)
    out = d / "fake.npz"
    np.savez(out, rot=t.rot.to_numpy(), tilt=t.tilt.to_numpy(), psi=t.psi.to_numpy() + dpsi,
             score=np.linspace(1, 2, len(t)), ctf_group=np.arange(len(t)) % 2,
             origin_x_A=t.shift_x.to_numpy() + d_origin[0],
             origin_y_A=t.shift_y.to_numpy() + d_origin[1],
             info_particles=np.array(str(star)))
    return out


def test_info_poses_against_true_poses(sim, capsys):
    star = sim / "sim" / "particles.star"
    s = summarize(_poses_result(sim, star))
    assert s["type"] == "result (poses)" and s["true_poses_in_star"]
    assert s["angular_error_deg"]["max"] == pytest.approx(3.0, abs=1e-6)
    assert s["origin_error_A"]["median"] == pytest.approx(0.5, abs=1e-9)
    assert s["within_5_deg"] == 1.0 and s["ctf_groups_used"] == 2
    assert main(["info", str(sim / "fake.npz")]) == 0
    assert "angular_error_deg" in capsys.readouterr().out


def test_commands_results_summarised_and_plotted(sim, capsys):
    d = sim
    star, mp = d / "sim" / "particles.star", d / "sim" / "map.mrc"
    assert main(["align-particles", str(star), str(mp), "--K", "10", "--no-ctf",
                 "--no-progress", "--ignore-origins", "--max-shift", "6", "--out",
                 str(d / "p.star")]) == 0
    assert main(["templates", str(mp), "--K", "6", "--out", str(d / "t.mrcs"),
                 "--no-progress"]) == 0
    assert main(["align-images", str(d / "sim" / "particles.mrcs"), str(d / "t.mrcs"), "--K",
                 "6", "--max-shift-px", "1", "--no-progress", "--out", str(d / "i.npz")]) == 0
    assert main(["align-volumes", str(mp), str(mp), "--K", "5", "--no-progress", "--out",
                 str(d / "v.npz")]) == 0
    capsys.readouterr()
    err = ""
    for name, kind in (("p.npz", "poses"), ("i.npz", "images"), ("v.npz", "volumes")):
        assert load_result(d / name).kind == kind
        assert main(["info", "--json", str(d / name)]) == 0
        assert f'"result ({kind})"' in capsys.readouterr().out
        assert main(["plot", str(d / name)]) == 0
        err += capsys.readouterr().err
        png = (d / name).with_suffix(".png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000
    assert "no landscape" in err and "--ignore-origins" in err
    assert main(["plot", str(d / "i.npz")]) == 2          # the PNG exists: --force
    assert "exists" in capsys.readouterr().err


def test_volume_landscape_slice_is_drawn(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    from radsvd.cli.plot import plot_result

    np.savez(tmp_path / "v.npz", matrix=np.eye(3)[None], score=np.ones(1),
             landscape_slice=np.random.default_rng(0).random((1, 8, 16)))
    fig, notes = plot_result(load_result(tmp_path / "v.npz"))
    assert not notes and fig.axes[0].images[0].get_array().shape == (8, 16)


def test_not_a_result(tmp_path, capsys):
    np.savez(tmp_path / "x.npz", a=np.zeros(2))
    with pytest.raises(InputError, match="not a radsvd result"):
        load_result(tmp_path / "x.npz")
    (tmp_path / "bad.npz").write_bytes(b"PK\x03\x04 not a zip")
    assert main(["info", str(tmp_path / "bad.npz")]) == 2
    assert "not a readable .npz" in capsys.readouterr().err
