"""Test volumes for the volume experiment (paper §4.10, Figs 9–12): honest imperfect
reconstructions of the reference, each randomly rotated (radsvd.volumes.reconstruct:
direct Fourier inversion of ``images_per_volume`` noisy projections at the dataset's SNR,
from poses perturbed by ``pose_error_deg``).  The reference map is first Fourier-cropped to
the volume box.  Output npz: reference (N³), volumes (n, N³), rotations G (n, 3, 3) with
volumes[i](x) ≈ reference(G_iᵀ x), voxel_size.
"""

from radsvd.data.mrc import read_mrc
from radsvd.data.preprocess import downsample_volume
from radsvd.volumes.reconstruct import make_test_volumes
from wf_common import save_npz, setup

log = setup(snakemake)
cfg = snakemake.params.cfg
vcfg = cfg["volumes"]
reference, voxel = read_mrc(snakemake.input.reference)
N = int(vcfg["box"])
if reference.shape[0] > N:
    voxel *= reference.shape[0] / N
    reference = downsample_volume(reference, N)
elif reference.shape[0] < N:
    raise ValueError(f"volumes.box = {N} exceeds the reference map's box {reference.shape[0]}")
snr = float(cfg["synthetic"]["snr"])
log.info("%d reconstructions of a %d³ map from %d images each (SNR %g, pose error %g°)",
         int(vcfg["n_volumes"]), N, int(vcfg["images_per_volume"]), snr,
         float(vcfg["pose_error_deg"]))
tv = make_test_volumes(reference, int(vcfg["n_volumes"]),
                       images_per_volume=int(vcfg["images_per_volume"]), snr=snr,
                       pose_error_deg=float(vcfg["pose_error_deg"]), voxel_size=voxel,
                       seed=cfg["seed"] + 7919,
                       progress=lambda i, n: log.info("volume %d/%d done", i, n))
save_npz(snakemake.output[0], reference=reference, volumes=tv.volumes, rotations=tv.rotations,
         voxel_size=voxel)
log.info("wrote %s", snakemake.output[0])
