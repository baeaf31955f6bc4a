"""Helix maths in an axial field, vectorised over particles (mm, GeV, tesla).

A helix is parametrised by its transverse path length s from the current point: the transverse
direction turns at rate κ = −q·c·Bz/pT (c = 0.000299792458 GeV/(T·mm)) and z advances by s·pz/pT.
"""

from __future__ import annotations

import numpy as np

C_GEV_PER_T_MM = 0.000299792458


def curvature(charge: np.ndarray, pt: np.ndarray, bz: np.ndarray) -> np.ndarray:
    """Signed transverse curvature κ (1/mm); |κ| = 1/R with R[mm] = pT / (c · B)."""
    return -np.asarray(charge) * C_GEV_PER_T_MM * np.asarray(bz) / np.asarray(pt)


def helix_position(
    position: np.ndarray, momentum: np.ndarray, kappa: np.ndarray, s: np.ndarray
) -> np.ndarray:
    """Positions [..., 3] after transverse path length s from `position` with `momentum` [..., 3]."""
    pt = np.hypot(momentum[..., 0], momentum[..., 1])
    phi0 = np.arctan2(momentum[..., 1], momentum[..., 0])
    phi = phi0 + kappa * s
    x = position[..., 0] + (np.sin(phi) - np.sin(phi0)) / kappa
    y = position[..., 1] - (np.cos(phi) - np.cos(phi0)) / kappa
    z = position[..., 2] + s * momentum[..., 2] / pt
    return np.stack([x, y, z], axis=-1)


def helix_momentum(momentum: np.ndarray, kappa: np.ndarray, s: np.ndarray) -> np.ndarray:
    """Momenta [..., 3] after transverse path length s (the transverse direction turns by κ·s)."""
    pt = np.hypot(momentum[..., 0], momentum[..., 1])
    phi = np.arctan2(momentum[..., 1], momentum[..., 0]) + kappa * s
    return np.stack(
        [pt * np.cos(phi), pt * np.sin(phi), np.broadcast_to(momentum[..., 2], phi.shape)], axis=-1
    )


def cylinder_crossing(
    position: np.ndarray, momentum: np.ndarray, kappa: np.ndarray, radius: float, min_step: float
) -> np.ndarray:
    """Smallest s > min_step where the helix meets the cylinder r = radius; inf where it never does."""
    phi0 = np.arctan2(momentum[:, 1], momentum[:, 0])
    xc = position[:, 0] - np.sin(phi0) / kappa
    yc = position[:, 1] + np.cos(phi0) / kappa
    d = np.hypot(xc, yc)
    rho = 1.0 / kappa
    # |c + (sin φ, −cos φ)/κ|² = R²  ⇔  sin(φ − β) = (R² − d² − 1/κ²) κ / (2d), β = atan2(yc, xc);
    # written with (d − |ρ|)² to avoid cancellation for straight tracks.
    with np.errstate(divide="ignore", invalid="ignore"):
        a = (radius**2 - (d - np.abs(rho)) ** 2) * kappa / (2.0 * d) - np.sign(kappa)
    reachable = np.abs(a) <= 1.0
    beta = np.arctan2(yc, xc)
    base = np.arcsin(np.clip(a, -1.0, 1.0))
    best = np.full(position.shape[0], np.inf)
    sign = np.sign(kappa)
    for phi in (beta + base, beta + np.pi - base):
        turn = np.mod((phi - phi0) * sign, 2.0 * np.pi)
        s = turn / np.abs(kappa)
        s = np.where(s <= min_step, s + 2.0 * np.pi / np.abs(kappa), s)
        best = np.where(reachable, np.minimum(best, s), best)
    return best


def z_plane_crossing(position: np.ndarray, momentum: np.ndarray, z: float, min_step: float) -> np.ndarray:
    """Transverse path length s > min_step to the plane at `z`; inf if the particle moves away from it."""
    pt = np.hypot(momentum[:, 0], momentum[:, 1])
    with np.errstate(divide="ignore", invalid="ignore"):
        s = (z - position[:, 2]) * pt / momentum[:, 2]
    return np.where(np.isfinite(s) & (s > min_step), s, np.inf)


def plane_crossing(
    position: np.ndarray,
    momentum: np.ndarray,
    kappa: np.ndarray,
    point: np.ndarray,
    normal: np.ndarray,
    iterations: int = 3,
) -> np.ndarray:
    """s (either sign) nearest 0 where the helix meets the plane through `point` with `normal` (Newton)."""
    pt = np.hypot(momentum[..., 0], momentum[..., 1])
    phi0 = np.arctan2(momentum[..., 1], momentum[..., 0])
    slope = momentum[..., 2] / pt
    s = np.zeros(phi0.shape)
    for _ in range(iterations + 1):
        phi = phi0 + kappa * s
        offset = helix_position(position, momentum, kappa, s) - point
        distance = np.einsum("...i,...i->...", offset, normal)
        tangent = normal[..., 0] * np.cos(phi) + normal[..., 1] * np.sin(phi) + normal[..., 2] * slope
        with np.errstate(divide="ignore", invalid="ignore"):
            s = s - distance / tangent
    return s
