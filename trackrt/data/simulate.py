"""TrackML-like pixel events: pile-up + hard-scatter particles, helix transport on the real module
geometry with multiple scattering, digitisation, written as TrackML CSV files.

`simulate_event(config, event_id, seed)` gives one `Event`; `simulate_events(...)` writes many, in
parallel processes if asked, each event seeded from `SeedSequence(seed, spawn_key=(event_id,))` so the
files do not depend on the number of workers.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from trackrt.configuration import from_dict
from trackrt.data.geometry import DetectorGeometry, load_detector
from trackrt.data.sim_digitise import DigitisationSpec, digitise
from trackrt.data.sim_field import FieldKind, make_field
from trackrt.data.sim_particles import ParticleSpec, generate_particles
from trackrt.data.sim_spectra import NO_PIXEL_HIT_FRACTION, PIXEL_SECONDARY_FRACTION
from trackrt.data.sim_transport import MaterialSpec, PixelTransport
from trackrt.data.trackml import PIXEL_VOLUMES, Event, trackml_weights, write_event

DETECTOR_ENV = "TRACKRT_TRACKML_DIR"


@dataclass(frozen=True)
class SimulationConfig:
    """Everything that defines a simulated event sample (besides the seed and event ids)."""

    pileup: float = 200.0
    hard_scatter: bool = True
    charged_per_interaction: float = 35.0  # primaries; secondaries come on top
    pixel_secondary_fraction: float = PIXEL_SECONDARY_FRACTION
    no_pixel_hit_fraction: float = NO_PIXEL_HIT_FRACTION
    multiplicity_shape: float | None = None  # negative-binomial k per interaction; None: Poisson
    eta_max: float = 4.0
    vertex_sigma_z: float = 50.0  # mm, the luminous region's length (TrackML: ~55 mm)
    field: FieldKind = "solenoid"
    bz_tesla: float = 2.0
    multiple_scattering: bool = True
    layer_x0: float = 0.017
    beam_pipe_x0: float = 0.002
    inefficiency: float = 0.015
    noise_fraction: float = 0.05
    smear: bool = True
    cells: bool = False
    max_turns: float = 1.0
    detector: str | None = None  # detectors.csv(.gz) or its directory; None: $TRACKRT_TRACKML_DIR

    def particle_spec(self) -> ParticleSpec:
        """The particle-generation part of the configuration."""
        return ParticleSpec(
            pileup=self.pileup,
            charged_per_interaction=self.charged_per_interaction,
            multiplicity_shape=self.multiplicity_shape,
            eta_max=self.eta_max,
            hard_scatter=self.hard_scatter,
            no_pixel_hit_fraction=self.no_pixel_hit_fraction,
            pixel_secondary_fraction=self.pixel_secondary_fraction,
            vertex_sigma_z=self.vertex_sigma_z,
        )

    def material_spec(self) -> MaterialSpec:
        """The material part of the configuration."""
        return MaterialSpec(
            beam_pipe_x0=self.beam_pipe_x0,
            layer_x0=self.layer_x0,
            multiple_scattering=self.multiple_scattering,
        )

    def digitisation_spec(self) -> DigitisationSpec:
        """The digitisation part of the configuration."""
        return DigitisationSpec(
            inefficiency=self.inefficiency,
            noise_fraction=self.noise_fraction,
            smear=self.smear,
            cells=self.cells,
        )


def config_from_dict(data: dict[str, Any]) -> SimulationConfig:
    """SimulationConfig from a plain dict (YAML/JSON); unknown keys and wrong types are refused."""
    return from_dict(SimulationConfig, data)


def default_detector_path() -> Path:
    """$TRACKRT_TRACKML_DIR, else the shared TrackML directory beside the checkout."""
    configured = os.environ.get(DETECTOR_ENV)
    if configured:
        return Path(configured)
    return Path(__file__).resolve().parents[3] / "shared" / "data" / "trackml"


def event_rng(seed: int, event_id: int) -> np.random.Generator:
    """The generator of one event: independent streams per event id, the same for any worker count."""
    return np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(event_id,)))


class EventSimulator:
    """Holds the detector and field of one configuration and simulates events from it."""

    def __init__(self, config: SimulationConfig, geometry: DetectorGeometry | None = None):
        self.config = config
        detector = config.detector if config.detector is not None else default_detector_path()
        self.geometry = geometry if geometry is not None else load_detector(detector, PIXEL_VOLUMES)
        field = make_field(config.field, config.bz_tesla)
        self.transport = PixelTransport(self.geometry, field, config.material_spec(), config.max_turns)

    def simulate(self, event_id: int, seed: int) -> Event:
        """One event with hits, particles (with nhits) and truth (with TrackML weights)."""
        rng = event_rng(seed, event_id)
        particles = generate_particles(rng, self.config.particle_spec())
        moving = particles[particles["transport"]]
        crossings = self.transport.run(
            rng,
            moving[["vx", "vy", "vz"]].to_numpy(),
            moving[["px", "py", "pz"]].to_numpy(),
            moving["q"].to_numpy(),
            moving["mass"].to_numpy(),
        )
        table, cells = digitise(
            rng,
            self.geometry,
            crossings,
            moving["particle_id"].to_numpy(),
            self.config.digitisation_spec(),
        )
        particles = particles.drop(columns=["mass", "transport"])
        counts = table.loc[table["particle_id"] != 0, "particle_id"].value_counts()
        particles["nhits"] = particles["particle_id"].map(counts).fillna(0).astype(np.int32)
        hits = table[["hit_id", "x", "y", "z", "volume_id", "layer_id", "module_id"]]
        truth = table[["hit_id", "particle_id", "tx", "ty", "tz", "tpx", "tpy", "tpz"]].copy()
        truth["weight"] = trackml_weights(truth, particles)
        return Event(event_id=event_id, hits=hits, particles=particles, truth=truth, cells=cells)


def simulate_event(config: SimulationConfig, event_id: int, seed: int) -> Event:
    """Simulate one event (builds the detector each call; use `EventSimulator` for many events)."""
    return EventSimulator(config).simulate(event_id, seed)


_WORKER: EventSimulator | None = None


def _init_worker(config: SimulationConfig) -> None:
    global _WORKER
    _WORKER = EventSimulator(config)


def _simulate_and_write(args: tuple[int, int, str, bool]) -> list[Path]:
    event_id, seed, out, compress = args
    assert _WORKER is not None
    return write_event(out, _WORKER.simulate(event_id, seed), compress=compress)


def simulate_events(
    config: SimulationConfig,
    out: str | Path,
    n_events: int,
    seed: int,
    first_event: int = 1,
    workers: int = 1,
    compress: bool = True,
    progress: bool = True,
) -> list[Path]:
    """Simulate events first_event .. first_event+n_events-1 into `out`; returns the written files."""
    if n_events < 0 or first_event < 0 or workers < 1:
        raise ValueError(
            f"need n_events >= 0, first_event >= 0, workers >= 1 (got {n_events}, {first_event}, {workers})"
        )
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    jobs = [(event_id, seed, str(out), compress) for event_id in range(first_event, first_event + n_events)]
    written: list[Path] = []
    bar = tqdm(total=len(jobs), desc="simulate", unit="event", disable=not progress)
    for paths in _run_jobs(config, jobs, workers):
        written.extend(paths)
        bar.update(1)
    bar.close()
    return written


def _run_jobs(
    config: SimulationConfig, jobs: list[tuple[int, int, str, bool]], workers: int
) -> Iterator[list[Path]]:
    if workers == 1 or len(jobs) <= 1:
        _init_worker(config)
        yield from map(_simulate_and_write, jobs)
        return
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker, initargs=(config,)) as pool:
        yield from pool.map(_simulate_and_write, jobs)
