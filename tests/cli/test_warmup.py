"""First-run compilation: a notice before numba compiles a radsvd kernel; ``radsvd warmup``."""

import numba.core.event
import numpy as np

from radsvd import _jit
from radsvd.cli import main


def test_notice_before_the_first_compilation_only(capsys, monkeypatch):
    notice = _jit._CompileNotice()
    monkeypatch.setattr(_jit.atexit, "register", lambda f: None)
    monkeypatch.setattr(_jit.COMPILE_NOTICE, "quiet", True)    # the process-wide listener

    def kernel(x):
        return x + 1

    kernel.__module__ = "radsvd.fake"      # a radsvd kernel, compiled without the cache
    f = _jit.numba.njit(cache=False)(kernel)
    g = _jit.numba.njit(cache=False)(lambda x: x * 2)      # not radsvd's: counted in time only
    with numba.core.event.install_listener("numba:compile", notice):
        assert f(1) == 2 and f(2) == 3 and g(1.0) == 2.0 and f(np.float64(1)) == 2.0
    err = capsys.readouterr().err
    assert err.count("radsvd: compiling numba kernels once") == 1
    assert notice.kernels == 2 and notice.depth == 0 and notice.seconds > 0
    notice.summary()
    assert "compiled 2 kernel signature(s)" in capsys.readouterr().err


def test_warmup_runs_every_step(capsys, tmp_path, monkeypatch):
    """Every step succeeds in a temporary folder and the working folder is left as it was
    (seconds once the cache is warm; the compilation a fresh cache needs is paid once)."""
    monkeypatch.chdir(tmp_path)
    assert main(["warmup"]) == 0
    err = capsys.readouterr().err
    assert "warmup: done" in err and "align-volumes --rank" in err
    assert not list(tmp_path.iterdir())
