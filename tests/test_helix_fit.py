"""The helix fit recovers the parameters of simulated ideal (and slightly smeared) helices."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from trackrt.runtime.helix_fit import PARAMETER_COLUMNS, fit_helices

ARC_LENGTHS_MM = np.array([32.0, 35.0, 72.0, 116.0, 120.0, 172.0])


def helix_points(
    pt: float, eta: float, phi: float, d0: float, z0: float, charge: int, field_t: float, arcs: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Points on a helix with the given perigee parameters at the given transverse arc lengths (mm)."""
    radius = pt / (0.3 * abs(field_t)) * 1000.0
    turn = -charge * np.sign(field_t)
    normal = np.array([-np.sin(phi), np.cos(phi)])
    pca = d0 * normal
    centre = pca + turn * radius * normal
    start = pca - centre
    angles = turn * arcs / radius
    cos_a, sin_a = np.cos(angles), np.sin(angles)
    x = centre[0] + cos_a * start[0] - sin_a * start[1]
    y = centre[1] + sin_a * start[0] + cos_a * start[1]
    z = z0 + arcs * np.sinh(eta)
    return x, y, z


def simulate_tracks(rng: np.random.Generator, num_tracks: int, field_t: float = 2.0, noise_mm: float = 0.0):
    truth = pd.DataFrame(
        {
            "pt": rng.uniform(0.5, 20.0, num_tracks),
            "eta": rng.uniform(-3.5, 3.5, num_tracks),
            "phi": rng.uniform(-np.pi, np.pi, num_tracks),
            "d0": rng.uniform(-2.0, 2.0, num_tracks),
            "z0": rng.normal(0.0, 50.0, num_tracks),
            "charge": rng.choice([-1, 1], num_tracks),
        }
    )
    xs, ys, zs, ids = [], [], [], []
    for track, row in truth.iterrows():
        x, y, z = helix_points(
            row.pt, row.eta, row.phi, row.d0, row.z0, int(row.charge), field_t, ARC_LENGTHS_MM
        )
        xs.append(x)
        ys.append(y)
        zs.append(z)
        ids.append(np.full(len(x), 10 * track + 7))
    x, y, z, ids = (np.concatenate(a) for a in (xs, ys, zs, ids))
    x = x + rng.normal(0.0, noise_mm, len(x))
    y = y + rng.normal(0.0, noise_mm, len(x))
    z = z + rng.normal(0.0, noise_mm, len(x))
    shuffle = rng.permutation(len(x))
    return truth, x[shuffle], y[shuffle], z[shuffle], ids[shuffle]


def test_exact_helices_are_recovered(rng):
    truth, x, y, z, ids = simulate_tracks(rng, 200)
    fitted = fit_helices(x, y, z, ids)
    assert list(fitted.columns) == list(PARAMETER_COLUMNS)
    assert fitted.track_id.tolist() == sorted(set(ids.tolist()))
    np.testing.assert_array_equal(fitted.track_id, 10 * np.arange(200) + 7)
    np.testing.assert_array_equal(fitted.num_hits, len(ARC_LENGTHS_MM))
    np.testing.assert_allclose(fitted.pt, truth.pt, rtol=1e-5)
    np.testing.assert_allclose(fitted.eta, truth.eta, atol=1e-6)
    np.testing.assert_allclose(np.angle(np.exp(1j * (fitted.phi - truth.phi))), 0.0, atol=1e-6)
    np.testing.assert_allclose(fitted.d0, truth.d0, atol=1e-5)
    np.testing.assert_allclose(fitted.z0, truth.z0, atol=1e-5)
    np.testing.assert_array_equal(fitted.charge, truth.charge)
    assert (fitted.rms_xy < 1e-6).all() and (fitted.rms_z < 1e-6).all()


def test_smeared_helices_within_resolution(rng):
    truth, x, y, z, ids = simulate_tracks(rng, 300, noise_mm=0.01)
    fitted = fit_helices(x, y, z, ids)
    low_pt = truth.pt.to_numpy() < 5.0
    rel_pt = np.abs(fitted.pt.to_numpy() / truth.pt.to_numpy() - 1.0)
    assert np.median(rel_pt[low_pt]) < 0.02
    assert np.abs(fitted.eta - truth.eta).max() < 0.01
    assert np.abs(np.angle(np.exp(1j * (fitted.phi - truth.phi)))).max() < 0.005
    assert np.abs(fitted.d0 - truth.d0).max() < 0.1
    assert np.abs(fitted.z0 - truth.z0).max() < 0.5
    np.testing.assert_array_equal(fitted.charge[low_pt], truth.charge[low_pt])
    assert 0.003 < fitted.rms_xy.median() < 0.015 and fitted.rms_xy.max() < 0.05


@pytest.mark.parametrize("field_t", [-2.0, 3.8])
def test_field_sign_and_strength(rng, field_t):
    truth, x, y, z, ids = simulate_tracks(rng, 50, field_t=field_t)
    fitted = fit_helices(x, y, z, ids, field_t=field_t)
    np.testing.assert_allclose(fitted.pt, truth.pt, rtol=1e-5)
    np.testing.assert_array_equal(fitted.charge, truth.charge)
    np.testing.assert_allclose(fitted.d0, truth.d0, atol=1e-5)


def test_short_unassigned_and_empty():
    x, y, z = helix_points(2.0, 0.5, 1.0, 0.0, 0.0, 1, 2.0, ARC_LENGTHS_MM)
    ids = np.array([0, 0, 0, 0, 5, 5])
    ids_with_noise = np.concatenate([ids, [-1, -1]])
    fitted = fit_helices(
        np.concatenate([x, [1.0, 2.0]]), np.concatenate([y, [3.0, 4.0]]), np.concatenate([z, [0, 0]]),
        ids_with_noise,
    )
    assert fitted.track_id.tolist() == [0, 5]
    assert fitted.num_hits.tolist() == [4, 2]
    assert np.isfinite(fitted.pt[0]) and np.isnan(fitted.pt[1])
    assert fitted.charge.tolist() == [1, 0]
    empty = fit_helices(np.array([]), np.array([]), np.array([]), np.array([], dtype=np.int64))
    assert list(empty.columns) == list(PARAMETER_COLUMNS) and len(empty) == 0
    with pytest.raises(ValueError, match="magnetic field"):
        fit_helices(x, y, z, ids, field_t=0.0)


def test_three_hit_track_is_exact():
    arcs = np.array([32.0, 72.0, 172.0])
    x, y, z = helix_points(1.2, -1.0, -3.0, 0.3, 12.0, -1, 2.0, arcs)
    fitted = fit_helices(x, y, z, np.zeros(3, dtype=np.int64))
    row = fitted.iloc[0]
    assert row.pt == pytest.approx(1.2, rel=1e-6)
    assert row.eta == pytest.approx(-1.0, abs=1e-6)
    assert row.phi == pytest.approx(-3.0, abs=1e-6)
    assert row.d0 == pytest.approx(0.3, abs=1e-6)
    assert row.z0 == pytest.approx(12.0, abs=1e-6)
    assert row.charge == -1
