"""Numba kernels of FPFH: normals, SPFH and FPFH as Open3D computes them (0.20, MIT licence).

A port of the arithmetic of Open3D's ``PointCloud::EstimateNormals`` (per-point covariance of the
hybrid-search neighbours, its fast closed-form 3 x 3 eigen solver, whose sign the FPFH angles
inherit: Open3D does not orient normals here) and of ``ComputeFPFHFeature`` (pair features,
11 bins per angle, weights 1/d^2 over the neighbours' SPFH, each block renormalised to 100, plus
the point's own SPFH). Neighbour lists come from ``point_features._hybrid_search``: (N, k) indices,
nearest first, the point itself first, -1 past a point's count.
"""
from __future__ import annotations

import math

import numpy as np
from numba import njit

_TWO_THIRDS_PI = 2.09439510239319549


@njit(cache=True)
def _cross(a, b):
    return np.array([a[1] * b[2] - a[2] * b[1], a[2] * b[0] - a[0] * b[2], a[0] * b[1] - a[1] * b[0]])


@njit(cache=True)
def _dot(a, b):
    return a[0] * b[0] + a[1] * b[1] + a[2] * b[2]


@njit(cache=True)
def _eigenvector0(A, eval0):
    r0 = np.array([A[0, 0] - eval0, A[0, 1], A[0, 2]])
    r1 = np.array([A[0, 1], A[1, 1] - eval0, A[1, 2]])
    r2 = np.array([A[0, 2], A[1, 2], A[2, 2] - eval0])
    c01, c02, c12 = _cross(r0, r1), _cross(r0, r2), _cross(r1, r2)
    d0, d1, d2 = _dot(c01, c01), _dot(c02, c02), _dot(c12, c12)
    dmax, imax = d0, 0
    if d1 > dmax:
        dmax, imax = d1, 1
    if d2 > dmax:
        imax = 2
    if imax == 0:
        return c01 / math.sqrt(d0)
    if imax == 1:
        return c02 / math.sqrt(d1)
    return c12 / math.sqrt(d2)


@njit(cache=True)
def _eigenvector1(A, evec0, eval1):
    if abs(evec0[0]) > abs(evec0[1]):
        inv = 1.0 / math.sqrt(evec0[0] * evec0[0] + evec0[2] * evec0[2])
        U = np.array([-evec0[2] * inv, 0.0, evec0[0] * inv])
    else:
        inv = 1.0 / math.sqrt(evec0[1] * evec0[1] + evec0[2] * evec0[2])
        U = np.array([0.0, evec0[2] * inv, -evec0[1] * inv])
    V = _cross(evec0, U)
    AU = np.array([A[0, 0] * U[0] + A[0, 1] * U[1] + A[0, 2] * U[2],
                   A[0, 1] * U[0] + A[1, 1] * U[1] + A[1, 2] * U[2],
                   A[0, 2] * U[0] + A[1, 2] * U[1] + A[2, 2] * U[2]])
    AV = np.array([A[0, 0] * V[0] + A[0, 1] * V[1] + A[0, 2] * V[2],
                   A[0, 1] * V[0] + A[1, 1] * V[1] + A[1, 2] * V[2],
                   A[0, 2] * V[0] + A[1, 2] * V[1] + A[2, 2] * V[2]])
    m00 = U[0] * AU[0] + U[1] * AU[1] + U[2] * AU[2] - eval1
    m01 = U[0] * AV[0] + U[1] * AV[1] + U[2] * AV[2]
    m11 = V[0] * AV[0] + V[1] * AV[1] + V[2] * AV[2] - eval1
    a00, a01, a11 = abs(m00), abs(m01), abs(m11)
    if a00 >= a11:
        if not max(a00, a01) > 0:  # NaN too, as Open3D
            return U
        m00, m01 = _unit_pair(m00, m01)
        return m01 * U - m00 * V
    if not max(a11, a01) > 0:
        return U
    m11, m01 = _unit_pair(m11, m01)
    return m11 * U - m01 * V


@njit(cache=True)
def _unit_pair(diag, off):
    """(diag, off) scaled to unit length by ``_unit``, the larger in magnitude taken as ``big``."""
    if abs(diag) >= abs(off):
        return _unit(diag, off)
    off, diag = _unit(off, diag)
    return diag, off


@njit(cache=True)
def _unit(big, small):
    """(big, small) scaled to unit length, dividing by the larger (|big| >= |small|) first: Eberly's
    robust normalisation, in Open3D's order of operations."""
    small /= big
    big = 1.0 / math.sqrt(1.0 + small * small)
    return big, small * big


@njit(cache=True)
def _smallest_eigenvector(cov):
    """Open3D's FastEigen3x3 (Eberly's robust symmetric 3 x 3 solver), its branches and signs."""
    A = cov.copy()
    max_coeff = A.max()
    if max_coeff == 0:
        return np.zeros(3)
    A /= max_coeff
    norm = A[0, 1] * A[0, 1] + A[0, 2] * A[0, 2] + A[1, 2] * A[1, 2]
    if norm > 0:
        q = (A[0, 0] + A[1, 1] + A[2, 2]) / 3
        b00, b11, b22 = A[0, 0] - q, A[1, 1] - q, A[2, 2] - q
        p = math.sqrt((b00 * b00 + b11 * b11 + b22 * b22 + norm * 2) / 6)
        c00 = b11 * b22 - A[1, 2] * A[1, 2]
        c01 = A[0, 1] * b22 - A[1, 2] * A[0, 2]
        c02 = A[0, 1] * A[1, 2] - b11 * A[0, 2]
        det = (b00 * c00 - A[0, 1] * c01 + A[0, 2] * c02) / (p * p * p)
        half_det = min(max(det * 0.5, -1.0), 1.0)
        angle = math.acos(half_det) / 3.0
        beta2 = math.cos(angle) * 2
        beta0 = math.cos(angle + _TWO_THIRDS_PI) * 2
        beta1 = -(beta0 + beta2)
        e0, e1, e2 = q + p * beta0, q + p * beta1, q + p * beta2
        if half_det >= 0:
            v2 = _eigenvector0(A, e2)
            if e2 < e0 and e2 < e1:
                return v2
            v1 = _eigenvector1(A, v2, e1)
            if e1 < e0 and e1 < e2:
                return v1
            return _cross(v1, v2)
        v0 = _eigenvector0(A, e0)
        if e0 < e1 and e0 < e2:
            return v0
        v1 = _eigenvector1(A, v0, e1)
        if e1 < e0 and e1 < e2:
            return v1
        return _cross(v0, v1)
    if cov[0, 0] < cov[1, 1] and cov[0, 0] < cov[2, 2]:
        return np.array([1.0, 0.0, 0.0])
    if cov[1, 1] < cov[0, 0] and cov[1, 1] < cov[2, 2]:
        return np.array([0.0, 1.0, 0.0])
    return np.array([0.0, 0.0, 1.0])


@njit(cache=True)
def normals(pts, idx):
    """(N, 3) unit normals: covariance of each point's neighbours (identity below 3), then the
    eigenvector of the smallest eigenvalue; (0, 0, 1) where it comes out zero."""
    n, k = idx.shape
    out = np.empty((n, 3))
    cov = np.empty((3, 3))
    for i in range(n):
        m = 0
        s = np.zeros(9)
        for j in range(k):
            t = idx[i, j]
            if t < 0:
                break
            x, y, z = pts[t, 0], pts[t, 1], pts[t, 2]
            s[0] += x
            s[1] += y
            s[2] += z
            s[3] += x * x
            s[4] += x * y
            s[5] += x * z
            s[6] += y * y
            s[7] += y * z
            s[8] += z * z
            m += 1
        if m >= 3:
            s /= m
            cov[0, 0] = s[3] - s[0] * s[0]
            cov[1, 1] = s[6] - s[1] * s[1]
            cov[2, 2] = s[8] - s[2] * s[2]
            cov[0, 1] = cov[1, 0] = s[4] - s[0] * s[1]
            cov[0, 2] = cov[2, 0] = s[5] - s[0] * s[2]
            cov[1, 2] = cov[2, 1] = s[7] - s[1] * s[2]
        else:
            cov[:] = 0.0
            cov[0, 0] = cov[1, 1] = cov[2, 2] = 1.0
        v = _smallest_eigenvector(cov)
        if v[0] == 0.0 and v[1] == 0.0 and v[2] == 0.0:
            v = np.array([0.0, 0.0, 1.0])
        out[i] = v
    return out


@njit(cache=True)
def _pair_features(pts, nrm, i, t):
    """Open3D's ComputePairFeatures for points i, t: (alpha, phi, theta) angles and whether the
    pair has a frame (a zero vector counts as (0, 0, 0)); scalar arithmetic, no allocations."""
    dx, dy, dz = pts[t, 0] - pts[i, 0], pts[t, 1] - pts[i, 1], pts[t, 2] - pts[i, 2]
    dist = math.sqrt(dx * dx + dy * dy + dz * dz)
    if dist == 0.0:
        return 0.0, 0.0, 0.0
    s, u = i, t  # source and target normals
    a1 = (nrm[i, 0] * dx + nrm[i, 1] * dy + nrm[i, 2] * dz) / dist
    a2 = (nrm[t, 0] * dx + nrm[t, 1] * dy + nrm[t, 2] * dz) / dist
    if math.acos(abs(a1)) > math.acos(abs(a2)):
        s, u = t, i
        dx, dy, dz = -dx, -dy, -dz
        theta = -a2
    else:
        theta = a1
    n1x, n1y, n1z = nrm[s, 0], nrm[s, 1], nrm[s, 2]
    n2x, n2y, n2z = nrm[u, 0], nrm[u, 1], nrm[u, 2]
    vx, vy, vz = dy * n1z - dz * n1y, dz * n1x - dx * n1z, dx * n1y - dy * n1x  # d x n1
    v_norm = math.sqrt(vx * vx + vy * vy + vz * vz)
    if v_norm == 0.0:
        return 0.0, 0.0, 0.0
    vx, vy, vz = vx / v_norm, vy / v_norm, vz / v_norm
    wx, wy, wz = n1y * vz - n1z * vy, n1z * vx - n1x * vz, n1x * vy - n1y * vx  # n1 x v
    alpha = math.atan2(wx * n2x + wy * n2y + wz * n2z, n1x * n2x + n1y * n2y + n1z * n2z)
    return alpha, vx * n2x + vy * n2y + vz * n2z, theta


@njit(cache=True)
def _bin(value):
    b = int(math.floor(value))
    return 0 if b < 0 else (10 if b >= 11 else b)


@njit(cache=True)
def spfh(pts, nrm, idx):
    """(N, 33) simplified point feature histograms: each neighbour (the point itself left out)
    adds 100 / (count - 1) to one bin of each angle; a zero pair feature lands in the middle bins,
    as in Open3D."""
    n, k = idx.shape
    out = np.zeros((n, 33))
    for i in range(n):
        m = 0
        while m < k and idx[i, m] >= 0:
            m += 1
        if m <= 1:
            continue
        incr = 100.0 / (m - 1)
        for j in range(1, m):
            f0, f1, f2 = _pair_features(pts, nrm, i, idx[i, j])
            out[i, _bin(11 * (f0 + math.pi) / (2.0 * math.pi))] += incr
            out[i, 11 + _bin(11 * (f1 + 1.0) * 0.5)] += incr
            out[i, 22 + _bin(11 * (f2 + 1.0) * 0.5)] += incr
    return out


@njit(cache=True)
def fpfh(pts, sp, idx):
    """(N, 33) FPFH: the neighbours' SPFH weighted by 1 / d^2, each 11-bin block scaled to sum to
    100, plus the point's own SPFH (Open3D's form; PCL's differs)."""
    n, k = idx.shape
    out = np.zeros((n, 33))
    for i in range(n):
        m = 0
        while m < k and idx[i, m] >= 0:
            m += 1
        if m <= 1:
            continue
        s = np.zeros(3)
        for j in range(1, m):
            t = idx[i, j]
            dx, dy, dz = pts[t, 0] - pts[i, 0], pts[t, 1] - pts[i, 1], pts[t, 2] - pts[i, 2]
            dist = dx * dx + dy * dy + dz * dz  # squared, summed x, y, z as the KD-tree does
            if dist == 0.0:
                continue
            for c in range(33):
                val = sp[t, c] / dist
                s[c // 11] += val
                out[i, c] += val
        for b in range(3):
            if s[b] != 0.0:
                s[b] = 100.0 / s[b]
        for c in range(33):
            out[i, c] = out[i, c] * s[c // 11] + sp[i, c]
    return out
