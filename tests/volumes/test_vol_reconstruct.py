"""Test volumes: direct Fourier inversion reproduces the molecule; the stated rotation G holds."""

import numpy as np
import pytest

from radsvd import InputError
from radsvd.data.molecules import synthetic_molecule
from radsvd.volumes import align_volume_maps
from radsvd.volumes.reconstruct import make_test_volumes


@pytest.fixture(scope="module")
def molecule():
    return synthetic_molecule("trpv1-like", n_atoms=30)


def test_noise_free_reconstruction_matches_rotated_reference(molecule):
    N = 32
    ref = molecule.volume(N)
    tv = make_test_volumes(ref, 2, images_per_volume=300, snr=None, pose_error_deg=0.0, seed=1)
    for vol, G in zip(tv.volumes, tv.rotations):
        ref_G = molecule.rotated(G).volume(N)          # reference(Gᵀ x)
        # The Monte-Carlo angular rule (300 random planes) leaves gaps at high frequency, so
        # the reconstruction is imperfect by design (measured ≈ 0.93); what must hold is that
        # it is the G-rotated molecule (not the unrotated one, correlation ≈ 0.05) with the
        # formula's scale.  Loose bounds: 0.8 and a margin of 0.5 over the unrotated map.
        c_rot = np.corrcoef(vol.ravel(), ref_G.ravel())[0, 1]
        assert c_rot > 0.8
        assert c_rot > np.corrcoef(vol.ravel(), ref.ravel())[0, 1] + 0.5
        # the formula's normalisation: the right overall scale within 20%
        assert 0.8 < np.linalg.norm(vol) / np.linalg.norm(ref_G) < 1.2


def test_imperfect_volumes_align_back(molecule):
    N = 24
    ref = molecule.volume(N)
    tv = make_test_volumes(ref, 2, images_per_volume=100, snr=0.5, pose_error_deg=3.0, seed=2)
    a, b = tv.volumes
    assert np.corrcoef(a.ravel(), b.ravel())[0, 1] < 0.9    # distinct volumes
    res = align_volume_maps(tv.volumes, ref, K=8, rank="full")
    spacing = np.degrees(2 * np.pi / 17)                    # M = 2L+1 = 17 at K = 8
    for R, G in zip(res.matrix, tv.rotations):
        err = np.degrees(np.arccos(np.clip((np.trace(R @ G) - 1) / 2, -1, 1)))
        assert err < 1.5 * spacing                          # within the grid spacing


def test_bad_arguments(molecule):
    ref = molecule.volume(16)
    with pytest.raises(InputError, match="n_volumes"):
        make_test_volumes(ref, 0)
    with pytest.raises(InputError, match="pose_error"):
        make_test_volumes(ref, 1, pose_error_deg=-1)
    with pytest.raises(InputError, match="cubic"):
        make_test_volumes(np.zeros((16, 16, 8)), 1)
