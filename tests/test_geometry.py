"""Detector geometry on the real TrackML detector file: loading, transforms, module lookup, errors."""

from __future__ import annotations

import gzip

import numpy as np
import pandas as pd
import pytest

from trackrt.data.geometry import DetectorFormatError, load_detector
from trackrt.data.geometry_index import LayerIndex


@pytest.fixture(scope="module")
def pixel(trackml_dir):
    return load_detector(trackml_dir / "detectors.csv.gz")


def test_pixel_module_counts_and_layers(pixel, trackml_dir):
    assert len(pixel) == 4004
    layers = pixel.layers()
    assert len(layers) == 18
    barrel = layers[layers["kind"] == "barrel"]
    assert barrel["volume_id"].unique().tolist() == [8]
    np.testing.assert_allclose(barrel["r_max"], [32.25, 72.25, 116.25, 172.25], atol=0.01)
    assert (layers[layers["kind"] == "disk"]["volume_id"].isin([7, 9])).all()
    everything = load_detector(trackml_dir, volumes=None)
    assert len(everything) == 18728


def test_local_global_round_trip(pixel, rng):
    modules = rng.integers(0, len(pixel), 500)
    local = rng.uniform(-5, 5, (500, 3))
    back = pixel.global_to_local(pixel.local_to_global(local, modules), modules)
    np.testing.assert_allclose(back, local, atol=1e-9)
    np.testing.assert_allclose(pixel.global_to_local(pixel.center[modules], modules), 0.0, atol=1e-9)


def test_corners_lie_on_module_edges(pixel):
    corners = pixel.corners(np.arange(10))
    local = pixel.global_to_local(corners.reshape(-1, 3), np.repeat(np.arange(10), 4))
    np.testing.assert_allclose(np.abs(local[:, 0]), 8.4, atol=1e-6)
    np.testing.assert_allclose(np.abs(local[:, 1]), 36.0, atol=1e-6)


def test_trapezoid_half_width(trackml_dir):
    full = load_detector(trackml_dir, volumes=None)
    trapezoid = np.flatnonzero(full.min_hu < full.max_hu - 1.0)[:5]
    assert trapezoid.size
    hv = full.hv[trapezoid]
    np.testing.assert_allclose(full.half_width_u(-hv, trapezoid), full.min_hu[trapezoid])
    np.testing.assert_allclose(full.half_width_u(hv, trapezoid), full.max_hu[trapezoid])
    outside = np.column_stack([full.max_hu[trapezoid] - 0.1, -hv + 0.1, np.zeros(trapezoid.size)])
    assert not full.contains_local(outside, trapezoid).any()


def test_find_modules_recovers_real_hit_modules(pixel, trackml_dir):
    hits = pd.read_csv(trackml_dir / "event000000001-hits.csv.gz")
    hits = hits[hits["volume_id"].isin([7, 8, 9])]
    expected = pixel.index_of(hits["volume_id"], hits["layer_id"], hits["module_id"])
    assert (expected >= 0).all()
    found = pixel.find_modules(hits[["x", "y", "z"]].to_numpy(), tolerance=0.01)
    assert (found == expected).mean() == 1.0
    assert (pixel.find_modules(np.array([[0.0, 0.0, 0.0], [500.0, 500.0, 0.0]])) == -1).all()


def test_index_of_unknown_module(pixel):
    found = pixel.index_of(np.array([8, 8, 5]), np.array([2, 3, 2]), np.array([1, 1, 1]))
    assert found[0] >= 0 and found[1:].tolist() == [-1, -1]


def test_layer_index_candidates_contain_centre_module(pixel):
    layer = LayerIndex.build(pixel, 8, 4)
    modules = pixel.layer_modules(8, 4)
    candidates = layer.candidates(pixel.center[modules])
    assert (candidates == modules[:, None]).any(axis=1).all()


def _write(path, frame):
    with gzip.open(path, "wt") as handle:
        frame.to_csv(handle, index=False)


def test_bad_detector_files_name_file_and_column(tmp_path, trackml_dir):
    table = pd.read_csv(trackml_dir / "detectors.csv.gz").head(20)
    _write(tmp_path / "missing.csv.gz", table.drop(columns="module_hv"))
    with pytest.raises(DetectorFormatError, match=r"missing\.csv\.gz.*module_hv"):
        load_detector(tmp_path / "missing.csv.gz", volumes=None)
    broken = table.astype({"cx": object})
    broken.loc[3, "cx"] = "abc"
    _write(tmp_path / "text.csv.gz", broken)
    with pytest.raises(DetectorFormatError, match=r"text\.csv\.gz: column 'cx': 1 rows"):
        load_detector(tmp_path / "text.csv.gz", volumes=None)
    skewed = table.copy()
    skewed["rot_xu"] = 2.0
    _write(tmp_path / "skewed.csv.gz", skewed)
    with pytest.raises(DetectorFormatError, match="orthonormal"):
        load_detector(tmp_path / "skewed.csv.gz", volumes=None)
    with pytest.raises(DetectorFormatError, match="no modules in volumes"):
        load_detector(tmp_path / "skewed.csv.gz", volumes=(99,))
    with pytest.raises(DetectorFormatError, match="does not exist"):
        load_detector(tmp_path / "nothing.csv")
