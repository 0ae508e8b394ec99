"""One unit per quantity on the command line: stated in --help, ambiguous spellings refused."""

import pytest

from radsvd.cli import build_parser, main

UNITS = {  # (command, option) -> a unit word its help must contain
    ("align-images", "--max-shift-px"): "pixels", ("align-images", "--shift-step-px"): "pixels",
    ("align-particles", "--max-shift"): "Å", ("align-particles", "--shift-step"): "Å",
    ("align-particles", "--sigma"): "Å", ("align-particles", "--box"): "pixels",
    ("simulate", "--max-shift"): "Å", ("simulate", "--pixel-size"): "Å",
    ("simulate", "--box"): "pixels", ("templates", "--box"): "pixels",
    ("align-images", "--K"): "box units", ("align-volumes", "--K"): "box units",
    ("align-particles", "--K"): "box units", ("templates", "--K"): "box units",
}


def _help(command: str, option: str) -> str:
    sub = build_parser()._subparsers._group_actions[0]
    for a in sub.choices[command]._actions:
        if option in a.option_strings:
            return a.help or ""
    raise AssertionError(f"{command} has no {option}")


@pytest.mark.parametrize("command, option", sorted(UNITS))
def test_help_states_the_unit(command, option):
    assert UNITS[command, option] in _help(command, option)


@pytest.mark.parametrize("option", ["--max-shift", "--shift-step"])
def test_align_images_refuses_the_angstrom_spelling(tmp_path, capsys, option):
    """``--max-shift`` means Å elsewhere; align-images has no pixel size, so it is refused
    (with the pixel spelling named) rather than read as pixels."""
    import numpy as np

    from radsvd.data import write_mrc

    s = write_mrc(tmp_path / "s.mrcs", np.ones((1, 16, 16), np.float32))
    assert main(["align-images", str(s), str(s), "--K", "4", option, "2", "--out",
                 str(tmp_path / "r.npz")]) == 2
    assert f"use {option}-px" in capsys.readouterr().err
    assert not (tmp_path / "r.npz").exists()
