"""Private numba kernels of the 2D engine (called only from radsvd.images.plan).

Every kernel is serial: the engine parallelises over tiles of pairs (one tile = one task,
BLAS single-threaded inside), so results never depend on the thread count.
"""

from __future__ import annotations

import math

import numpy as np

from radsvd._jit import jit


@jit
def _trig_eval(Z, p, qs, cw, g, cq, sq):  # pragma: no cover - compiled
    """X(g), X'(g), X''(g) of the trigonometric polynomial of pair p (eq. 23 / 35).

    X(g) = Σ_i cw_i (Zr_i cos(q_i g) + Zi_i sin(q_i g)); Z rows are (i, re/im) pairs.
    cos/sin(q g) by the rotation recurrence (error ~q·eps).
    """
    qmax = cq.shape[0] - 1
    c1 = math.cos(g)
    s1 = math.sin(g)
    cq[0] = 1.0
    sq[0] = 0.0
    for q in range(1, qmax + 1):
        cq[q] = cq[q - 1] * c1 - sq[q - 1] * s1
        sq[q] = sq[q - 1] * c1 + cq[q - 1] * s1
    f = 0.0
    d1 = 0.0
    d2 = 0.0
    for i in range(qs.shape[0]):
        q = qs[i]
        zr = Z[2 * i, p]
        zi = Z[2 * i + 1, p]
        a = zr * cq[q] + zi * sq[q]
        b = zi * cq[q] - zr * sq[q]
        f += cw[i] * a
        d1 += cw[i] * q * b
        d2 -= cw[i] * q * q * a
    return f, d1, d2


@jit
def _refine(Z, qs, cw, idx, Q, gam, val):  # pragma: no cover - compiled
    """Off-grid maximum near the grid argmax idx[p] (eq. 23): parabola, then Newton.

    Z: (2·n_freq, P) float64 Fourier coefficients per pair (rows (i, re/im));
    qs: (n_freq,) q of row pair i; cw: (n_freq,) weights Q·w_q; outputs gam, val (P,).
    The step is confined to [γ* - Δγ, γ* + Δγ] and kept only if it does not lower X.
    """
    P = Z.shape[1]
    dg = 2.0 * math.pi / Q
    qmax = Q // 2
    cq = np.empty(qmax + 1)
    sq = np.empty(qmax + 1)
    for p in range(P):
        g0 = idx[p] * dg
        f0, d1, d2 = _trig_eval(Z, p, qs, cw, g0, cq, sq)
        fm, _, _ = _trig_eval(Z, p, qs, cw, g0 - dg, cq, sq)
        fp, _, _ = _trig_eval(Z, p, qs, cw, g0 + dg, cq, sq)
        den = fm - 2.0 * f0 + fp
        g = g0
        if den < 0.0:
            g = g0 + 0.5 * dg * (fm - fp) / den
        for _ in range(6):
            f, d1, d2 = _trig_eval(Z, p, qs, cw, g, cq, sq)
            if d2 >= 0.0:
                break
            step = -d1 / d2
            gn = g + step
            if gn < g0 - dg:
                gn = g0 - dg
            if gn > g0 + dg:
                gn = g0 + dg
            if abs(gn - g) < 1e-13:
                g = gn
                break
            g = gn
        f, _, _ = _trig_eval(Z, p, qs, cw, g, cq, sq)
        if f < f0:
            g = g0
            f = f0
        g = g % (2.0 * math.pi)
        if g >= 2.0 * math.pi:  # -tiny % 2π rounds to 2π: keep the documented [0, 2π)
            g = 0.0
        gam[p] = g
        val[p] = f


@jit
def _best4(EC, ES, OC, OS, J, val, idx):  # pragma: no cover - compiled
    """Max and first argmax over γ from the four quarter-DFTs (eq. 35 step 2, Q = 2J).

    EC/ES (even q, cos/sin) and OC/OS (odd q): (Jh+1, P), Jh = ⌊J/2⌋.  For 0 ≤ j ≤ Jh:
        X_j = (EC+ES) + (OC+OS),      X_{J−j} = (EC−ES) − (OC−OS),
        X_{J+j} = (EC+ES) − (OC+OS),  X_{2J−j} = (EC−ES) + (OC−OS)
    (parity of q gives γ + π; the sign of the sine gives −γ).  Each of the four index streams
    keeps its own running max with a plain comparison ('>' where the index grows with j,
    '>=' where it shrinks, so ties keep the lowest index); the streams cover increasing index
    ranges and are merged in that order with '>', so the result is the first argmax.
    """
    Jh1, P = EC.shape
    v1 = np.empty(P, EC.dtype)
    v2 = np.empty(P, EC.dtype)
    v3 = np.empty(P, EC.dtype)
    v4 = np.empty(P, EC.dtype)
    k1 = np.zeros(P, np.int32)
    k2 = np.zeros(P, np.int32)
    k3 = np.zeros(P, np.int32)
    k4 = np.zeros(P, np.int32)
    for p in range(P):
        e1 = EC[0, p] + ES[0, p]
        o1 = OC[0, p] + OS[0, p]
        e2 = EC[0, p] - ES[0, p]
        o2 = OC[0, p] - OS[0, p]
        v1[p] = e1 + o1
        v2[p] = e2 - o2
        v3[p] = e1 - o1
        v4[p] = -np.inf
        k2[p] = J
        k3[p] = J
    for j in range(1, Jh1):
        m1 = np.int32(j)
        m2 = np.int32(J - j)
        m3 = np.int32(J + j)
        m4 = np.int32(2 * J - j)
        ec = EC[j]
        es = ES[j]
        oc = OC[j]
        os_ = OS[j]
        for p in range(P):  # selects, not branches: the loop compiles to vector code
            e1 = ec[p] + es[p]
            o1 = oc[p] + os_[p]
            e2 = ec[p] - es[p]
            o2 = oc[p] - os_[p]
            x = e1 + o1
            v = v1[p]
            up = x > v
            v1[p] = x if up else v
            k1[p] = m1 if up else k1[p]
            x = e2 - o2
            v = v2[p]
            up = x >= v
            v2[p] = x if up else v
            k2[p] = m2 if up else k2[p]
            x = e1 - o1
            v = v3[p]
            up = x > v
            v3[p] = x if up else v
            k3[p] = m3 if up else k3[p]
            x = e2 + o2
            v = v4[p]
            up = x >= v
            v4[p] = x if up else v
            k4[p] = m4 if up else k4[p]
    for p in range(P):
        v = v1[p]
        k = k1[p]
        if v2[p] > v:
            v = v2[p]
            k = k2[p]
        if v3[p] > v:
            v = v3[p]
            k = k3[p]
        if v4[p] > v:
            v = v4[p]
            k = k4[p]
        val[p] = v
        idx[p] = k


@jit
def _assemble4(EC, ES, OC, OS, J, X):  # pragma: no cover - compiled
    """The whole landscape X (P, 2J) from the four quarter-DFTs (see :func:`_best4`)."""
    Jh1, P = EC.shape
    for p in range(P):
        for j in range(Jh1):
            e1 = EC[j, p] + ES[j, p]
            o1 = OC[j, p] + OS[j, p]
            e2 = EC[j, p] - ES[j, p]
            o2 = OC[j, p] - OS[j, p]
            X[p, j] = e1 + o1
            X[p, J + j] = e1 - o1
            X[p, J - j] = e2 - o2
            X[p, (2 * J - j) % (2 * J)] = e2 + o2


@jit
def _row_best(val, idx, b0, best_score, best_target,
              best_index):  # pragma: no cover - compiled
    """Per image (row) of a tile: keep the best (score, target, γ-index) seen so far.

    val, idx: (n, nb) per-pair maxima; targets b0 … b0+nb−1.  Strict '>' in target order,
    so ties go to the lowest target index (tiles arrive in increasing b0).
    """
    n, nb = val.shape
    for i in range(n):
        for j in range(nb):
            v = float(val[i, j])
            if v > best_score[i]:
                best_score[i] = v
                best_target[i] = b0 + j
                best_index[i] = idx[i, j]


@jit
def _shift_row_best(val, idx, b0, image, shift, best_score, best_target, best_index,
                    best_shift):  # pragma: no cover - compiled
    """Per image: best (score, target, shift, γ-index) over rows (image, shift) of a tile.

    val, idx: (n_rows, nb) per-pair maxima over γ for targets b0 … b0+nb−1; row v is image
    image[v] under shift shift[v].  Ties go to the lowest target, then the lowest shift,
    whatever order the rows and tiles arrive in.
    """
    nv, nb = val.shape
    for v in range(nv):
        i = image[v]
        s = shift[v]
        for j in range(nb):
            x = float(val[v, j])
            t = b0 + j
            if x > best_score[i] or (x == best_score[i] and (
                    t < best_target[i] or (t == best_target[i] and s < best_shift[i]))):
                best_score[i] = x
                best_target[i] = t
                best_shift[i] = s
                best_index[i] = idx[v, j]


@jit
def _shift_pair_best(val, idx, b0, image, shift, pair_score, pair_index,
                     pair_shift):  # pragma: no cover - compiled
    """Per pair (image, target): best (score, shift, γ-index) over the shifts; ties go to
    the lowest shift.  pair_score, pair_index, pair_shift: (n_images, N_B) of one task."""
    nv, nb = val.shape
    for v in range(nv):
        i = image[v]
        s = shift[v]
        for j in range(nb):
            x = float(val[v, j])
            t = b0 + j
            if x > pair_score[i, t] or (x == pair_score[i, t] and s < pair_shift[i, t]):
                pair_score[i, t] = x
                pair_shift[i, t] = s
                pair_index[i, t] = idx[v, j]


@jit
def _phase_rows(polar_t, phases_t, scale, i0, i1, out):  # pragma: no cover - compiled
    """out[r, (i − i0)·S + s, j] = scale[r] · polar_t[r, i, j] · phases_t[r, s, j]: the polar
    samples of image i moved by −δ_s, rows image-major, for images i0 … i1−1."""
    R, S, Q = phases_t.shape
    for r in range(R):
        c = scale[r]
        for i in range(i0, i1):
            v0 = (i - i0) * S
            for s in range(S):
                for j in range(Q):
                    out[r, v0 + s, j] = c * polar_t[r, i, j] * phases_t[r, s, j]


@jit
def _split_rows(F, perm, inv_q, v0, out):  # pragma: no cover - compiled
    """Side A of rows v0 …: out[k, v0 + v, h] = Re F[h, v, perm[k]]/Q, out[k, v0 + v, H + h] =
    Im F[h, v, perm[k]]/Q (F (H, m, Q) the FFT along ψ of the principal rings)."""
    H, m, _ = F.shape
    for k in range(perm.shape[0]):
        q = perm[k]
        for v in range(m):
            for h in range(H):
                z = F[h, v, q]
                out[k, v0 + v, h] = z.real * inv_q
                out[k, v0 + v, H + h] = z.imag * inv_q
