"""The pixel event simulator on small pile-up: determinism, valid ids, helix physics, digitisation, I/O."""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import pytest
from click.testing import CliRunner

from trackrt.configuration import ConfigError
from trackrt.data.cli import simulate as simulate_command
from trackrt.data.geometry import load_detector
from trackrt.data.sim_field import make_field
from trackrt.data.sim_helix import C_GEV_PER_T_MM
from trackrt.data.sim_particles import ParticleSpec, generate_particles
from trackrt.data.sim_spectra import (
    ALL_PARTICLE_PT_QUANTILES,
    NO_PIXEL_HIT_FRACTION,
    PIXEL_SECONDARY_FRACTION,
)
from trackrt.data.sim_transport import MaterialSpec, PixelTransport
from trackrt.data.simulate import EventSimulator, SimulationConfig, config_from_dict, simulate_events
from trackrt.data.trackml import decode_particle_id, read_event

SMALL = SimulationConfig(pileup=10.0)


@pytest.fixture(scope="module")
def geometry(trackml_dir):
    return load_detector(trackml_dir / "detectors.csv.gz")


@pytest.fixture(scope="module")
def small_event(geometry):
    return EventSimulator(SMALL, geometry).simulate(event_id=3, seed=11)


def _single_charge_transport(geometry, pt, multiple_scattering, n=300, seed=0):
    """n particles of one pT from the origin in a uniform 2 T field: (crossings, momenta, charges)."""
    rng = np.random.default_rng(seed)
    phi = rng.uniform(-np.pi, np.pi, n)
    eta = rng.uniform(-0.8, 0.8, n)
    momentum = np.column_stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)])
    charge = rng.choice([-1, 1], n)
    transport = PixelTransport(
        geometry, make_field("uniform", 2.0), MaterialSpec(multiple_scattering=multiple_scattering)
    )
    crossings = transport.run(rng, np.zeros((n, 3)), momentum, charge, np.full(n, 0.13957))
    return crossings, momentum, charge


def _distance_from_ideal_circle(crossings, momentum, charge, bz=2.0):
    """|distance from the helix axis − R| of each crossing, for helices starting at the origin."""
    pt = np.hypot(momentum[:, 0], momentum[:, 1])
    radius = pt / (C_GEV_PER_T_MM * bz)
    # The centre lies at R to the left (negative charge) or right (positive) of the initial direction.
    side = np.where(charge > 0, -1.0, 1.0)
    centre = np.column_stack([-momentum[:, 1], momentum[:, 0]]) / pt[:, None] * (side * radius)[:, None]
    p = crossings.particle
    return np.abs(np.hypot(*(crossings.position[:, :2] - centre[p]).T) - radius[p])


def test_helix_radius_matches_pt_and_field(geometry):
    crossings, momentum, charge = _single_charge_transport(geometry, pt=0.5, multiple_scattering=False)
    assert crossings.particle.size > 1000
    assert _distance_from_ideal_circle(crossings, momentum, charge).max() < 1e-6
    np.testing.assert_allclose(
        np.linalg.norm(crossings.momentum, axis=1), np.linalg.norm(momentum[crossings.particle], axis=1)
    )


def test_multiple_scattering_deflects_low_pt_tracks(geometry):
    crossings, momentum, charge = _single_charge_transport(geometry, pt=0.3, multiple_scattering=True)
    radius = np.hypot(crossings.position[:, 0], crossings.position[:, 1])
    deviation = _distance_from_ideal_circle(crossings, momentum, charge)[radius > 150]
    # Highland at 0.3 GeV and 1.7 % X0 per layer: ~4 mrad per layer, i.e. ~0.1 mm at the outer layer.
    assert 0.02 < np.median(deviation) < 1.0


def test_event_ids_are_valid_and_hits_lie_on_their_modules(small_event, geometry):
    hits, truth = small_event.hits, small_event.truth
    modules = geometry.index_of(hits["volume_id"], hits["layer_id"], hits["module_id"])
    assert (modules >= 0).all()
    measured = geometry.global_to_local(hits[["x", "y", "z"]].to_numpy(np.float64), modules)
    assert geometry.contains_local(measured, modules, tolerance=1e-3).all()
    assert np.abs(measured[:, 2]).max() < 1e-3
    true_local = geometry.global_to_local(truth[["tx", "ty", "tz"]].to_numpy(np.float64), modules)
    assert geometry.contains_local(true_local, modules, tolerance=1e-6, w_tolerance=1e-3).all()
    residual = (measured - true_local)[truth["particle_id"].to_numpy() != 0]
    np.testing.assert_allclose(
        residual[:, :2].std(axis=0), [0.05 / np.sqrt(12), 0.05625 / np.sqrt(12)], rtol=0.15
    )
    assert hits["hit_id"].tolist() == list(range(1, len(hits) + 1))


def test_particle_ids_nhits_and_weights(small_event):
    particles, truth = small_event.particles, small_event.truth
    fields = decode_particle_id(particles["particle_id"])
    assert (fields["vertex"] >= 1).all() and (fields["primary"] >= 1).all()
    primary = fields["generation"] == 0
    assert (fields.loc[primary, ["secondary", "process"]] == 0).all().all()
    assert (fields.loc[~primary, "secondary"] >= 1).all() and fields["generation"].isin([0, 1]).all()
    assert particles["particle_id"].is_unique
    counts = truth.loc[truth["particle_id"] != 0, "particle_id"].value_counts()
    assert (particles.set_index("particle_id")["nhits"].reindex(counts.index) == counts).all()
    assert truth["weight"].sum() == pytest.approx(1.0, abs=1e-4)
    assert (truth.loc[truth["particle_id"] == 0, "weight"] == 0).all()
    assert set(np.abs(particles["particle_type"])) <= {211, 321, 2212, 11, 13}


def test_double_hits_present(small_event):
    pixel = small_event.hits.merge(small_event.truth, on="hit_id")
    signal = pixel[pixel["particle_id"] != 0]
    layers = signal.drop_duplicates(["particle_id", "volume_id", "layer_id"])
    assert 0.15 < 1 - len(layers) / len(signal) < 0.45


def test_inefficiency_and_noise_fractions(geometry):
    config = SimulationConfig(pileup=20.0, inefficiency=0.0, noise_fraction=0.0)
    perfect = EventSimulator(config, geometry).simulate(1, 5)
    lossy = EventSimulator(
        dataclasses.replace(config, inefficiency=0.1, noise_fraction=0.2), geometry
    ).simulate(1, 5)
    assert (perfect.truth["particle_id"] == 0).sum() == 0
    true_hits = (lossy.truth["particle_id"] != 0).sum()
    assert true_hits / len(perfect.hits) == pytest.approx(0.9, abs=0.02)
    assert (lossy.truth["particle_id"] == 0).sum() / true_hits == pytest.approx(0.2, abs=0.03)


def test_cells_follow_the_track_through_the_sensor(geometry):
    plain = EventSimulator(SMALL, geometry).simulate(event_id=3, seed=11)
    event = EventSimulator(dataclasses.replace(SMALL, cells=True), geometry).simulate(event_id=3, seed=11)
    assert event.hits.equals(plain.hits) and event.truth.equals(plain.truth)
    cells = event.cells
    assert set(cells["hit_id"]) == set(event.hits["hit_id"])
    hits = event.hits.set_index("hit_id")
    modules = geometry.index_of(hits["volume_id"], hits["layer_id"], hits["module_id"])
    local = geometry.global_to_local(hits[["x", "y", "z"]].to_numpy(np.float64), modules)
    measured_ch0 = (local[:, 0] + geometry.max_hu[modules]) / geometry.pitch_u[modules]
    span = cells.groupby("hit_id")["ch0"].agg(["min", "max"]).loc[hits.index]
    # Smearing is pitch/sqrt(12) (0.29 pixel): the measured u lies within a pixel or two of the cluster.
    assert ((measured_ch0 >= span["min"] - 2) & (measured_ch0 <= span["max"] + 3)).mean() > 0.999
    signal = event.truth.set_index("hit_id")["particle_id"] != 0
    total = cells.groupby("hit_id")["value"].sum()[signal[signal].index]
    assert total.min() >= 0.999
    size = cells.groupby("hit_id").size()
    barrel_size = size[hits.index[hits["volume_id"] == 8]].mean()
    endcap_size = size[hits.index[hits["volume_id"] != 8]].mean()
    assert 1.0 < barrel_size and 1.0 < endcap_size


def test_same_seed_same_files_for_any_worker_count(tmp_path, trackml_dir):
    config = SimulationConfig(pileup=5.0, detector=str(trackml_dir))
    one = simulate_events(config, tmp_path / "one", 2, seed=9, workers=1, progress=False)
    two = simulate_events(config, tmp_path / "two", 2, seed=9, workers=2, progress=False)
    assert [p.name for p in one] == [p.name for p in two]
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one, two, strict=True))
    other = simulate_events(config, tmp_path / "other", 1, seed=10, workers=1, progress=False)
    assert other[0].read_bytes() != one[0].read_bytes()


def test_written_event_reads_back(tmp_path, trackml_dir):
    config = SimulationConfig(pileup=5.0, detector=str(trackml_dir), field="uniform", hard_scatter=False)
    simulate_events(config, tmp_path, 1, seed=1, first_event=7, progress=False)
    event = read_event(tmp_path / "event000000007")
    assert event.event_id == 7
    assert len(event.hits) == len(event.truth) > 0
    vertices = decode_particle_id(event.particles["particle_id"])["vertex"]
    assert vertices.nunique() < 20


def test_particle_table_matches_measured_pt_quantiles(rng):
    tables = [generate_particles(rng, ParticleSpec(pileup=200.0, hard_scatter=False)) for _ in range(20)]
    particles = pd.concat(tables)
    pt = np.hypot(particles["px"], particles["py"]).to_numpy()
    for quantile, value in ALL_PARTICLE_PT_QUANTILES[1:]:
        assert np.quantile(pt, quantile) == pytest.approx(value, rel=0.03)
    assert (pt >= 1.0).mean() == pytest.approx(0.111, abs=0.003)
    assert (~particles["transport"]).mean() == pytest.approx(NO_PIXEL_HIT_FRACTION, abs=0.005)
    generation = decode_particle_id(particles["particle_id"])["generation"].to_numpy()
    assert (generation == 1).mean() == pytest.approx(
        NO_PIXEL_HIT_FRACTION + PIXEL_SECONDARY_FRACTION, abs=0.005
    )
    primary_pt = pt[generation == 0]
    assert (primary_pt >= 1.0).mean() > 0.14


def test_secondaries_start_away_from_the_beam(small_event):
    particles = small_event.particles
    secondary = decode_particle_id(particles["particle_id"])["generation"].to_numpy() == 1
    radius = np.hypot(particles["vx"], particles["vy"]).to_numpy()
    outer = secondary & (radius >= 199.9)
    inner = secondary & (radius < 199.9)
    assert outer.any() and inner.any()
    assert (particles.loc[outer, "nhits"] == 0).all()
    assert (radius[inner] > 2.0).all() and (particles.loc[inner, "nhits"] > 0).any()
    primary_hits = particles.loc[~secondary & (particles["nhits"] > 0).to_numpy(), "nhits"].mean()
    assert particles.loc[inner & (particles["nhits"] > 0).to_numpy(), "nhits"].mean() < primary_hits


def test_solenoid_field_profile():
    field = make_field("solenoid")
    assert field.bz(np.array([0.0]))[0] == 2.0
    assert 1.85 <= field.bz(np.array([-750.0]))[0] <= 1.95
    assert 1.65 <= field.bz(np.array([1400.0]))[0] <= 1.75
    assert make_field("uniform", 3.0).bz(np.array([1400.0]))[0] == 3.0


def test_config_from_dict_refuses_unknown_keys():
    assert config_from_dict({"pileup": 50, "field": "uniform"}).pileup == 50.0
    with pytest.raises(ConfigError, match="pilup"):
        config_from_dict({"pilup": 50})
    with pytest.raises(ConfigError, match="field"):
        config_from_dict({"field": "dipole"})


def test_cli_simulate(tmp_path, trackml_dir):
    result = CliRunner().invoke(
        simulate_command,
        [
            "--events",
            "1",
            "--pileup",
            "3",
            "--seed",
            "2",
            "--out",
            str(tmp_path),
            "--detector",
            str(trackml_dir),
            "--no-hard-scatter",
            "--field",
            "uniform",
            "--first-event",
            "4",
        ],
    )
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "event000000004-hits.csv.gz",
        "event000000004-particles.csv.gz",
        "event000000004-truth.csv.gz",
    ]


def test_vertex_sigma_z_sets_the_spread_of_primary_vertices(geometry):
    """The luminous region's length reaches the generated vertices (a wider one widens a training set)."""
    assert SimulationConfig(vertex_sigma_z=120.0).particle_spec().vertex_sigma_z == 120.0
    spreads = []
    for sigma in (50.0, 150.0):
        event = EventSimulator(SimulationConfig(pileup=40.0, vertex_sigma_z=sigma), geometry).simulate(1, 5)
        ids = decode_particle_id(event.particles["particle_id"])
        primaries = event.particles[ids["generation"] == 0]
        spreads.append(primaries.groupby(ids.loc[primaries.index, "vertex"])["vz"].first().std())
    assert spreads[0] < 80.0 < spreads[1]
    with pytest.raises(ConfigError, match="vertex_sigma_z"):
        config_from_dict({"vertex_sigma_z": "wide"})
