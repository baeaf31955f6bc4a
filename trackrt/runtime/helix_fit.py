"""Track-parameter estimate: vectorised helix fit (Taubin circle in x-y, straight line in s-z).

Conventions (perigee with respect to the beam line x = y = 0, uniform field B along +z):
- the point of closest approach is (x0, y0) = d0 · (-sin φ, cos φ), so d0 > 0 when the beam line lies
  to the right of the direction of flight; z0 is the track's z there;
- φ is the direction of flight at that point, η = asinh(dz/ds) with s the transverse arc length;
- pT [GeV] = 0.3 · |B| [T] · R [m]; a positive particle turns clockwise seen from +z when B > 0.
Hits may come in any order: the sense of rotation (hence the charge) follows from the side of the
point of closest approach the hits lie on, which holds for tracks that turn by less than π after it
(pT ≳ 0.05 GeV in the pixel detector).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

DEFAULT_FIELD_T = 2.0
PARAMETER_COLUMNS: tuple[str, ...] = (
    "track_id",
    "num_hits",
    "pt",
    "eta",
    "phi",
    "d0",
    "z0",
    "charge",
    "radius",
    "rms_xy",
    "rms_z",
)
_NEWTON_ITERATIONS = 20


def _group_mean(values: np.ndarray, groups: np.ndarray, counts: np.ndarray) -> np.ndarray:
    return np.bincount(groups, weights=values, minlength=len(counts)) / counts


def _taubin_circles(
    x: np.ndarray, y: np.ndarray, groups: np.ndarray, counts: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Centre (xc, yc) and radius per group, Taubin's algebraic fit solved by Newton's method."""
    mx = _group_mean(x, groups, counts)
    my = _group_mean(y, groups, counts)
    xi = x - mx[groups]
    yi = y - my[groups]
    zi = xi * xi + yi * yi
    mxx = _group_mean(xi * xi, groups, counts)
    myy = _group_mean(yi * yi, groups, counts)
    mxy = _group_mean(xi * yi, groups, counts)
    mxz = _group_mean(xi * zi, groups, counts)
    myz = _group_mean(yi * zi, groups, counts)
    mzz = _group_mean(zi * zi, groups, counts)
    mz = mxx + myy
    cov_xy = mxx * myy - mxy * mxy
    var_z = mzz - mz * mz
    a3 = 4.0 * mz
    a2 = -3.0 * mz * mz - mzz
    a1 = var_z * mz + 4.0 * cov_xy * mz - mxz * mxz - myz * myz
    a0 = mxz * (mxz * myy - myz * mxy) + myz * (myz * mxx - mxz * mxy) - var_z * cov_xy
    root = np.zeros_like(mz)
    value = a0.copy()
    active = np.ones_like(mz, dtype=bool)
    for _ in range(_NEWTON_ITERATIONS):
        slope = a1 + root * (2.0 * a2 + 3.0 * a3 * root)
        with np.errstate(divide="ignore", invalid="ignore"):
            candidate = root - value / slope
        new_value = a0 + candidate * (a1 + candidate * (a2 + candidate * a3))
        improves = active & np.isfinite(candidate) & (np.abs(new_value) < np.abs(value))
        active = improves & (candidate != root)
        root = np.where(improves, candidate, root)
        value = np.where(improves, new_value, value)
        if not active.any():
            break
    det = root * root - root * mz + cov_xy
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = (mxz * (myy - root) - myz * mxy) / det / 2.0
        yc = (myz * (mxx - root) - mxz * mxy) / det / 2.0
    radius = np.sqrt(xc * xc + yc * yc + mz)
    return xc + mx, yc + my, radius


def _wrap_angle(angle: np.ndarray) -> np.ndarray:
    return (angle + np.pi) % (2.0 * np.pi) - np.pi


def fit_helices(
    x: np.ndarray,
    y: np.ndarray,
    z: np.ndarray,
    track_id: np.ndarray,
    field_t: float = DEFAULT_FIELD_T,
    min_hits: int = 3,
) -> pd.DataFrame:
    """Fit a helix to the hits of every track (hits with track_id < 0 are ignored); mm, GeV.

    Returns one row per track id (ascending) with PARAMETER_COLUMNS; tracks with fewer than
    `min_hits` hits, or degenerate ones, get NaN parameters and charge 0.
    """
    if field_t == 0.0:
        raise ValueError("the helix fit needs a non-zero magnetic field")
    min_hits = max(int(min_hits), 3)
    track_id = np.asarray(track_id).astype(np.int64, copy=False)
    assigned = track_id >= 0
    ids, groups = np.unique(track_id[assigned], return_inverse=True)
    x = np.asarray(x, dtype=np.float64)[assigned]
    y = np.asarray(y, dtype=np.float64)[assigned]
    z = np.asarray(z, dtype=np.float64)[assigned]
    num_tracks = len(ids)
    counts = np.bincount(groups, minlength=num_tracks).astype(np.float64)
    result = {name: np.full(num_tracks, np.nan) for name in PARAMETER_COLUMNS}
    result["track_id"] = ids
    result["num_hits"] = counts.astype(np.int64)
    result["charge"] = np.zeros(num_tracks, dtype=np.int64)
    if num_tracks == 0:
        return pd.DataFrame(result, columns=list(PARAMETER_COLUMNS))

    with np.errstate(divide="ignore", invalid="ignore"):
        fitted = _fit_groups(x, y, z, groups, counts, field_t)
    good = (counts >= min_hits) & np.isfinite(fitted["radius"]) & (fitted["charge"] != 0)
    good &= np.isfinite(fitted["eta"])
    for name, values in fitted.items():
        if name == "charge":
            result[name] = np.where(good, values, 0).astype(np.int64)
        else:
            result[name] = np.where(good, values, np.nan)
    return pd.DataFrame(result, columns=list(PARAMETER_COLUMNS))


def _fit_groups(
    x: np.ndarray, y: np.ndarray, z: np.ndarray, groups: np.ndarray, counts: np.ndarray, field_t: float
) -> dict[str, np.ndarray]:
    """Unchecked helix parameters per group (NaN or inf where a group is degenerate)."""
    num_tracks = len(counts)
    xc, yc, radius = _taubin_circles(x, y, groups, counts)
    centre_distance = np.hypot(xc, yc)
    ux, uy = xc / centre_distance, yc / centre_distance
    # Angle of each hit around the centre, counted counter-clockwise from the point of closest
    # approach; a track's hits all lie on the side it flies to, which gives its sense of rotation.
    pca_angle = np.arctan2(-uy, -ux)
    hit_angle = np.arctan2(y - yc[groups], x - xc[groups])
    swept_ccw = _wrap_angle(hit_angle - pca_angle[groups])
    turn = np.sign(_group_mean(swept_ccw, groups, counts))
    phi = np.arctan2(-turn * ux, turn * uy)
    d0 = turn * (centre_distance - radius)
    pt = 0.3 * abs(field_t) * radius / 1000.0
    charge = -turn * np.sign(field_t)

    # Transverse arc length of each hit from the point of closest approach, then z = z0 + s·cot θ.
    swept = turn[groups] * swept_ccw
    s = radius[groups] * swept
    s_mean = _group_mean(s, groups, counts)
    z_mean = _group_mean(z, groups, counts)
    ds = s - s_mean[groups]
    dz = z - z_mean[groups]
    sxx = np.bincount(groups, weights=ds * ds, minlength=num_tracks)
    sxz = np.bincount(groups, weights=ds * dz, minlength=num_tracks)
    cot_theta = sxz / sxx
    z0 = z_mean - cot_theta * s_mean
    residual_xy = np.hypot(x - xc[groups], y - yc[groups]) - radius[groups]
    residual_z = z - (z0[groups] + cot_theta[groups] * s)

    return {
        "pt": pt,
        "eta": np.arcsinh(cot_theta),
        "phi": phi,
        "d0": d0,
        "z0": z0,
        "charge": charge,
        "radius": radius,
        "rms_xy": np.sqrt(_group_mean(residual_xy**2, groups, counts)),
        "rms_z": np.sqrt(_group_mean(residual_z**2, groups, counts)),
    }
