"""Propagate charged particles through the pixel layers: helices, module crossings, multiple scattering.

All particles move together from one layer surface to the next (barrel cylinders, disk planes and
the beam pipe). At each layer crossing the candidate modules near the helix come from the layer's
spatial index; the exact helix–module-plane intersection inside the module's bounds is a hit, so
overlapping modules give two hits on one layer. Highland multiple scattering is applied at the beam
pipe and at each layer crossing; energy loss is neglected (momentum magnitude is conserved).
Particles are followed until they leave the pixel volume or have turned `max_turns` times.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from trackrt.data.geometry import DetectorGeometry
from trackrt.data.geometry_index import LayerIndex
from trackrt.data.sim_field import AxialField
from trackrt.data.sim_helix import (
    curvature,
    cylinder_crossing,
    helix_momentum,
    helix_position,
    plane_crossing,
    z_plane_crossing,
)

_MIN_STEP_MM = 1e-3
_SURFACE_MARGIN_MM = 5.0
_EXIT_MARGIN_MM = 25.0
_MAX_ENVELOPE_STEP_MM = 30.0
_MIN_COS_INCIDENCE = 0.05


@dataclass(frozen=True)
class MaterialSpec:
    """Material seen by a particle (fractions of a radiation length at normal incidence)."""

    beam_pipe_radius: float = 19.0
    beam_pipe_x0: float = 0.002
    layer_x0: float = 0.017
    multiple_scattering: bool = True


@dataclass(frozen=True)
class ModuleCrossings:
    """True crossings of module mid-planes: particle row, module index, position and momentum."""

    particle: np.ndarray  # int64 [H], row in the particles table
    module: np.ndarray  # int64 [H], module index in the geometry
    position: np.ndarray  # float64 [H, 3]
    momentum: np.ndarray  # float64 [H, 3]


def highland_angle(
    momentum: np.ndarray, mass: np.ndarray, charge: np.ndarray, x_over_x0: np.ndarray
) -> np.ndarray:
    """RMS plane scattering angle (rad) from the Highland formula (PDG), p and mass in GeV."""
    p = np.linalg.norm(momentum, axis=-1)
    beta = p / np.hypot(p, mass)
    z2 = np.asarray(charge, dtype=np.float64) ** 2
    return 0.0136 / (beta * p) * np.sqrt(z2 * x_over_x0) * (1.0 + 0.038 * np.log(x_over_x0 * z2 / beta**2))


def scatter(rng: np.random.Generator, momentum: np.ndarray, theta0: np.ndarray) -> np.ndarray:
    """Momenta turned by Gaussian angles of RMS `theta0` in two planes orthogonal to the direction."""
    p = np.linalg.norm(momentum, axis=1, keepdims=True)
    direction = momentum / p
    axis = np.where(np.abs(direction[:, 2:3]) < 0.99, np.array([0.0, 0.0, 1.0]), np.array([1.0, 0.0, 0.0]))
    e1 = np.cross(direction, axis)
    e1 /= np.linalg.norm(e1, axis=1, keepdims=True)
    e2 = np.cross(direction, e1)
    angles = rng.normal(size=(momentum.shape[0], 2)) * theta0[:, None]
    turned = direction + np.tan(angles[:, :1]) * e1 + np.tan(angles[:, 1:]) * e2
    return p * turned / np.linalg.norm(turned, axis=1, keepdims=True)


class PixelTransport:
    """Moves particles through the layers of one detector in one field (reusable across events)."""

    def __init__(
        self, geometry: DetectorGeometry, field: AxialField, material: MaterialSpec, max_turns: float = 1.0
    ):
        self.geometry = geometry
        self.field = field
        self.material = material
        self.max_turns = max_turns
        self.layers = LayerIndex.build_all(geometry)
        barrels = [la for la in self.layers if la.kind == "barrel"]
        disks = [la for la in self.layers if la.kind == "disk"]
        self.exit_radius = (
            max([la.envelope[1] for la in barrels] + [la.extent[1] for la in disks]) + _EXIT_MARGIN_MM
        )
        self.exit_z = max(
            [abs(z) for la in disks for z in la.envelope] + [abs(la.extent[1]) for la in barrels]
        )
        self.exit_z += _EXIT_MARGIN_MM

    def _surface_steps(self, position: np.ndarray, momentum: np.ndarray, kappa: np.ndarray) -> np.ndarray:
        """s to each surface [n, 1 + layers] (column 0 is the beam pipe); inf where not crossed in bounds."""
        steps = np.full((position.shape[0], 1 + len(self.layers)), np.inf)
        steps[:, 0] = cylinder_crossing(
            position, momentum, kappa, self.material.beam_pipe_radius, _MIN_STEP_MM
        )
        pt = np.hypot(momentum[:, 0], momentum[:, 1])
        slope = momentum[:, 2] / pt
        for column, layer in enumerate(self.layers, start=1):
            if layer.kind == "barrel":
                s = cylinder_crossing(position, momentum, kappa, layer.reference, _MIN_STEP_MM)
                along = position[:, 2] + np.where(np.isfinite(s), s, 0.0) * slope
            else:
                s = z_plane_crossing(position, momentum, layer.reference, _MIN_STEP_MM)
                along = np.full(s.shape, np.inf)
                reach = np.flatnonzero(np.isfinite(s))
                end = helix_position(position[reach], momentum[reach], kappa[reach], s[reach])
                along[reach] = np.hypot(end[:, 0], end[:, 1])
            inside = (along >= layer.extent[0] - _SURFACE_MARGIN_MM) & (
                along <= layer.extent[1] + _SURFACE_MARGIN_MM
            )
            steps[:, column] = np.where(inside, s, np.inf)
        exit_step = np.minimum(
            cylinder_crossing(position, momentum, kappa, self.exit_radius, _MIN_STEP_MM),
            np.minimum(
                z_plane_crossing(position, momentum, self.exit_z, _MIN_STEP_MM),
                z_plane_crossing(position, momentum, -self.exit_z, _MIN_STEP_MM),
            ),
        )
        steps[steps > exit_step[:, None]] = np.inf
        return steps

    def _next_surface(self, position, momentum, charge) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(step, surface column, κ) to the nearest surface, with the field taken at the step's middle."""
        pt = np.hypot(momentum[:, 0], momentum[:, 1])
        kappa = curvature(charge, pt, self.field.bz(position[:, 2]))
        steps = self._surface_steps(position, momentum, kappa)
        surface = np.argmin(steps, axis=1)
        step = steps[np.arange(surface.size), surface]
        if len(self.field.z_knots) > 1:
            z_mid = position[:, 2] + 0.5 * np.where(np.isfinite(step), step, 0.0) * momentum[:, 2] / pt
            kappa = curvature(charge, pt, self.field.bz(z_mid))
            steps = self._surface_steps(position, momentum, kappa)
            surface = np.argmin(steps, axis=1)
            step = steps[np.arange(surface.size), surface]
        return step, surface, kappa

    def _module_hits(
        self, layer: LayerIndex, position: np.ndarray, momentum: np.ndarray, kappa: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """(row, module, position, momentum) of every module plane crossed near a layer crossing."""
        geometry = self.geometry
        normal = _surface_normal(layer, position)
        pt = np.hypot(momentum[:, 0], momentum[:, 1])
        tangent = np.column_stack([momentum[:, 0] / pt, momentum[:, 1] / pt, momentum[:, 2] / pt])
        half_depth = 0.5 * (layer.envelope[1] - layer.envelope[0]) + 0.1
        with np.errstate(divide="ignore"):
            reach = np.minimum(
                half_depth / np.abs(np.einsum("ni,ni->n", tangent, normal)), _MAX_ENVELOPE_STEP_MM
            )
        probes = [helix_position(position, momentum, kappa, f * reach) for f in (-1.0, 0.0, 1.0)]
        candidates = np.concatenate([layer.candidates(p) for p in probes], axis=1)
        rows, slots = np.nonzero(candidates >= 0)
        pairs = np.unique(rows * len(geometry) + candidates[rows, slots])
        rows, modules = pairs // len(geometry), pairs % len(geometry)
        s = plane_crossing(
            position[rows], momentum[rows], kappa[rows], geometry.center[modules], geometry.normal[modules]
        )
        ok = np.isfinite(s) & (np.abs(s) <= reach[rows] + _SURFACE_MARGIN_MM)
        s = np.where(ok, s, 0.0)
        points = helix_position(position[rows], momentum[rows], kappa[rows], s)
        local = geometry.global_to_local(points, modules)
        ok &= geometry.contains_local(local, modules, tolerance=0.0, w_tolerance=1e-3)
        hit_momentum = helix_momentum(momentum[rows[ok]], kappa[rows[ok]], s[ok])
        return rows[ok], modules[ok], points[ok], hit_momentum

    def _material(self, surface: np.ndarray, position: np.ndarray, momentum: np.ndarray) -> np.ndarray:
        """x/X0 traversed at each crossing (normal-incidence thickness over |cos incidence|)."""
        radial = np.column_stack([position[:, 0], position[:, 1], np.zeros(len(position))])
        radial /= np.linalg.norm(radial, axis=1, keepdims=True)
        is_disk = np.array([False] + [la.kind == "disk" for la in self.layers])[surface]
        normal = np.where(is_disk[:, None], np.array([0.0, 0.0, 1.0]), radial)
        direction = momentum / np.linalg.norm(momentum, axis=1, keepdims=True)
        cos_incidence = np.maximum(np.abs(np.einsum("ni,ni->n", direction, normal)), _MIN_COS_INCIDENCE)
        thickness = np.where(surface == 0, self.material.beam_pipe_x0, self.material.layer_x0)
        return thickness / cos_incidence

    def run(
        self,
        rng: np.random.Generator,
        vertex: np.ndarray,
        momentum: np.ndarray,
        charge: np.ndarray,
        mass: np.ndarray,
        max_crossings: int = 64,
    ) -> ModuleCrossings:
        """Transport particles from their vertices; returns every module crossing, ordered by particle."""
        position = np.array(vertex, dtype=np.float64)
        momentum = np.array(momentum, dtype=np.float64)
        charge = np.asarray(charge)
        turned = np.zeros(len(position))
        active = np.flatnonzero(charge != 0)
        found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        for _ in range(max_crossings):
            if active.size == 0:
                break
            step, surface, kappa = self._next_surface(position[active], momentum[active], charge[active])
            turned[active] += np.abs(kappa) * np.where(np.isfinite(step), step, 0.0)
            moving = np.isfinite(step) & (turned[active] <= 2 * np.pi * self.max_turns)
            active, step, surface, kappa = active[moving], step[moving], surface[moving], kappa[moving]
            new_position = helix_position(position[active], momentum[active], kappa, step)
            new_momentum = helix_momentum(momentum[active], kappa, step)
            for column, layer in enumerate(self.layers, start=1):
                on_layer = np.flatnonzero(surface == column)
                if on_layer.size:
                    rows, modules, points, hit_momentum = self._module_hits(
                        layer, new_position[on_layer], new_momentum[on_layer], kappa[on_layer]
                    )
                    found.append((active[on_layer[rows]], modules, points, hit_momentum))
            if self.material.multiple_scattering:
                x_over_x0 = self._material(surface, new_position, new_momentum)
                theta0 = highland_angle(new_momentum, mass[active], charge[active], x_over_x0)
                new_momentum = scatter(rng, new_momentum, theta0)
            position[active] = new_position
            momentum[active] = new_momentum
        return _collect(found)


def _surface_normal(layer: LayerIndex, position: np.ndarray) -> np.ndarray:
    if layer.kind == "disk":
        return np.broadcast_to(np.array([0.0, 0.0, 1.0]), position.shape)
    radial = np.column_stack([position[:, 0], position[:, 1], np.zeros(len(position))])
    return radial / np.linalg.norm(radial, axis=1, keepdims=True)


def _collect(found: list[tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]]) -> ModuleCrossings:
    if not found:
        empty = np.zeros(0, dtype=np.int64)
        return ModuleCrossings(empty, empty, np.zeros((0, 3)), np.zeros((0, 3)))
    particle, module, position, momentum = (np.concatenate(parts) for parts in zip(*found, strict=True))
    order = np.argsort(particle, kind="stable")
    return ModuleCrossings(particle[order], module[order], position[order], momentum[order])
