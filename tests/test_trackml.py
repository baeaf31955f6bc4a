"""TrackML reader/writer: the real sample, round trips, pixel selection, derived quantities, bad input."""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from trackrt.data.trackml import (
    DTYPES,
    PIXEL_VOLUMES,
    Event,
    TrackMLFormatError,
    hit_cylindrical,
    iter_events,
    list_event_prefixes,
    particle_kinematics,
    read_event,
    select_pixel,
    write_event,
)

ALL_PARTS = ("hits", "cells", "particles", "truth")


def small_event(event_id: int = 7) -> Event:
    """Six hits (two pixel barrel, two endcap, two strip), two particles, one noise hit."""
    hits = pd.DataFrame(
        {
            "hit_id": [1, 2, 3, 4, 5, 6],
            "x": [30.0, 70.0, 100.0, -50.0, 400.0, 10.0],
            "y": [5.0, 12.0, 20.0, 80.0, 30.0, -32.0],
            "z": [10.0, 25.0, 600.0, -700.0, 900.0, 0.5],
            "volume_id": [8, 8, 9, 7, 13, 8],
            "layer_id": [2, 4, 2, 4, 2, 2],
            "module_id": [11, 12, 13, 14, 15, 16],
        }
    )
    particles = pd.DataFrame(
        {
            "particle_id": [4503599627370496, 4503599627370497],
            "particle_type": [211, -13],
            "vx": [0.01, -0.02],
            "vy": [0.0, 0.03],
            "vz": [1.5, -2.0],
            "px": [0.9, -0.2],
            "py": [0.1, 1.1],
            "pz": [0.3, -1.0],
            "q": [1, -1],
            "nhits": [4, 1],
        }
    )
    truth = pd.DataFrame(
        {
            "hit_id": [1, 2, 3, 4, 5, 6],
            "particle_id": [
                4503599627370496,
                4503599627370496,
                4503599627370496,
                4503599627370497,
                4503599627370496,
                0,
            ],
            "tx": hits["x"],
            "ty": hits["y"],
            "tz": hits["z"],
            "tpx": [0.9, 0.9, 0.9, -0.2, 0.9, 0.0],
            "tpy": [0.1, 0.1, 0.1, 1.1, 0.1, 0.0],
            "tpz": [0.3, 0.3, 0.3, -1.0, 0.3, 0.0],
            "weight": [0.25, 0.25, 0.25, 0.0, 0.25, 0.0],
        }
    )
    cells = pd.DataFrame(
        {"hit_id": [1, 1, 2, 3, 4, 5, 6], "ch0": [1, 2, 3, 4, 5, 6, 7], "ch1": [9, 9, 8, 7, 6, 5, 4]}
    )
    cells["value"] = 0.5
    return Event(event_id=event_id, hits=hits, particles=particles, truth=truth, cells=cells)


@pytest.fixture
def event_dir(tmp_path: Path) -> Path:
    """A directory holding the small event as plain CSV files."""
    write_event(tmp_path, small_event(), compress=False)
    return tmp_path


def rewrite(path: Path, edit) -> None:
    """Load a CSV as strings, apply `edit(frame) -> frame`, write it back unchanged otherwise."""
    frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    edit(frame).to_csv(path, index=False)


def test_reads_the_real_sample_exactly(trackml_dir: Path) -> None:
    event = read_event(trackml_dir / "event000000001", parts=ALL_PARTS)
    assert event.event_id == 1
    assert (len(event.hits), len(event.particles), len(event.truth), len(event.cells)) == (
        5527,
        548,
        5527,
        18564,
    )
    for part in ALL_PARTS:
        frame = getattr(event, part)
        assert list(frame.columns) == list(DTYPES[part])
        assert {c: str(t) for c, t in frame.dtypes.items()} == {
            c: str(np.dtype(t)) for c, t in DTYPES[part].items()
        }
    assert int((event.truth["particle_id"] == 0).sum()) == 829
    raw = pd.read_csv(trackml_dir / "event000000001-hits.csv.gz")
    np.testing.assert_array_equal(event.hits["x"].to_numpy(), raw["x"].to_numpy(np.float32))
    assert event.particles["particle_id"].max() == 869214794169712640


def test_real_sample_rewrites_identically(trackml_dir: Path, tmp_path: Path) -> None:
    event = read_event(trackml_dir / "event000000001", parts=ALL_PARTS)
    paths = write_event(tmp_path, event)
    assert [p.name for p in paths] == [f"event000000001-{part}.csv.gz" for part in ALL_PARTS]
    for part in ("hits", "truth"):
        with gzip.open(trackml_dir / f"event000000001-{part}.csv.gz", "rt") as original:
            with gzip.open(tmp_path / f"event000000001-{part}.csv.gz", "rt") as rewritten:
                assert original.read().splitlines() == rewritten.read().splitlines()
    again = read_event(tmp_path / "event000000001", parts=ALL_PARTS)
    for part in ALL_PARTS:
        pd.testing.assert_frame_equal(getattr(event, part), getattr(again, part))


@pytest.mark.parametrize("compress", [False, True])
def test_round_trip_keeps_values_and_types(tmp_path: Path, compress: bool) -> None:
    event = small_event()
    paths = write_event(tmp_path, event, compress=compress)
    assert all(p.name.endswith(".csv.gz" if compress else ".csv") for p in paths)
    again = read_event(tmp_path / "event000000007", parts=ALL_PARTS)
    for part in ALL_PARTS:
        expected = getattr(event, part).astype(DTYPES[part])
        pd.testing.assert_frame_equal(getattr(again, part), expected)


def test_writer_drops_derived_columns_and_keeps_official_order(tmp_path: Path) -> None:
    event = small_event()
    event.hits = hit_cylindrical(event.hits)[["r", *reversed(list(event.hits.columns))]]
    write_event(tmp_path, event, compress=False)
    header = (tmp_path / "event000000007-hits.csv").read_text().splitlines()[0]
    assert header == ",".join(DTYPES["hits"])


def test_particles_without_particle_type_are_read_and_written_as_they_are(
    event_dir: Path, tmp_path: Path
) -> None:
    rewrite(event_dir / "event000000007-particles.csv", lambda f: f.drop(columns="particle_type"))
    event = read_event(event_dir / "event000000007")
    assert "particle_type" not in event.particles.columns
    assert list(event.particles.columns) == [c for c in DTYPES["particles"] if c != "particle_type"]
    out = tmp_path / "out"
    write_event(out, event, compress=False)
    header = (out / "event000000007-particles.csv").read_text().splitlines()[0]
    assert "particle_type" not in header


def test_parts_selection_always_reads_hits(event_dir: Path) -> None:
    event = read_event(event_dir / "event000000007", parts=("truth",))
    assert event.truth is not None and event.particles is None and event.cells is None
    assert len(event.hits) == 6
    with pytest.raises(ValueError, match="unknown TrackML event parts"):
        read_event(event_dir / "event000000007", parts=("hits", "clusters"))


def test_iter_events_is_lazy_and_sorted(tmp_path: Path) -> None:
    for event_id in (12, 3, 5):
        write_event(tmp_path, small_event(event_id), compress=event_id != 5)
    (tmp_path / "notes.txt").write_text("not an event")
    (tmp_path / "event000000012-hits.csv.gz").write_bytes(b"broken")
    assert [p.name for p in list_event_prefixes(tmp_path)] == [
        "event000000003",
        "event000000005",
        "event000000012",
    ]
    events = iter_events(tmp_path, parts=ALL_PARTS)
    assert [next(events).event_id, next(events).event_id] == [3, 5]
    with pytest.raises(TrackMLFormatError, match="event000000012-hits"):
        next(events)


def test_select_pixel_is_consistent_across_parts(trackml_dir: Path) -> None:
    event = read_event(trackml_dir / "event000000001", parts=ALL_PARTS)
    pixel = read_event(trackml_dir / "event000000001", parts=ALL_PARTS, pixel_only=True)
    in_pixel = event.hits["volume_id"].isin(PIXEL_VOLUMES)
    assert len(pixel.hits) == int(in_pixel.sum()) == 2783
    assert set(pixel.hits["volume_id"]) == set(PIXEL_VOLUMES)
    assert set(pixel.truth["hit_id"]) == set(pixel.hits["hit_id"])
    assert set(pixel.cells["hit_id"]) <= set(pixel.hits["hit_id"])
    assert len(pixel.cells) == int(event.cells["hit_id"].isin(event.hits.loc[in_pixel, "hit_id"]).sum())
    assert len(pixel.particles) == len(event.particles)
    pixel_truth = event.truth[event.truth["hit_id"].isin(event.hits.loc[in_pixel, "hit_id"])]
    counts = pixel_truth[pixel_truth["particle_id"] != 0].groupby("particle_id").size()
    expected = event.particles["particle_id"].map(counts).fillna(0).to_numpy()
    np.testing.assert_array_equal(pixel.particles["nhits_pixel"].to_numpy(), expected)
    np.testing.assert_array_equal(pixel.particles["nhits"].to_numpy(), event.particles["nhits"].to_numpy())
    assert select_pixel(pixel).hits.equals(pixel.hits)


def test_select_pixel_on_small_event() -> None:
    pixel = select_pixel(small_event())
    assert pixel.hits["hit_id"].tolist() == [1, 2, 3, 4, 6]
    assert pixel.truth["hit_id"].tolist() == [1, 2, 3, 4, 6]
    assert pixel.cells["hit_id"].tolist() == [1, 1, 2, 3, 4, 6]
    assert pixel.particles["nhits_pixel"].tolist() == [3, 1]


def test_hit_cylindrical_values() -> None:
    hits = pd.DataFrame(
        {"x": [3.0, 0.0, -1.0], "y": [4.0, 2.0, 0.0], "z": [0.0, 2.0 * np.sinh(1.5), -np.sinh(0.5)]}
    )
    out = hit_cylindrical(hits)
    np.testing.assert_allclose(out["r"], [5.0, 2.0, 1.0])
    np.testing.assert_allclose(out["phi"], [np.arctan2(4, 3), np.pi / 2, np.pi])
    np.testing.assert_allclose(out["eta"], [0.0, 1.5, -0.5], atol=1e-12)
    assert "r" not in hits.columns


def test_particle_kinematics_values() -> None:
    particles = pd.DataFrame({"px": [3.0, 0.0], "py": [4.0, -1.0], "pz": [0.0, -np.sinh(2.0)]})
    out = particle_kinematics(particles)
    np.testing.assert_allclose(out["pt"], [5.0, 1.0])
    np.testing.assert_allclose(out["p"], [5.0, np.cosh(2.0)])
    np.testing.assert_allclose(out["eta"], [0.0, -2.0], atol=1e-12)
    np.testing.assert_allclose(out["phi"], [np.arctan2(4, 3), -np.pi / 2])


# --- bad input -------------------------------------------------------------------------------------


def assert_format_error(
    excinfo: pytest.ExceptionInfo, file: str, column: str | None, rows: int | None
) -> None:
    """The error names the file, the column and the number of affected rows."""
    err = excinfo.value
    assert file in str(err.path) and file in str(err)
    assert err.column == column
    assert err.rows == rows
    if column is not None:
        assert f"'{column}'" in str(err)
    if rows is not None:
        assert f"{rows} row" in str(err)


def test_missing_part(event_dir: Path) -> None:
    (event_dir / "event000000007-particles.csv").unlink()
    with pytest.raises(TrackMLFormatError, match="missing") as excinfo:
        read_event(event_dir / "event000000007")
    assert_format_error(excinfo, "event000000007-particles.csv", None, None)


def test_csv_and_gz_of_the_same_part_are_ambiguous(event_dir: Path) -> None:
    source = event_dir / "event000000007-hits.csv"
    with source.open("rb") as plain, gzip.open(event_dir / "event000000007-hits.csv.gz", "wb") as packed:
        shutil.copyfileobj(plain, packed)
    with pytest.raises(TrackMLFormatError, match=r"both \.csv and \.csv\.gz"):
        read_event(event_dir / "event000000007")


@pytest.mark.parametrize(
    ("part", "edit", "column", "rows", "message"),
    [
        ("hits", lambda f: f.drop(columns="z"), "z", 6, "required column is missing"),
        ("truth", lambda f: f.assign(extra="1"), "extra", 6, "unexpected column"),
        ("hits", lambda f: f.assign(x=["1.0", "abc", "2", "x", "3", "4"]), "x", 2, "non-numeric"),
        ("hits", lambda f: f.assign(y=["1", "nan", "2", "", "3", "inf"]), "y", 3, "NaN or infinite"),
        ("particles", lambda f: f.assign(vz=["-inf", "0"]), "vz", 1, "NaN or infinite"),
        (
            "hits",
            lambda f: f.assign(volume_id=["8", "8.5", "9", "7", "13", "8"]),
            "volume_id",
            1,
            "non-integer",
        ),
        ("hits", lambda f: f.assign(layer_id=["True", "False"] * 3), "layer_id", 6, "boolean"),
        (
            "hits",
            lambda f: f.assign(module_id=["1", "2", "3", "4", "5", "3000000000"]),
            "module_id",
            1,
            "range",
        ),
        ("hits", lambda f: f.assign(hit_id=["1", "2", "3", "4", "5", "5"]), "hit_id", 2, "duplicate hit_id"),
        ("particles", lambda f: f.assign(particle_id=["5", "5"]), "particle_id", 2, "duplicate particle_id"),
        ("truth", lambda f: f.iloc[:-1], "hit_id", 1, "hits without a truth row"),
        ("truth", lambda f: f.assign(hit_id=["1", "2", "3", "4", "50", "60"]), "hit_id", 2, "not in hits"),
        (
            "truth",
            lambda f: f.assign(particle_id=f["particle_id"].replace("4503599627370497", "99")),
            "particle_id",
            1,
            "not in particles",
        ),
        (
            "cells",
            lambda f: f.assign(hit_id=["1", "1", "2", "3", "4", "77", "78"]),
            "hit_id",
            2,
            "not in hits",
        ),
    ],
)
def test_malformed_columns_are_reported(event_dir: Path, part, edit, column, rows, message) -> None:
    rewrite(event_dir / f"event000000007-{part}.csv", edit)
    with pytest.raises(TrackMLFormatError, match=message) as excinfo:
        read_event(event_dir / "event000000007", parts=ALL_PARTS)
    assert_format_error(excinfo, f"event000000007-{part}.csv", column, rows)


@pytest.mark.parametrize(
    "content",
    [
        b"this is not gzip at all",
        gzip.compress(b"hit_id,x,y,z,volume_id,layer_id,module_id\n1,2,3,4,8,2,1\n" * 50)[:60],
    ],
    ids=["not-gzip", "truncated-gzip"],
)
def test_unreadable_gzip(event_dir: Path, content: bytes) -> None:
    (event_dir / "event000000007-hits.csv").unlink()
    (event_dir / "event000000007-hits.csv.gz").write_bytes(content)
    with pytest.raises(TrackMLFormatError, match="cannot be read") as excinfo:
        read_event(event_dir / "event000000007")
    assert_format_error(excinfo, "event000000007-hits.csv.gz", None, None)


def test_empty_file(event_dir: Path) -> None:
    (event_dir / "event000000007-truth.csv").write_text("")
    with pytest.raises(TrackMLFormatError, match="cannot be read"):
        read_event(event_dir / "event000000007")


def test_header_only_file_is_an_empty_part(event_dir: Path) -> None:
    (event_dir / "event000000007-cells.csv").write_text("hit_id,ch0,ch1,value\n")
    event = read_event(event_dir / "event000000007", parts=ALL_PARTS)
    assert len(event.cells) == 0 and str(event.cells["value"].dtype) == "float32"


def test_badly_named_prefix(tmp_path: Path) -> None:
    with pytest.raises(TrackMLFormatError, match="event' followed by digits"):
        read_event(tmp_path / "run1")


def test_writer_refuses_bad_frames(tmp_path: Path) -> None:
    event = small_event()
    event.truth = event.truth.drop(columns="weight")
    with pytest.raises(TrackMLFormatError, match="required column is missing") as excinfo:
        write_event(tmp_path, event)
    assert_format_error(excinfo, "event000000007-truth.csv.gz", "weight", 6)
    event = small_event()
    event.hits.loc[2, "z"] = np.nan
    with pytest.raises(TrackMLFormatError, match="NaN") as excinfo:
        write_event(tmp_path, event)
    assert_format_error(excinfo, "event000000007-hits.csv.gz", "z", 1)


@settings(max_examples=25, deadline=None)
@given(
    coordinates=st.lists(
        st.tuples(*[st.floats(-3000, 3000, width=32, allow_subnormal=False)] * 3), min_size=1, max_size=30
    ),
    compress=st.booleans(),
)
def test_float32_values_survive_a_round_trip(coordinates, compress: bool) -> None:
    x, y, z = (np.array(c, dtype=np.float32) for c in zip(*coordinates, strict=True))
    n = len(x)
    hits = pd.DataFrame(
        {"hit_id": np.arange(1, n + 1), "x": x, "y": y, "z": z, "volume_id": 8, "layer_id": 2, "module_id": 1}
    )
    with tempfile.TemporaryDirectory() as directory:
        write_event(directory, Event(event_id=3, hits=hits), compress=compress)
        again = read_event(Path(directory) / "event000000003", parts=("hits",))
    pd.testing.assert_frame_equal(again.hits, hits.astype(DTYPES["hits"]))


def test_compressed_output_is_reproducible(tmp_path: Path) -> None:
    first = write_event(tmp_path / "a", small_event())
    second = write_event(tmp_path / "b", small_event())
    assert [p.read_bytes() for p in first] == [p.read_bytes() for p in second]
