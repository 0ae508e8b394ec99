"""Start-up: ``import radsvd`` and ``radsvd --help`` load no heavy dependency (behaviour, not
timing: each check runs a fresh interpreter and inspects ``sys.modules``)."""

import json
import subprocess
import sys

import pytest

HEAVY = ("numba", "scipy", "finufft", "pandas", "numpy", "mrcfile", "ducc0")


def _loaded_after(code: str) -> list[str]:
    probe = (f"{code}\nimport json, sys\n"
             f"print(json.dumps(sorted(m for m in {HEAVY!r} if m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def test_import_radsvd_loads_no_heavy_dependency():
    assert _loaded_after("import radsvd") == []


@pytest.mark.parametrize("argv", [["--help"], ["align-images", "--help"],
                                  ["align-volumes", "--help"], ["--version"]])
def test_cli_help_loads_no_heavy_dependency(argv):
    code = ("import sys\nfrom radsvd.cli import main\n"
            f"try:\n    main({argv!r})\nexcept SystemExit:\n    pass")
    assert _loaded_after(code) == []


def test_commands_load_pandas_only_for_star_files():
    """align-images / align-volumes read MRC files: pandas (0.4 s CPU to import) stays out."""
    code = ("import radsvd.data.mrc, radsvd.data.stacks, radsvd.cli.volumes, radsvd.cli.images, radsvd.volumes.align,"
            " radsvd.images.align")
    assert "pandas" not in _loaded_after(code)
    assert "pandas" in _loaded_after("import radsvd.data.star as star\nstar.pd.DataFrame")


def test_lazy_exports_resolve_every_public_name():
    import radsvd
    import radsvd.data
    import radsvd.images
    import radsvd.volumes

    for pkg in (radsvd, radsvd.data, radsvd.images, radsvd.volumes):
        for name in pkg.__all__:
            assert getattr(pkg, name) is not None, (pkg.__name__, name)
        assert set(pkg.__all__) <= set(dir(pkg))
        with pytest.raises(AttributeError, match="no attribute"):
            getattr(pkg, "no_such_name")
    # the exported objects are those of their modules; submodules resolve as attributes
    from radsvd.volumes.shells import to_shells

    assert radsvd.to_shells is to_shells
    assert radsvd.images.align.__name__ == "radsvd.images.align"
    assert radsvd.metrics.__name__ == "radsvd.metrics"


def test_star_import_still_works():
    ns = {}
    exec("from radsvd import *", ns)
    import radsvd

    assert {n for n in radsvd.__all__} <= set(ns)


def test_command_entry_freezes_the_heap_before_exit(tmp_path):
    """The console entry leaves its objects to the OS at exit (gc.freeze): tearing numba's
    objects down took ~1 s per command.  main() itself (in-process callers) does not."""
    import gc

    from radsvd.cli import entry, main

    gc.unfreeze()
    argv = ["bench", "--compare", str(tmp_path / "none.json")]     # a quick error: exit 2
    assert main(argv) == 2
    assert gc.get_freeze_count() == 0
    try:
        assert entry(argv) == 2
        assert gc.get_freeze_count() > 0
    finally:
        gc.unfreeze()
