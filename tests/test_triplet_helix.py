"""Helix columns of the triplet search: support, mean curvature and z0, η seen from the track's z0."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
import torch

from tests.test_grow import _event_hits, _trained_like
from tests.test_triplets import helix_hits, noise_hits
from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import FeatureConfig, hit_features, shared_feature_columns
from trackrt.data.samples import cache_key, sample_config
from trackrt.data.triplets import (
    HELIX_FEATURES,
    TRIPLET_FEATURES,
    TripletConfig,
    triplet_features,
    triplet_helix_features,
)
from trackrt.train.checkpoint import CheckpointError
from trackrt.train.grow import widen_features


def helix_columns(hits: np.ndarray) -> np.ndarray:
    features = triplet_helix_features(hits[:, 0], hits[:, 1], hits[:, 2], TripletConfig())
    return features[:, len(TRIPLET_FEATURES) :]


@pytest.mark.parametrize("vz", [-180.0, 0.0, 120.0])
def test_track_hits_share_one_helix_and_one_eta_wherever_the_vertex(vz: float) -> None:
    hits = helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=vz)
    support, curvature, z0, eta = helix_columns(hits).T
    np.testing.assert_allclose(support, math.log1p(3))  # the three other hits agree with the best pair
    np.testing.assert_allclose(curvature, -0.9 / 5.0, atol=0.02)
    np.testing.assert_allclose(z0 * 250.0, vz, atol=1.0)
    np.testing.assert_allclose(eta * 4.0, math.asinh(0.8), atol=2e-3)  # the track's η, on every hit
    plain_eta = np.arcsinh(hits[:, 2] / np.hypot(hits[:, 0], hits[:, 1]))
    if abs(vz) > 100:
        assert np.ptp(plain_eta) > 0.5  # seen from the origin, the hits of the same track disagree


def test_a_track_from_another_vertex_does_not_support_the_helix() -> None:
    """Its hits pair with the track's into doublets that meet the beam between the two vertices."""
    track = helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=10.0)
    other = helix_hits(pt=5.0, phi0=0.31, cot_theta=0.8, vz=110.0)
    columns = helix_columns(np.concatenate([track, other]))
    np.testing.assert_allclose(columns[:, 0], math.log1p(3))
    np.testing.assert_allclose(columns[:4, 2] * 250.0, 10.0, atol=1.0)
    np.testing.assert_allclose(columns[4:, 2] * 250.0, 110.0, atol=1.0)


def test_hits_without_a_triplet_keep_their_own_eta() -> None:
    lone = np.array([[0.0, 50.0, 20.0], [-40.0, -20.0, 300.0]])
    columns = helix_columns(lone)
    np.testing.assert_array_equal(columns[:, :3], 0.0)
    np.testing.assert_allclose(columns[:, 3] * 4.0, np.arcsinh(lone[:, 2] / np.hypot(lone[:, 0], lone[:, 1])))


@pytest.mark.parametrize("count", [0, 1, 2])
def test_few_hits(count: int) -> None:
    hits = helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=0.0)[:count]
    features = triplet_helix_features(hits[:, 0], hits[:, 1], hits[:, 2], TripletConfig())
    assert features.shape == (count, len(TRIPLET_FEATURES) + len(HELIX_FEATURES))
    assert np.all(np.isfinite(features))


def test_first_columns_are_the_triplet_features(rng: np.random.Generator) -> None:
    tracks = [helix_hits(2.0, -2.0, -0.5, -40.0), helix_hits(8.0, 1.0, 1.5, 60.0)]
    hits = np.concatenate([*tracks, noise_hits(rng, 300)])
    x, y, z = hits.T
    both = triplet_helix_features(x, y, z, TripletConfig())
    np.testing.assert_array_equal(both[:, :4], triplet_features(x, y, z, TripletConfig()))
    assert np.all(np.isfinite(both))
    permutation = rng.permutation(len(hits))
    np.testing.assert_allclose(triplet_helix_features(x[permutation], y[permutation], z[permutation],
                                                      TripletConfig()), both[permutation])  # fmt: skip


def test_feature_config_appends_the_helix_columns_after_the_triplets(rng: np.random.Generator) -> None:
    with_triplets = FeatureConfig(triplets=TripletConfig())
    with_helix = dataclasses.replace(with_triplets, triplet_helix=True)
    assert with_helix.feature_names == with_triplets.feature_names + list(HELIX_FEATURES)
    hits = np.concatenate([helix_hits(3.0, 0.0, 0.1, 5.0), noise_hits(rng, 50)])
    values = hit_features(hits, with_helix)
    np.testing.assert_array_equal(values[:, : with_triplets.num_features], hit_features(hits, with_triplets))
    helix = values[:, with_triplets.num_features :]
    np.testing.assert_allclose(helix, helix_columns(hits), rtol=1e-6, atol=1e-6)
    for config in (with_triplets, FeatureConfig()):
        shared = shared_feature_columns(values, with_helix, config)
        assert shared is not None
        np.testing.assert_array_equal(shared, hit_features(hits, config))
    assert shared_feature_columns(hit_features(hits, with_triplets), with_triplets, with_helix) is None


def test_helix_columns_need_the_triplets_and_keep_the_cache_key_when_off() -> None:
    with pytest.raises(ConfigError, match=r"triplet_helix: .* set triplets"):
        FeatureConfig(triplet_helix=True)
    with_triplets = FeatureConfig(triplets=TripletConfig())
    off = from_dict(FeatureConfig, {"triplets": {}, "triplet_helix": False})
    on = dataclasses.replace(with_triplets, triplet_helix=True)
    keys = [cache_key(sample_config("Pix1.0", config)) for config in (with_triplets, off, on)]
    assert keys[0] == keys[1] != keys[2]


@pytest.mark.parametrize("kind", ["hit_filter", "tracker"])
def test_widened_model_reads_the_helix_columns_and_computes_the_same(
    kind: str, rng: np.random.Generator
) -> None:
    model, config = _trained_like(kind)
    with_triplets = dataclasses.replace(config.features, triplets=TripletConfig())
    model, config = widen_features(model, config, with_triplets)
    wide, wide_config = widen_features(model, config, dataclasses.replace(with_triplets, triplet_helix=True))
    assert wide_config.features.num_features == with_triplets.num_features + len(HELIX_FEATURES)
    hits = _event_hits(rng)
    old = torch.from_numpy(hit_features(hits, with_triplets))[None]
    new = torch.from_numpy(hit_features(hits, wide_config.features))[None]
    torch.testing.assert_close(wide.encoder(new), model.encoder(old))
    with pytest.raises(CheckpointError, match="'helix_support' is read by the model"):
        widen_features(wide, wide_config, dataclasses.replace(with_triplets, sinusoidal=["eta"]))
