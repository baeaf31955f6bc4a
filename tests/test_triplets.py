"""Beamline-triplet hit features and their helix columns: helices from anywhere along the beam, soft tracks,
noise, edge cases."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import FeatureConfig, hit_features, shared_feature_columns
from trackrt.data.samples import cache_key, sample_config
from trackrt.data.triplets import (
    CHI2_CAP,
    HELIX_FEATURES,
    TRIPLET_FEATURES,
    TripletConfig,
    triplet_features,
    triplet_helix_features,
)

LAYER_RADII = np.array([32.0, 72.0, 116.0, 172.0])  # mm, the pixel barrel


def helix_hits(pt: float, phi0: float, cot_theta: float, vz: float, charge: int = 1) -> np.ndarray:
    """[4, 3] hits of a track from (0, 0, vz) on the barrel layers in a 2 T field."""
    radius = pt / (0.3 * 2.0) * 1000.0  # mm
    phi = phi0 - charge * np.arcsin(LAYER_RADII / (2.0 * radius))
    # transverse arc length to radius r on a circle through the origin
    arc = 2.0 * radius * np.arcsin(LAYER_RADII / (2.0 * radius))
    return np.stack([LAYER_RADII * np.cos(phi), LAYER_RADII * np.sin(phi), vz + cot_theta * arc], axis=1)


def features_of(hits: np.ndarray, config: TripletConfig | None = None) -> np.ndarray:
    return triplet_features(hits[:, 0], hits[:, 1], hits[:, 2], config or TripletConfig())


def noise_hits(rng: np.random.Generator, count: int) -> np.ndarray:
    """Hits scattered over the barrel layers at random φ and z."""
    r = rng.choice(LAYER_RADII, count)
    phi = rng.uniform(-math.pi, math.pi, count)
    return np.stack([r * np.cos(phi), r * np.sin(phi), rng.uniform(-400, 400, count)], axis=1)


@pytest.mark.parametrize("vz", [-180.0, 0.0, 120.0])
def test_stiff_track_hits_form_agreeing_triplets_wherever_the_vertex(vz: float) -> None:
    hits = helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=vz)
    features = features_of(hits)
    assert np.all(features[:, 0] < 0.05)  # log(1 + χ²) near 0: the partners agree
    assert np.all(features[:, 1] == pytest.approx(math.log1p(3)))  # every other hit is compatible
    np.testing.assert_allclose(features[:, 3] * 250.0, vz, atol=1.0)  # the triplet points back to vz
    # curvature in units of κ(0.9 GeV): 0.9 / 5 for a 5 GeV track, sign fixed by the charge
    np.testing.assert_allclose(features[:, 2], -0.9 / 5.0, atol=0.02)
    flipped = features_of(helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=vz, charge=-1))
    np.testing.assert_allclose(flipped[:, 2], 0.9 / 5.0, atol=0.02)


def test_soft_track_and_lone_hits_find_no_triplet() -> None:
    soft = helix_hits(pt=0.4, phi0=1.0, cot_theta=0.2, vz=10.0)  # curls more than a 0.9 GeV track
    lone = np.array([[0.0, 50.0, 0.0], [-40.0, -20.0, 300.0]])
    features = features_of(np.concatenate([soft, lone]))
    assert np.all(features[:, 0] == pytest.approx(math.log1p(CHI2_CAP)))
    assert np.all(features[:, 1:] == 0.0)


def test_hits_on_both_sides_of_the_beam_are_no_track() -> None:
    """A straight line through the beam crossing it between the hits: no track from the beam does that."""
    features = features_of(np.array([[0.0, 50.0, 0.0], [0.0, -100.0, 0.0], [0.0, 150.0, 0.0]]))
    assert np.all(features[:, 0] == pytest.approx(math.log1p(CHI2_CAP)))
    assert features[0, 1] == pytest.approx(math.log1p(1))  # only the hit on its own side


def test_far_displaced_track_is_not_compatible() -> None:
    features = features_of(helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=400.0))  # beyond z0_max
    assert np.all(features[:, 1] == 0.0)
    wider = features_of(helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=400.0), TripletConfig(z0_max=500.0))
    assert np.all(wider[:, 0] < 0.05)


def test_track_stands_out_of_noise_and_features_follow_input_order(rng: np.random.Generator) -> None:
    track = helix_hits(pt=2.0, phi0=-2.0, cot_theta=-0.5, vz=-40.0)
    hits = np.concatenate([track, noise_hits(rng, 300)])
    features = features_of(hits)
    assert np.all(features[:4, 0] < 0.1)
    assert np.median(features[4:, 0]) > 1.0
    permutation = rng.permutation(len(hits))
    np.testing.assert_allclose(features_of(hits[permutation]), features[permutation])


@pytest.mark.parametrize("count", [0, 1, 2, 3])
def test_few_hits(count: int) -> None:
    features = features_of(helix_hits(pt=5.0, phi0=0.3, cot_theta=0.8, vz=0.0)[:count])
    assert features.shape == (count, len(TRIPLET_FEATURES))
    assert np.all(np.isfinite(features))
    if count == 3:
        assert np.all(features[:, 0] < 0.05)


def test_hit_features_append_triplet_columns(rng: np.random.Generator) -> None:
    hits = np.concatenate([helix_hits(pt=3.0, phi0=0.0, cot_theta=0.1, vz=5.0), noise_hits(rng, 50)])
    plain = FeatureConfig()
    config = FeatureConfig(triplets=TripletConfig())
    assert config.feature_names == plain.feature_names + list(TRIPLET_FEATURES)
    values = hit_features(hits, config)
    assert values.shape == (len(hits), config.num_features) and values.dtype == np.float32
    np.testing.assert_array_equal(values[:, : plain.num_features], hit_features(hits, plain))
    np.testing.assert_allclose(values[:, plain.num_features :], features_of(hits), rtol=1e-6, atol=1e-6)


def test_cache_key_changes_only_when_triplets_are_on() -> None:
    plain = sample_config("Pix1.0", FeatureConfig())
    again = sample_config("Pix1.0", from_dict(FeatureConfig, {"triplets": None}))
    with_triplets = sample_config("Pix1.0", FeatureConfig(triplets=TripletConfig()))
    assert cache_key(plain) == cache_key(again) != cache_key(with_triplets)
    fewer_partners = FeatureConfig(triplets=TripletConfig(partners=8))
    assert cache_key(with_triplets) != cache_key(sample_config("Pix1.0", fewer_partners))


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("partners", 0, r"triplets\.partners: must be >= 1"),
        ("pt_min", 0.0, r"triplets\.pt_min: must be a positive"),
        ("z0_tolerance", float("nan"), r"triplets\.z0_tolerance"),
        ("min_dr", -1.0, r"triplets\.min_dr: must be a finite number >= 0"),
    ],
)
def test_triplet_config_validation(key: str, value: float, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TripletConfig(**{key: value})
    with pytest.raises(ConfigError, match=r"unknown config key 'features\.triplets\.window'"):
        from_dict(FeatureConfig, {"triplets": {"window": 3}}, "features")


def reference_triplet_features(hits: np.ndarray, config: TripletConfig) -> np.ndarray:
    """The features straight from their definition, with angles and one loop per pair (slow, for small N)."""
    n = len(hits)
    phi = np.arctan2(hits[:, 1], hits[:, 0])
    order = np.argsort(phi, kind="stable")
    offsets = sorted(range(1, n), key=lambda step: min(step, n - step))
    if n - 1 > 2 * config.neighbours:
        offsets = [sign * step for step in range(1, config.neighbours + 1) for sign in (1, -1)]
    k_tol, z_tol = config.curvature_tolerance, config.z0_tolerance
    out = np.zeros((n, len(TRIPLET_FEATURES)))
    for rank, hit in enumerate(order):
        x0, y0, z0_hit = hits[hit]
        r0 = math.hypot(x0, y0)
        partners = []
        for offset in offsets:
            other = order[(rank + offset) % n]
            x1, y1, z1 = hits[other]
            r1 = math.hypot(x1, y1)
            dr, dz = r1 - r0, z1 - z0_hit
            if abs(dr) <= config.min_dr:
                continue
            z0 = z0_hit - r0 * dz / dr
            dphi = (phi[other] - phi[hit] + math.pi) % (2 * math.pi) - math.pi
            chord = math.hypot(x1 - x0, y1 - y0)
            curvature = 2 * math.sin(dphi) / chord * math.copysign(1.0, dr) / config.max_curvature
            if (
                abs(z0) < config.z0_max
                and math.hypot(chord, dz) > config.min_separation
                and abs(dphi) < math.pi / 2
                and abs(curvature) < 1
            ):
                partners.append((curvature, z0, dr))
        kept = partners[: config.partners]
        pairs = [
            (((a[0] - b[0]) / k_tol) ** 2 + ((a[1] - b[1]) / z_tol) ** 2, a, b)
            for i, a in enumerate(kept)
            for b in kept[i + 1 :]
            if abs(a[2] - b[2]) > config.min_dr
        ]
        out[hit, 1] = math.log1p(len(partners))
        out[hit, 0] = math.log1p(CHI2_CAP)
        if pairs:
            chi2, a, b = min(pairs, key=lambda pair: pair[0])
            out[hit, 0] = math.log1p(min(chi2, CHI2_CAP))
            out[hit, 2] = 0.5 * (a[0] + b[0])
            out[hit, 3] = 0.5 * (a[1] + b[1]) / config.z0_max
    return out


@pytest.mark.parametrize(
    ("noise", "config"),
    [
        (200, TripletConfig()),
        (200, TripletConfig(neighbours=6, partners=3)),
        (40, TripletConfig(neighbours=48, partners=4)),  # every other hit is searched
    ],
)
def test_compiled_features_equal_their_definition(
    rng: np.random.Generator, noise: int, config: TripletConfig
) -> None:
    tracks = [
        helix_hits(rng.uniform(0.8, 10.0), rng.uniform(-3, 3), rng.uniform(-2, 2), rng.uniform(-150, 150))
        for _ in range(12)
    ]
    hits = np.concatenate([*tracks, noise_hits(rng, noise)])
    expected = reference_triplet_features(hits, config)
    assert np.count_nonzero(expected[:, 0] < math.log1p(CHI2_CAP)) >= 24  # the tracks' triplets are found
    np.testing.assert_allclose(features_of(hits, config), expected, atol=1e-9)


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
def test_helix_columns_of_few_hits(count: int) -> None:
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


def test_runtime_runs_the_triplet_search_once_for_filter_and_tracker(
    rng: np.random.Generator, monkeypatch: pytest.MonkeyPatch
) -> None:
    import pandas as pd

    from trackrt.runtime import chain

    with_triplets = FeatureConfig(triplets=TripletConfig())
    with_helix = dataclasses.replace(with_triplets, triplet_helix=True)
    xyz = np.concatenate([helix_hits(3.0, 0.0, 0.1, 5.0), noise_hits(rng, 50)])
    hits = pd.DataFrame({"x": xyz[:, 0], "y": xyz[:, 1], "z": xyz[:, 2]})
    computed: list[FeatureConfig] = []

    def counting(frame: pd.DataFrame, config: FeatureConfig) -> np.ndarray:
        computed.append(config)
        return hit_features(frame, config)

    monkeypatch.setattr(chain, "hit_features", counting)
    work = chain.EventWork.start(hits, 1, feature_configs=(with_triplets, with_helix))
    filter_features = work.features(with_triplets)  # the filter asks first
    tracker_features = work.features(with_helix)
    assert computed == [with_helix]
    np.testing.assert_array_equal(filter_features, hit_features(work.hits, with_triplets))
    np.testing.assert_array_equal(tracker_features, hit_features(work.hits, with_helix))
    alone = chain.EventWork.start(hits, 1)  # nothing announced: each config computes its own
    alone.features(with_triplets)
    alone.features(with_helix)
    assert computed[1:] == [with_triplets, with_helix]


def test_helix_columns_need_the_triplets_and_keep_the_cache_key_when_off() -> None:
    with pytest.raises(ConfigError, match=r"triplet_helix: .* set triplets"):
        FeatureConfig(triplet_helix=True)
    with_triplets = FeatureConfig(triplets=TripletConfig())
    off = from_dict(FeatureConfig, {"triplets": {}, "triplet_helix": False})
    on = dataclasses.replace(with_triplets, triplet_helix=True)
    keys = [cache_key(sample_config("Pix1.0", config)) for config in (with_triplets, off, on)]
    assert keys[0] == keys[1] != keys[2]
