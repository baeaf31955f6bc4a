"""particle_id bit fields and the official TrackML hit weights (checked against the real sample)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackrt.data.trackml import (
    decode_particle_id,
    encode_particle_id,
    order_weight_matrix,
    pt_weight,
    read_event,
    trackml_weights,
)


def test_decode_known_particle_id() -> None:
    # 4505867370102784 = 1 · 2^52 + 33 · 2^36 (first particle of the real sample)
    fields = decode_particle_id(pd.Series([4505867370102784, 0]))
    assert fields.columns.tolist() == ["vertex", "primary", "generation", "secondary", "process"]
    assert fields.iloc[0].tolist() == [1, 33, 0, 0, 0]
    assert fields.iloc[1].tolist() == [0, 0, 0, 0, 0]
    assert encode_particle_id(1, 33, 0, 0, 0) == 4505867370102784
    assert encode_particle_id(1, 2, 3, 4, 5) == (1 << 52) + (2 << 36) + (3 << 24) + (4 << 12) + 5


@settings(max_examples=40, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, 2047),
            st.integers(0, 65535),
            st.integers(0, 4095),
            st.integers(0, 4095),
            st.integers(0, 4095),
        ),
        min_size=1,
        max_size=20,
    )
)
def test_encode_decode_round_trip(fields: list[tuple[int, int, int, int, int]]) -> None:
    columns = np.array(fields, dtype=np.int64).T
    ids = encode_particle_id(*columns)
    assert ids.dtype == np.int64 and (ids >= 0).all()
    np.testing.assert_array_equal(decode_particle_id(ids).to_numpy().T, columns)


def test_encode_refuses_fields_that_do_not_fit() -> None:
    with pytest.raises(ValueError, match="'primary' must lie in"):
        encode_particle_id(0, 70000, 0, 0, 0)
    with pytest.raises(ValueError, match="'vertex' must lie in"):
        encode_particle_id(2048, 0, 0, 0, 0)
    with pytest.raises(ValueError, match="non-negative"):
        decode_particle_id([-1])


def test_real_sample_ids_decode_to_sensible_fields(trackml_dir: Path) -> None:
    particles = read_event(trackml_dir / "event000000001", parts=("particles",)).particles
    fields = decode_particle_id(particles["particle_id"])
    np.testing.assert_array_equal(
        encode_particle_id(*fields.to_numpy().T), particles["particle_id"].to_numpy()
    )
    assert fields["vertex"].between(1, 400).all()
    # secondaries (generation > 0) have a secondary index and a process code
    secondary = fields["generation"] > 0
    assert secondary.any() and (fields.loc[secondary, "secondary"] > 0).all()


def test_order_weight_matrix() -> None:
    matrix = order_weight_matrix()
    assert matrix.shape == (21, 20)
    assert (matrix[:4] == 0).all()
    np.testing.assert_allclose(matrix[4:].sum(axis=1), 1.0)
    # 4 hits: proposal (10, 8, 6, 5, 3, 3, 3, 5, 6) interpolated at 0, 1, 2, 3 on supports k · 3/8
    four = np.array([10.0, 6.0 - (1.0 - 0.75) / 0.375, 3.0, 6.0])
    np.testing.assert_allclose(matrix[4, :4], four / four.sum())
    np.testing.assert_allclose(matrix[9, :9], np.array([10, 8, 6, 5, 3, 3, 3, 5, 6]) / 49)


def test_pt_weight_ramp() -> None:
    np.testing.assert_allclose(
        pt_weight(np.array([0.01, 0.05, 0.3, 0.5, 1.75, 3.0, 50.0])), [0.0, 0.2, 0.2, 0.2, 0.6, 1.0, 1.0]
    )


def hand_event() -> tuple[pd.DataFrame, pd.DataFrame]:
    """Particle A: 4 hits (pT 3 GeV, shuffled in z); B: 3 hits; C: secondary, 4 hits; one noise hit."""
    a, b, c = 1 << 52, 2 << 52, (1 << 52) + (1 << 24) + (1 << 12) + 1
    particles = pd.DataFrame(
        {
            "particle_id": [a, b, c],
            "vz": [1.0, 0.0, 0.0],
            "px": [3.0, 2.0, 0.3],
            "py": [0.0, 0.0, 0.4],
            "nhits": [4, 3, 4],
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": np.arange(1, 13),
            "particle_id": [a, 0, a, a, b, b, b, a, c, c, c, c],
            "tz": [31.0, 5.0, 11.0, -39.0, 1.0, 2.0, 3.0, 21.0, 1.0, 2.0, 3.0, 4.0],
        }
    )
    return truth, particles


def test_weights_on_a_hand_built_event() -> None:
    truth, particles = hand_event()
    weights = trackml_weights(truth, particles)
    four = order_weight_matrix()[4, :4]
    # particle A: |tz - vz| = 30, 10, 40, 20 -> ranks 2, 0, 3, 1; B has 3 hits; C is a secondary
    expected = np.zeros(12)
    expected[[0, 2, 3, 7]] = four[[2, 0, 3, 1]]
    np.testing.assert_allclose(weights, expected / expected.sum())
    with_secondaries = trackml_weights(truth, particles, include_secondaries=True)
    expected[8:12] = 0.2 * four
    np.testing.assert_allclose(with_secondaries, expected / expected.sum())
    np.testing.assert_allclose(trackml_weights(truth, particles, nhits_from="truth"), weights)
    shuffled = truth.sample(frac=1.0, random_state=2)
    shuffled.index = shuffled.index * 10 + 3
    order = shuffled["hit_id"].to_numpy() - 1
    np.testing.assert_allclose(trackml_weights(shuffled, particles), weights[order])


def test_weights_refuse_truth_longer_than_nhits() -> None:
    truth, particles = hand_event()
    particles.loc[0, "nhits"] = 4
    truth.loc[1, "particle_id"] = truth.loc[0, "particle_id"]
    with pytest.raises(ValueError, match="more hits in truth than their nhits"):
        trackml_weights(truth, particles)


def test_event_without_weighted_hits_gets_zero_weights() -> None:
    truth, particles = hand_event()
    short = truth[truth["particle_id"] != truth["particle_id"].iloc[0]]
    weights = trackml_weights(short, particles, include_secondaries=False)
    assert weights.shape == (len(short),) and (weights == 0).all()


def test_weights_match_the_real_sample(trackml_dir: Path) -> None:
    event = read_event(trackml_dir / "event000000001")
    sample = event.truth["weight"].to_numpy(np.float64)
    ours = trackml_weights(event.truth, event.particles)
    assert ours.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(ours > 0, sample > 0)
    # the sample keeps 5 % of the particles of an event normalised as a whole: one common scale
    scale = sample.sum()
    nonzero = sample > 0
    np.testing.assert_allclose(ours[nonzero] * scale, sample[nonzero], rtol=1e-5)
    assert (trackml_weights(event.truth, event.particles, include_secondaries=True) > 0).sum() == 4606
