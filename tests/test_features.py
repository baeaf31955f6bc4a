"""Hit features: values on known hits, sinusoidal encodings, input forms, bad input, φ ordering."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pandas as pd
import pytest

from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import (
    FeatureConfig,
    hit_features,
    phi_sort_order,
    shared_feature_columns,
    sinusoidal_pairs,
)
from trackrt.data.triplets import TripletConfig


def test_known_hit_gives_scaled_features() -> None:
    config = FeatureConfig(xy_scale=10.0, z_scale=20.0, r_scale=5.0, eta_scale=2.0, uv_scale=0.5)
    hits = pd.DataFrame({"x": [3.0, 0.0], "y": [4.0, -2.0], "z": [0.0, 2.0 * math.sinh(1.0)]})
    features = hit_features(hits, config)
    assert features.dtype == np.float32 and features.shape == (2, 8)
    assert config.feature_names == ["x", "y", "z", "r", "eta", "phi", "u", "v"]
    expected = [
        [0.3, 0.4, 0.0, 1.0, 0.0, math.atan2(4, 3) / math.pi, (3 / 25) / 0.5, (4 / 25) / 0.5],
        [0.0, -0.2, math.sinh(1.0) / 10, 0.4, 0.5, -0.5, 0.0, (-2 / 4) / 0.5],
    ]
    np.testing.assert_allclose(features, expected, rtol=1e-6, atol=1e-7)


def test_feature_subset_and_order_follow_config() -> None:
    hits = np.array([[3.0, 4.0, 7.0]])
    features = hit_features(hits, FeatureConfig(features=["phi", "r"], r_scale=1.0))
    np.testing.assert_allclose(features, [[math.atan2(4, 3) / math.pi, 5.0]], rtol=1e-6)


def test_sinusoidal_encodings_values_and_phi_periodicity() -> None:
    config = FeatureConfig(features=["r"], sinusoidal=["phi", "r"], sinusoidal_frequencies=3, r_scale=100.0)
    assert config.num_features == 1 + 2 * 3 * 2
    assert config.feature_names[1:3] == ["sin_phi_0", "cos_phi_0"]
    just_above, just_below = math.pi - 1e-9, -math.pi + 1e-9
    hits = {
        "x": np.array([-50.0, -50.0]),
        "y": np.array([50 * math.tan(just_above), 50 * math.tan(just_below)]),
    }
    hits["z"] = np.zeros(2)
    features = hit_features(hits, config)
    np.testing.assert_allclose(features[0, 1:7], features[1, 1:7], atol=1e-6)  # φ = ±π encode alike
    r = features[0, 0]
    for k in range(3):
        angle = math.pi * 2**k * r
        np.testing.assert_allclose(
            features[0, 7 + 2 * k : 9 + 2 * k], [math.sin(angle), math.cos(angle)], atol=1e-5
        )


def test_dataframe_mapping_and_array_inputs_agree(rng: np.random.Generator) -> None:
    xyz = rng.normal(scale=100.0, size=(20, 3))
    frame = pd.DataFrame(xyz, columns=["x", "y", "z"]).assign(volume_id=8)
    mapping = {"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]}
    config = FeatureConfig()
    np.testing.assert_array_equal(hit_features(frame, config), hit_features(xyz, config))
    np.testing.assert_array_equal(hit_features(mapping, config), hit_features(xyz, config))


def test_empty_hits_give_empty_matrix() -> None:
    features = hit_features(np.zeros((0, 3)), FeatureConfig(sinusoidal=["eta"]))
    assert features.shape == (0, 8 + 2 * 4) and features.dtype == np.float32


def test_bad_hits_are_refused_naming_the_problem() -> None:
    config = FeatureConfig()
    with pytest.raises(ValueError, match="missing column 'z'"):
        hit_features(pd.DataFrame({"x": [1.0], "y": [2.0]}), config)
    with pytest.raises(ValueError, match=r"column 'y' has 2 NaN or infinite value\(s\)"):
        hit_features(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [np.nan, 1.0, np.inf], "z": [0.0] * 3}), config)
    with pytest.raises(ValueError, match="1 hit\\(s\\) at r = 0"):
        hit_features(np.array([[0.0, 0.0, 5.0], [1.0, 0.0, 0.0]]), config)
    with pytest.raises(ValueError, match=r"expected an \[N, 3\] array"):
        hit_features(np.zeros((4, 2)), config)
    with pytest.raises(ValueError, match="differ in length"):
        hit_features({"x": np.ones(3), "y": np.ones(2), "z": np.ones(3)}, config)


def test_feature_config_validation() -> None:
    with pytest.raises(ConfigError, match="features: unknown feature 'rho'"):
        FeatureConfig(features=["x", "rho"])
    with pytest.raises(ConfigError, match="sinusoidal: 'z' cannot be encoded"):
        FeatureConfig(sinusoidal=["z"])
    with pytest.raises(ConfigError, match="uv_scale: must be a positive finite number"):
        FeatureConfig(uv_scale=0.0)
    with pytest.raises(ConfigError, match="features: duplicate entries"):
        FeatureConfig(features=["x", "x"])
    with pytest.raises(ConfigError, match="unknown config key 'xy_scales'"):
        from_dict(FeatureConfig, {"xy_scales": 1.0})
    assert from_dict(FeatureConfig, {"features": ["eta", "phi"], "z_scale": 3000}).z_scale == 3000.0


def test_phi_sort_order_is_ascending_and_stable() -> None:
    angles = np.array([0.5, -3.0, 0.5, 3.1, -0.2, 0.5])
    radii = np.array([30.0, 70.0, 120.0, 30.0, 170.0, 70.0])
    hits = pd.DataFrame({"x": radii * np.cos(angles), "y": radii * np.sin(angles), "z": 0.0})
    order = phi_sort_order(hits)
    assert order.dtype == np.int64
    phi = np.arctan2(hits["y"], hits["x"]).to_numpy()
    assert np.all(np.diff(phi[order]) >= 0)
    ties = [i for i in order if np.isclose(phi[i], np.arctan2(np.sin(0.5), np.cos(0.5)))]
    assert list(order).index(0) < list(order).index(2) and [0, 2, 5] == sorted(ties)
    assert list(order[:2]) == [1, 4] and order[-1] == 3


def test_features_without_triplets_are_shared_from_a_config_with_them(rng: np.random.Generator) -> None:
    hits = rng.uniform(-500, 500, size=(300, 3))
    plain = FeatureConfig(sinusoidal=["eta", "phi"], r_scale=100.0)
    with_triplets = dataclasses.replace(plain, triplets=TripletConfig())
    source = hit_features(hits, with_triplets)
    shared = shared_feature_columns(source, with_triplets, plain)
    assert shared is not None and shared.flags.c_contiguous
    np.testing.assert_array_equal(shared, hit_features(hits, plain))
    assert shared_feature_columns(source, with_triplets, dataclasses.replace(plain, r_scale=1000.0)) is None
    assert shared_feature_columns(source, with_triplets, with_triplets) is None
    assert shared_feature_columns(hit_features(hits, plain), plain, with_triplets) is None


def test_sinusoidal_pairs_by_double_angles_match_direct_evaluation(rng: np.random.Generator) -> None:
    values = np.concatenate([rng.uniform(-1, 1, 1000), [-1.0, -0.5, 0.0, 0.25, 1.0]])
    frequencies = 12
    angles = math.pi * values[:, None] * 2.0 ** np.arange(frequencies)[None, :]
    direct = np.stack([np.sin(angles), np.cos(angles)], axis=-1).reshape(len(values), -1)
    np.testing.assert_allclose(sinusoidal_pairs(values, frequencies), direct, rtol=0, atol=1e-12)
