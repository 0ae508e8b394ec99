"""The commands' output policy: no silent overwrite (``--force``), no silent folder creation."""

import numpy as np
import pytest

from radsvd._files import output_policy, save_npz
from radsvd.cli import NO_OUTPUT, build_parser, main
from radsvd.data import write_mrc


@pytest.fixture
def stack(tmp_path):
    rng = np.random.default_rng(0)
    return write_mrc(tmp_path / "a.mrcs", rng.normal(size=(3, 16, 16)).astype(np.float32))


def test_every_writing_command_has_force():
    sub = build_parser()._subparsers._group_actions[0]
    for name, p in sub.choices.items():
        has = any("--force" in a.option_strings for a in p._actions)
        assert has == (name not in NO_OUTPUT), name


def test_existing_output_refused_without_force(stack, tmp_path, capsys):
    out = tmp_path / "r.npz"
    out.write_bytes(b"keep me")
    argv = ["align-images", str(stack), str(stack), "--K", "4", "--no-progress", "--out",
            str(out)]
    assert main(argv) == 2
    assert f"--out: {out} exists; pass --force" in capsys.readouterr().err
    assert out.read_bytes() == b"keep me"
    assert main(argv + ["--force"]) == 0
    assert np.load(out)["best_target"].shape == (3,)
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_missing_folder_is_an_error(stack, tmp_path, capsys):
    out = tmp_path / "no" / "r.npz"
    assert main(["align-images", str(stack), str(stack), "--K", "4", "--out", str(out)]) == 2
    assert "folder" in capsys.readouterr().err and not out.parent.exists()


def test_simulate_creates_only_its_folder(tmp_path, capsys):
    argv = ["simulate", "--n", "2", "--box", "16", "--snr", "0", "--no-ctf"]
    assert main(argv + ["--out", str(tmp_path / "a" / "b")]) == 2
    assert "does not exist" in capsys.readouterr().err and not (tmp_path / "a").exists()
    assert main(argv + ["--out", str(tmp_path / "sim")]) == 0
    star = (tmp_path / "sim" / "particles.star").read_bytes()
    assert main(argv + ["--out", str(tmp_path / "sim"), "--seed", "3"]) == 2  # before the work
    assert "particles.mrcs exists" in capsys.readouterr().err
    assert (tmp_path / "sim" / "particles.star").read_bytes() == star
    assert main(argv + ["--out", str(tmp_path / "sim"), "--seed", "3", "--force"]) == 0


def test_library_writes_keep_overwriting(tmp_path):
    """Outside the command line's policy, library writers overwrite and create folders."""
    path = tmp_path / "x" / "y.npz"
    save_npz(path, a=np.zeros(1))
    save_npz(path, a=np.ones(1))
    assert np.load(path)["a"][0] == 1
    with output_policy(force=False), pytest.raises(Exception, match="exists"):
        save_npz(path, a=np.zeros(1))
