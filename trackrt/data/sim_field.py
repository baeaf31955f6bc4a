"""Solenoid magnetic field models for the simulator: Bz as a function of z (tesla, mm).

Only the axial component is modelled; the radial component of a real solenoid's fringe field (which
bends tracks in z) is neglected, so the longitudinal momentum of a particle is conserved.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

FieldKind = Literal["uniform", "solenoid"]

# |z| (mm) -> Bz (T): 2 T in the barrel, ~1.9 T at |z| 0.5-1 m, ~1.7 T at 1-1.5 m (DESIGN §3).
SOLENOID_Z_MM: tuple[float, ...] = (0.0, 450.0, 600.0, 800.0, 1000.0, 1200.0, 1500.0, 3000.0)
SOLENOID_BZ_T: tuple[float, ...] = (2.0, 2.0, 1.95, 1.9, 1.85, 1.75, 1.68, 1.5)


@dataclass(frozen=True)
class AxialField:
    """Bz(|z|) interpolated linearly between knots; a single knot value gives a uniform field."""

    z_knots: tuple[float, ...]
    bz_knots: tuple[float, ...]

    def bz(self, z: np.ndarray) -> np.ndarray:
        """Axial field in tesla at positions z (mm)."""
        return np.interp(np.abs(np.asarray(z, dtype=np.float64)), self.z_knots, self.bz_knots)


def make_field(kind: FieldKind, bz_tesla: float = 2.0) -> AxialField:
    """A uniform field of `bz_tesla`, or the z-dependent solenoid map scaled to `bz_tesla` at z = 0."""
    if kind == "uniform":
        return AxialField((0.0,), (float(bz_tesla),))
    if kind == "solenoid":
        scale = bz_tesla / SOLENOID_BZ_T[0]
        return AxialField(SOLENOID_Z_MM, tuple(b * scale for b in SOLENOID_BZ_T))
    raise ValueError(f"unknown field kind {kind!r}; expected 'uniform' or 'solenoid'")
