"""Training samples on the real reference event and hand-built events; targets; the sample cache."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import FeatureConfig, hit_features
from trackrt.data.samples import (
    SampleConfig,
    build_cache,
    cache_key,
    load_cached_sample,
    make_sample,
    open_cache,
    reconstructable_particles,
    sample_config,
    target_particles,
    tracker_targets,
)
from trackrt.data.trackml import Event, read_event


@pytest.fixture(scope="module")
def reference_event(trackml_dir: Path) -> Event:
    return read_event(trackml_dir / "event000000001", pixel_only=True)


def hand_event(particle_pt: list[float], hits_per_particle: int = 4, noise: int = 3) -> Event:
    """Particles flying out at φ = 0.3·k through barrel layers, plus noise hits; all in the pixel barrel."""
    radii = np.array([32.0, 72.0, 116.0, 172.0, 172.5])[:hits_per_particle]
    rows, truth = [], []
    hit_id = 1
    for k, _ in enumerate(particle_pt):
        for r in radii[::-1]:  # written outermost first: the sample must still find the smallest r
            rows.append((hit_id, r * np.cos(0.3 * k), r * np.sin(0.3 * k), 10.0 * k))
            truth.append((hit_id, k + 1))
            hit_id += 1
    for j in range(noise):
        rows.append((hit_id, 50.0 * np.cos(2.0 + j), 50.0 * np.sin(2.0 + j), 0.0))
        truth.append((hit_id, 0))
        hit_id += 1
    hits = pd.DataFrame(rows, columns=["hit_id", "x", "y", "z"]).assign(volume_id=8, layer_id=2, module_id=1)
    truth_frame = pd.DataFrame(truth, columns=["hit_id", "particle_id"]).assign(weight=0.01)
    particles = pd.DataFrame(
        {
            "particle_id": np.arange(1, len(particle_pt) + 1, dtype=np.int64),
            "vx": 0.0,
            "vy": 0.0,
            "vz": 0.0,
            "px": np.asarray(particle_pt, dtype=float),
            "py": 0.0,
            "pz": 0.1,
            "q": 1,
            "nhits": hits_per_particle,
        }
    )
    return Event(event_id=7, hits=hits, particles=particles, truth=truth_frame)


def test_reference_event_sample(reference_event: Event) -> None:
    sample = make_sample(reference_event, sample_config("Pix1.0"))
    assert sample.num_hits == len(reference_event.hits)
    hits = reference_event.hits.set_index("hit_id").loc[sample.hit_id]
    phi = np.arctan2(hits["y"], hits["x"]).to_numpy()
    assert np.all(np.diff(phi) >= 0)
    np.testing.assert_array_equal(sample.features, hit_features(hits, FeatureConfig()))
    np.testing.assert_allclose(sample.hit_r, np.hypot(hits["x"], hits["y"]), rtol=1e-6)
    truth = reference_event.truth.set_index("hit_id").loc[sample.hit_id]
    np.testing.assert_array_equal(sample.hit_particle_id, truth["particle_id"])
    # DESIGN §3: 11.7 % of the sample event's pixel hits are on pT > 1 GeV target particles.
    assert abs(sample.hit_on_target.mean() - 0.117) < 0.005
    assert abs(make_sample(reference_event, sample_config("Pix0.6")).hit_on_target.mean() - 0.33) < 0.01


def test_target_particles_follow_the_selection(reference_event: Event) -> None:
    targets = target_particles(reference_event, sample_config("Pix1.0"))
    particles = reference_event.particles.set_index("particle_id")
    pt = np.hypot(particles["px"], particles["py"])
    eta = np.arcsinh(particles["pz"] / pt)
    counts = reference_event.truth["particle_id"].value_counts().reindex(particles.index, fill_value=0)
    expected = particles.index[(pt >= 1.0) & (eta.abs() <= 4.0) & (counts >= 3)]
    assert targets.tolist() == sorted(expected.tolist())
    assert len(targets) > 0


def test_pt_min_replaces_the_selections_cut(reference_event: Event) -> None:
    margin = make_sample(reference_event, sample_config("Pix1.0", pt_min=0.8))
    strict = make_sample(reference_event, sample_config("Pix1.0"))
    assert sample_config("Pix0.6", pt_min=0.5).pt_min == 0.5
    assert set(strict.target_particle_id) < set(margin.target_particle_id)
    assert (margin.hit_on_target >= strict.hit_on_target).all()
    assert margin.hit_on_target.sum() > strict.hit_on_target.sum()
    added = np.setdiff1d(margin.target_particle_id, strict.target_particle_id)
    pt = margin.particles.set_index("particle_id").loc[added, "pt"]
    assert ((pt >= 0.8) & (pt < 1.0)).all()


def test_ideal_tracker_targets_on_reference_event(reference_event: Event) -> None:
    sample = make_sample(reference_event, sample_config("Pix1.0"))
    targets = tracker_targets(sample)
    assert np.all(np.diff(targets.hit_index) > 0)
    assert np.all(targets.hit_particle >= 0)  # the ideal filter keeps only target-particle hits
    assert sorted(targets.particle_id.tolist()) == sample.target_particle_id.tolist()
    assert np.all(np.diff(targets.first_hit) > 0)  # particles are ordered by their first hit
    np.testing.assert_array_equal(targets.features, sample.features[targets.hit_index])
    r = sample.hit_r[targets.hit_index]
    pid = sample.hit_particle_id[targets.hit_index]
    for p, particle in enumerate(targets.particle_id):
        own = np.flatnonzero(targets.hit_particle == p)
        assert np.all(pid[own] == particle) and len(own) >= 3
        assert targets.first_hit[p] == own[np.argmin(r[own])]
    assert targets.seed_target.sum() == len(targets.particle_id)
    np.testing.assert_array_equal(targets.assignment_matrix().sum(axis=0), np.ones(len(targets.hit_index)))


def test_tracker_targets_after_a_learned_filter() -> None:
    sample = make_sample(hand_event([2.0, 3.0, 0.5]), sample_config("Pix1.0"))
    assert sample.target_particle_id.tolist() == [1, 2]
    first_of_particle_1 = np.flatnonzero((sample.hit_particle_id == 1) & (sample.hit_r == 32.0))[0]
    mask = np.ones(sample.num_hits, dtype=bool)
    mask[first_of_particle_1] = False  # the filter lost particle 1's innermost hit
    mask[sample.hit_particle_id == 2] = False  # and every hit of particle 2
    targets = tracker_targets(sample, mask)
    assert len(targets.hit_index) == sample.num_hits - 5
    assert targets.particle_id.tolist() == [1]
    assert sample.hit_r[targets.hit_index[targets.first_hit[0]]] == 72.0
    kept_pid = sample.hit_particle_id[targets.hit_index]
    np.testing.assert_array_equal(targets.hit_particle, np.where(kept_pid == 1, 0, -1))
    with pytest.raises(ValueError, match=r"hit_mask: expected a bool array of shape \(15,\)"):
        tracker_targets(sample, np.ones(4, dtype=bool))


def test_tracker_targets_for_every_reconstructable_particle() -> None:
    sample = make_sample(hand_event([2.0, 0.5, 3.0]), sample_config("Pix1.0"))
    assert sample.target_particle_id.tolist() == [1, 3]  # the 0.5 GeV particle is below the selection
    everything = np.ones(sample.num_hits, dtype=bool)
    assert reconstructable_particles(sample).tolist() == [1, 2, 3]  # noise (id 0) is never a particle
    assert reconstructable_particles(sample, min_hits=5).tolist() == []
    default = tracker_targets(sample, everything)
    every = tracker_targets(sample, everything, reconstructable_particles(sample))
    assert default.particle_id.tolist() == [1, 3]
    assert every.particle_id.tolist() == [1, 2, 3]  # ordered by first hit, as the φ order has them
    kept_pid = sample.hit_particle_id[every.hit_index]
    np.testing.assert_array_equal(every.hit_particle >= 0, kept_pid != 0)
    on_particle = kept_pid != 0
    np.testing.assert_array_equal(every.particle_id[every.hit_particle[on_particle]], kept_pid[on_particle])
    assert every.seed_target.sum() == 3


def test_event_without_target_particles() -> None:
    sample = make_sample(hand_event([0.3, 0.5], hits_per_particle=2), sample_config("Pix0.6"))
    assert sample.num_targets == 0 and not sample.hit_on_target.any()
    ideal = tracker_targets(sample)
    assert ideal.hit_index.shape == (0,) and ideal.particle_id.shape == (0,) and ideal.first_hit.shape == (0,)
    assert ideal.features.shape == (0, 8)
    everything = tracker_targets(sample, np.ones(sample.num_hits, dtype=bool))
    assert np.all(everything.hit_particle == -1) and not everything.seed_target.any()
    assert everything.assignment_matrix().shape == (0, sample.num_hits)


def test_non_pixel_hits_are_dropped_and_missing_parts_refused() -> None:
    event = hand_event([2.0])
    event.hits.loc[0, "volume_id"] = 12  # strip detector
    sample = make_sample(event, sample_config("Pix1.0"))
    assert sample.num_hits == len(event.hits) - 1 and 1 not in sample.hit_id
    with pytest.raises(ValueError, match="the 'truth' part is needed"):
        make_sample(Event(1, event.hits, event.particles, None), sample_config("Pix1.0"))
    with pytest.raises(ValueError, match="truth has no column 'weight'"):
        make_sample(
            Event(1, event.hits, event.particles, event.truth.drop(columns="weight")), sample_config("Pix1.0")
        )


def test_sample_config_validation() -> None:
    with pytest.raises(ConfigError, match="pt_min: must be a finite number >= 0"):
        SampleConfig(pt_min=-1.0)
    with pytest.raises(ConfigError, match=r"selection: unknown selection 'Pix2\.0'"):
        sample_config("Pix2.0")
    with pytest.raises(ConfigError, match=r"unknown config key 'features\.scale'"):
        from_dict(SampleConfig, {"features": {"scale": 1.0}})
    assert cache_key(sample_config("Pix1.0")) != cache_key(sample_config("Pix0.6"))


def test_cache_round_trip_and_manifest(trackml_dir: Path, tmp_path: Path, reference_event: Event) -> None:
    config = sample_config("Pix1.0")
    cache = build_cache(trackml_dir, tmp_path, config)
    assert len(cache) == 1 and cache.events[0]["event_id"] == 1
    cached, direct = cache[0], make_sample(reference_event, config)
    for name in ("hit_id", "features", "hit_xyz", "hit_r", "hit_particle_id", "hit_weight", "hit_on_target"):
        np.testing.assert_array_equal(getattr(cached, name), getattr(direct, name))
    np.testing.assert_array_equal(cached.target_particle_id, direct.target_particle_id)
    pd.testing.assert_frame_equal(cached.particles, direct.particles)
    assert cached.truth_frame().columns.tolist() == ["hit_id", "particle_id", "weight"]

    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["caches"][cache.key]["config"]["pt_min"] == 1.0
    written = cache.paths[0].stat().st_mtime_ns
    again = build_cache(trackml_dir, tmp_path, config)  # reuses the file: CSV is not parsed again
    assert again.paths[0].stat().st_mtime_ns == written

    other = build_cache(trackml_dir, tmp_path, sample_config("Pix0.6"))
    assert other.key != cache.key
    assert set(json.loads((tmp_path / "manifest.json").read_text())["caches"]) == {cache.key, other.key}
    assert open_cache(tmp_path, config).paths == cache.paths
    with pytest.raises(ValueError, match="cached for sample config"):
        load_cached_sample(cache.paths[0], sample_config("Pix0.6"))
    with pytest.raises(FileNotFoundError, match="no cache for sample config"):
        open_cache(tmp_path, SampleConfig(pt_min=2.0))


def test_features_under_another_config_match_the_event(reference_event: Event) -> None:
    """A hit filter with its own feature config sees the same hits, φ-sorted, as the sample holds."""
    sample = make_sample(reference_event, sample_config("Pix1.0"))
    other = FeatureConfig(sinusoidal=["eta", "phi"], sinusoidal_frequencies=3, r_scale=100.0, xy_scale=100.0)
    hits = reference_event.hits.set_index("hit_id").loc[sample.hit_id]
    np.testing.assert_allclose(sample.features_for(other), hit_features(hits, other), atol=1e-6)
    np.testing.assert_allclose(sample.features_for(FeatureConfig()), sample.features, atol=1e-6)
    assert sample.features_for(other).shape == (sample.num_hits, other.num_features)


def test_data_modules_import_without_torch() -> None:
    code = (
        "import sys; import trackrt.data.features, trackrt.data.tracks, trackrt.data.samples; "
        "assert 'torch' not in sys.modules, 'torch was imported'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize("selection", ("Pix1.0", "Pix0.6"))
def test_targets_agree_with_the_metrics_selection(reference_event: Event, selection: str) -> None:
    from trackrt.metrics.tracking import evaluate_tracks

    config = sample_config(selection)
    sample = make_sample(reference_event, config)
    targets = tracker_targets(sample)
    perfect = pd.DataFrame({"hit_id": sample.hit_id[targets.hit_index], "track_id": targets.hit_particle})
    metrics = evaluate_tracks(perfect, sample.truth_frame(), sample.particles, pt_min=config.pt_min)
    assert metrics.counts["target_particles"] == sample.num_targets
    assert metrics.efficiency == 1.0 and metrics.fake_rate == 0.0
