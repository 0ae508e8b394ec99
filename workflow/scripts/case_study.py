"""Arrays for Figs 1–7: two particles seen from nearly the same direction, their signal
estimates, two-ring case studies, the spectrum of C, landscapes over H, and a gallery.

Signal estimate (paper §2.3): the reference projected at the particle's pose (from the STAR
file: true poses for synthetic data, refined poses for real data) times its CTF, on the
polar grid; pictures are its band-limited inverse (radsvd.images.polar.polar_to_images).
Poses R = Rz(rot) Ry(tilt) Rz(psi) (radsvd.data.rotations), so the template of a pose with
in-plane angle psi is the psi = 0 template rotated by −psi: in the landscape
X(γ) = <Â, R_γ B̂> (the target rotated by +γ) the image peaks at γ = −psi against the
psi = 0 template S, and image 2 against image 1 at γ = psi_2 − psi_1.
"""

import numpy as np

from radsvd import PolarGrid
from radsvd.data.mrc import read_mrc
from radsvd.data.stacks import ctf_params, load_particles
from radsvd.data.templates import project_fourier
from radsvd.data.viewing import directions_from_angles
from radsvd.images.align import landscapes
from radsvd.images.basis import radial_kernel, radial_svd
from radsvd.images.polar import polar_to_images, to_fb, to_polar
from wf_common import save_npz, setup

log = setup(snakemake)
cfg = snakemake.params.cfg
cs = snakemake.params.casestudy
images, table = load_particles(snakemake.input.star, dtype=np.float64)
volume, _ = read_mrc(snakemake.input.reference)
N = images.shape[-1]
pixel = float(table["pixel_size"].iloc[0])
grid = PolarGrid(K=float(cfg["images"]["K"]))
params = ctf_params(table)
rot, tilt, psi = (table[c].to_numpy(float) for c in ("rot", "tilt", "psi"))
poses = directions_from_angles(rot, tilt, psi)
views = poses[:, :, 2]                                   # viewing directions (unit vectors)

# ---- the pair: closest viewing directions among particles of one micrograph (one CTF) ----
group = table["micrograph"].to_numpy() if "micrograph" in table else \
    np.round(table["defocus_u"].to_numpy(), 0)
cos = np.clip(views @ views.T, -1, 1)
same = group[:, None] == group[None, :]
dpsi = np.abs(((psi[:, None] - psi[None, :]) + 180) % 360 - 180)
ok = same & (dpsi > 20)                                   # a visible in-plane rotation
np.fill_diagonal(ok, False)
if not ok.any():
    ok = ~np.eye(len(table), dtype=bool)
score = np.where(ok, cos, -2)
i1, i2 = np.unravel_index(np.argmax(score), score.shape)
i1, i2 = int(min(i1, i2)), int(max(i1, i2))
log.info("pair %d, %d: viewing directions %.2f° apart, in-plane %.1f° apart", i1, i2,
         np.degrees(np.arccos(cos[i1, i2])), dpsi[i1, i2])
pair = [i1, i2]

polar_img = to_polar(images[pair], grid)
ctf_polar = np.stack([params[i].polar(grid, N, pixel) for i in pair])
signal_polar = project_fourier(volume, poses[pair], grid) * ctf_polar
signal_img = polar_to_images(signal_polar, grid, N)

# ---- two-ring case studies (eq. 68–83 with R = 2 and unit weights) --------------------
sig_fb = to_fb(signal_polar[0])[0]                        # (R, Q//2+1) of Â^signal, image 1
mult = np.full(grid.n_freq, 2.0)
mult[0], mult[-1] = 0.0, 1.0                              # q ≠ 0, each ±q once (real image)
C_full = np.real((sig_fb.conj() * mult) @ sig_fb.T)       # eq. 83 on all rings, unit weights
quality = np.diag(C_full)
amplitude = np.abs(signal_polar[0]).max(axis=1)


def two_ring(r1, r2):
    Csub = C_full[np.ix_([r1, r2], [r1, r2])]
    lam, vec = np.linalg.eigh(Csub)
    u, v = vec[:, 1], vec[:, 0]
    u, v = u * np.sign(u[np.argmax(np.abs(u))]), v * np.sign(v[np.argmax(np.abs(v))])
    rings = signal_polar[0][[r1, r2]]
    return dict(rings=rings, combos=np.stack([u @ rings, v @ rings]), k=grid.k[[r1, r2]],
                u=u, v=v, eigenvalues=np.array([lam[1], lam[0]]),
                quality=quality[[r1, r2]], index=np.array([r1, r2]))


# Fig 2: two informative rings (each at least a quarter of the best ring's quality C_rr)
# whose principal combination gains most over the better of the two alone.
good = np.flatnonzero(quality >= 0.25 * quality.max())
best_gain, useful = -np.inf, None
for a in good:
    for b in good:
        if b <= a + 1:
            continue
        lam_max = np.linalg.eigvalsh(C_full[np.ix_([a, b], [a, b])])[-1]
        gain = lam_max / max(quality[a], quality[b])
        if gain > best_gain:
            best_gain, useful = gain, (int(a), int(b))
useful = two_ring(*useful) if useful else two_ring(int(np.argsort(quality)[-1]), 0)
# Fig 3: a ring of large amplitude that carries little rotational information (largest
# amplitude² per unit of quality among rings with at least 5 % of the best quality), and the
# most informative ring of smaller amplitude.
order = np.argsort(quality)[::-1]
cand = np.flatnonzero(quality >= 0.05 * quality.max())
ra = int(cand[np.argmax(amplitude[cand] ** 2 / quality[cand])])
smaller = [int(r) for r in order if amplitude[r] < amplitude[ra] and abs(int(r) - ra) >= 2]
rb = smaller[0] if smaller else int(order[0] if order[0] != ra else order[1])
contrast = two_ring(ra, rb)
log.info("two-ring studies: useful rings %s, amplitude-vs-information rings %s",
         useful["index"].tolist(), contrast["index"].tolist())

# ---- the CTF-corrected template S (image 1's viewing direction, psi = 0) ---------------
pose_S = directions_from_angles(rot[[i1]], tilt[[i1]], np.zeros(1))
S_fb = to_fb(project_fourier(volume, pose_S, grid) * ctf_polar[0])
basis = radial_svd(S_fb, grid)                            # kernel of one target (eq. 83)
spectrum_single = radial_kernel(S_fb, grid)
spectrum_single = np.linalg.eigvalsh(spectrum_single)[::-1]
tpl = np.load(snakemake.input.templates)
from radsvd.data.ctf import cluster_ctf, ctf_polar_stack  # noqa: E402

rings = ctf_polar_stack(params, grid, N, pixel, ring=True)
groups = cluster_ctf(rings, weights=grid.w, tolerance=float(cfg["images"]["ctf_tolerance"]))
spectrum_multi = np.linalg.eigvalsh(radial_kernel(tpl["fb"], grid, ctf=groups.rings,
                                                  group_sizes=groups.counts))[::-1]

ranks = [int(h) for h in cs["ranks"] if h <= grid.R]
fb_pair = to_fb(polar_img)
X_t_full = landscapes(fb_pair, S_fb, grid, precision="double")[:, 0]          # (2, Q)
X_t_H = np.stack([landscapes(fb_pair, S_fb, grid, basis, H, precision="double")[:, 0]
                  for H in ranks], axis=1)                                     # (2, nH, Q)
X_p_full = landscapes(fb_pair[:1], fb_pair[1:], grid, precision="double")[0, 0]
X_p_H = np.stack([landscapes(fb_pair[:1], fb_pair[1:], grid, basis, H, precision="double")[0, 0]
                  for H in ranks])
true_angle = np.radians(-psi[pair]) % (2 * np.pi)
pair_angle = np.radians(psi[i2] - psi[i1]) % (2 * np.pi)

save_npz(snakemake.output.casestudy, dataset=cfg["description"], image_ids=np.array(pair),
         images=images[pair], signals=signal_img, polar_images=polar_img.real,
         polar_signals=signal_polar.real, k=grid.k, psi=grid.psi, K=grid.K, box=N,
         pixel_size=pixel,
         **{f"useful_{k}": v for k, v in useful.items()},
         **{f"amplitude_{k}": v for k, v in contrast.items()},
         spectrum_single=spectrum_single, spectrum_multi=spectrum_multi,
         ranks=np.array(ranks), gamma=grid.gamma, landscape_template_full=X_t_full,
         landscape_template_H=X_t_H, true_angle=true_angle, landscape_pair_full=X_p_full,
         landscape_pair_H=X_p_H, pair_true_angle=pair_angle)
log.info("argmax vs pose: template %s deg vs %s deg; pair %.1f deg vs %.1f deg",
         np.round(np.degrees(grid.gamma[np.argmax(X_t_full, axis=1)]), 1).tolist(),
         np.round(np.degrees(true_angle), 1).tolist(),
         np.degrees(grid.gamma[np.argmax(X_p_full)]), np.degrees(pair_angle))

# ---- gallery (Fig 7): particles spread over the stack, and their CTF-corrected templates --
n_g = min(int(cs["n_gallery"]), len(table))
gal = np.linspace(0, len(table) - 1, n_g).round().astype(int)
gal_polar = project_fourier(volume, poses[gal], grid) * np.stack(
    [params[i].polar(grid, N, pixel) for i in gal])
save_npz(snakemake.output.gallery, dataset=cfg["description"], image_ids=gal, images=images[gal],
         templates=polar_to_images(gal_polar, grid, N), box=N, pixel_size=pixel,
         defocus=0.5 * (table["defocus_u"].to_numpy()[gal] + table["defocus_v"].to_numpy()[gal]))
log.info("wrote %s and %s", snakemake.output.casestudy, snakemake.output.gallery)
