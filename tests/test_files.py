import numpy as np
import pytest

from radsvd._files import atomic_path, save_npz


def test_atomic_path_leaves_nothing_on_failure(tmp_path):
    target = tmp_path / "out.npz"
    save_npz(target, a=np.arange(3))
    assert np.load(target)["a"].tolist() == [0, 1, 2]
    with pytest.raises(RuntimeError):
        with atomic_path(target) as tmp:
            tmp.write_bytes(b"half")
            raise RuntimeError("interrupted")
    assert np.load(target)["a"].tolist() == [0, 1, 2]          # old content untouched
    assert [p.name for p in tmp_path.iterdir()] == ["out.npz"]  # no temporary file left
