"""TrackML events: read and write `eventNNNNNNNNN-<part>.csv[.gz]`, pixel selection, derived quantities.

Parts are read with the official column order and dtypes (see `trackml_schema`) and checked: every
problem raises `TrackMLFormatError` naming the file, the column and how many rows are affected. The
particles file may lack `particle_type` (the Kaggle release has none); the column is then absent
from the DataFrame rather than invented, and `write_event` writes it only when present.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from trackrt.data.particle_ids import PARTICLE_ID_FIELDS, decode_particle_id, encode_particle_id
from trackrt.data.trackml_csv import check_unique_key, coerce_part, read_part_csv
from trackrt.data.trackml_schema import DTYPES, PARTS, TrackMLFormatError
from trackrt.data.trackml_weights import order_weight_matrix, pt_weight, trackml_weights

__all__ = [
    "DTYPES",
    "PARTICLE_ID_FIELDS",
    "PARTS",
    "PIXEL_VOLUMES",
    "Event",
    "TrackMLFormatError",
    "decode_particle_id",
    "encode_particle_id",
    "hit_cylindrical",
    "iter_events",
    "list_event_prefixes",
    "order_weight_matrix",
    "particle_kinematics",
    "pt_weight",
    "read_event",
    "select_pixel",
    "trackml_weights",
    "write_event",
]

PIXEL_VOLUMES: tuple[int, ...] = (7, 8, 9)
DEFAULT_PARTS: tuple[str, ...] = ("hits", "particles", "truth")
_PART_FILE = re.compile(r"^(event(\d+))-(hits|cells|particles|truth)\.csv(\.gz)?$")
_PREFIX_NAME = re.compile(r"^event(\d+)$")


@dataclasses.dataclass
class Event:
    """One TrackML event; parts that were not read are None."""

    event_id: int
    hits: pd.DataFrame
    particles: pd.DataFrame | None = None
    truth: pd.DataFrame | None = None
    cells: pd.DataFrame | None = None


def read_event(prefix: str | Path, parts: Iterable[str] = DEFAULT_PARTS, pixel_only: bool = False) -> Event:
    """Read the event at `prefix` (`DIR/event000000001`), finding `.csv` or `.csv.gz` files.

    `hits` is always read. Truth must cover exactly the hit ids, cells refer to known hits and
    truth particle ids (except 0 = noise) must be in particles. `pixel_only` applies `select_pixel`.
    """
    prefix = Path(prefix)
    event_id = _event_id_of(prefix)
    wanted = _normalise_parts(parts)
    frames = {part: read_part_csv(part_path(prefix, part), part) for part in wanted}
    _check_consistency(prefix, frames)
    event = Event(
        event_id=event_id,
        hits=frames["hits"],
        particles=frames.get("particles"),
        truth=frames.get("truth"),
        cells=frames.get("cells"),
    )
    return select_pixel(event) if pixel_only else event


def list_event_prefixes(directory: str | Path) -> list[Path]:
    """Prefixes (`DIR/eventNNNNNNNNN`) of the events in `directory`, sorted by event id."""
    directory = Path(directory)
    if not directory.is_dir():
        raise NotADirectoryError(f"{directory}: not a directory of TrackML events")
    prefixes: dict[int, str] = {}
    for entry in directory.iterdir():
        match = _PART_FILE.match(entry.name)
        if match:
            prefixes[int(match.group(2))] = match.group(1)
    return [directory / prefixes[event_id] for event_id in sorted(prefixes)]


def iter_events(
    directory: str | Path, parts: Iterable[str] = DEFAULT_PARTS, pixel_only: bool = False
) -> Iterator[Event]:
    """Read the events of `directory` one at a time, in event-id order."""
    wanted = _normalise_parts(parts)
    for prefix in list_event_prefixes(directory):
        yield read_event(prefix, wanted, pixel_only=pixel_only)


def write_event(directory: str | Path, event: Event, compress: bool = True) -> list[Path]:
    """Write every part of `event` that is not None as `eventNNNNNNNNN-<part>.csv[.gz]`.

    Only the official columns are written, in the official order and dtypes (derived columns are
    dropped); `particle_type` only when present. Returns the written paths.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    suffix = ".csv.gz" if compress else ".csv"
    written = []
    for part in PARTS:
        frame = getattr(event, part)
        if frame is None:
            continue
        path = directory / f"event{event.event_id:09d}-{part}{suffix}"
        official = [c for c in DTYPES[part] if c in frame.columns]
        typed = coerce_part(frame[official].reset_index(drop=True), part, path)
        check_unique_key(typed, part, path)
        compression = {"method": "gzip", "compresslevel": 6, "mtime": 0} if compress else None
        typed.to_csv(path, index=False, compression=compression)
        written.append(path)
    return written


def part_path(prefix: Path, part: str) -> Path:
    """The one existing file for `part` of the event at `prefix`; refuses missing or ambiguous parts."""
    candidates = [prefix.parent / f"{prefix.name}-{part}{ext}" for ext in (".csv", ".csv.gz")]
    existing = [c for c in candidates if c.is_file()]
    if not existing:
        raise TrackMLFormatError(f"{candidates[0]}[.gz]", f"event part '{part}' is missing")
    if len(existing) > 1:
        raise TrackMLFormatError(existing[0], f"both .csv and .csv.gz exist for part '{part}'; keep one")
    return existing[0]


def select_pixel(event: Event) -> Event:
    """Keep hits in PIXEL_VOLUMES, with their truth and cells rows.

    Particles are all kept; when truth is present they gain `nhits_pixel` (int32), the number of
    the particle's truth hits in the pixel volumes, while `nhits` keeps the whole-detector count.
    """
    hits = event.hits[event.hits["volume_id"].isin(PIXEL_VOLUMES)].reset_index(drop=True)
    kept = hits["hit_id"]
    truth = _rows_of_hits(event.truth, kept)
    cells = _rows_of_hits(event.cells, kept)
    particles = event.particles
    if particles is not None and truth is not None:
        counts = truth.loc[truth["particle_id"] != 0, "particle_id"].value_counts()
        nhits_pixel = particles["particle_id"].map(counts).fillna(0).astype(np.int32)
        particles = particles.assign(nhits_pixel=nhits_pixel)
    return dataclasses.replace(event, hits=hits, truth=truth, cells=cells, particles=particles)


def hit_cylindrical(hits: pd.DataFrame) -> pd.DataFrame:
    """Copy of `hits` with r = √(x²+y²), phi = atan2(y, x) and eta = asinh(z / r) (float64)."""
    x, y, z = (hits[c].to_numpy(np.float64) for c in ("x", "y", "z"))
    r = np.hypot(x, y)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(z / r)
    return hits.assign(r=r, phi=np.arctan2(y, x), eta=eta)


def particle_kinematics(particles: pd.DataFrame) -> pd.DataFrame:
    """Copy of `particles` with pt, p, eta = asinh(pz / pt) and phi = atan2(py, px) (float64)."""
    px, py, pz = (particles[c].to_numpy(np.float64) for c in ("px", "py", "pz"))
    pt = np.hypot(px, py)
    with np.errstate(divide="ignore", invalid="ignore"):
        eta = np.arcsinh(pz / pt)
    return particles.assign(pt=pt, p=np.hypot(pt, pz), eta=eta, phi=np.arctan2(py, px))


def _rows_of_hits(frame: pd.DataFrame | None, hit_ids: pd.Series) -> pd.DataFrame | None:
    """Rows of `frame` whose hit_id is in `hit_ids` (None stays None)."""
    if frame is None:
        return None
    return frame[frame["hit_id"].isin(hit_ids)].reset_index(drop=True)


def _normalise_parts(parts: Iterable[str]) -> tuple[str, ...]:
    """Requested parts in file order, always including hits; refuses unknown names."""
    requested = set(parts) if not isinstance(parts, str) else {parts}
    unknown = requested - set(PARTS)
    if unknown:
        raise ValueError(f"unknown TrackML event parts {sorted(unknown)}; choose from {list(PARTS)}")
    return tuple(p for p in PARTS if p in requested or p == "hits")


def _event_id_of(prefix: Path) -> int:
    """Event id from a prefix named `eventNNNNNNNNN`."""
    match = _PREFIX_NAME.match(prefix.name)
    if match is None:
        raise TrackMLFormatError(prefix, "event prefix must be named 'event' followed by digits")
    return int(match.group(1))


def _check_consistency(prefix: Path, frames: dict[str, pd.DataFrame]) -> None:
    """Cross-part checks: truth rows ↔ hits one to one, cells on known hits, truth particles known."""
    hit_ids = frames["hits"]["hit_id"]
    truth = frames.get("truth")
    if truth is not None:
        path = part_path(prefix, "truth")
        unknown = ~truth["hit_id"].isin(hit_ids)
        if unknown.any():
            raise TrackMLFormatError(
                path, "truth rows whose hit_id is not in hits", "hit_id", int(unknown.sum())
            )
        uncovered = ~hit_ids.isin(truth["hit_id"])
        if uncovered.any():
            raise TrackMLFormatError(path, "hits without a truth row", "hit_id", int(uncovered.sum()))
        particles = frames.get("particles")
        if particles is not None:
            orphan = (truth["particle_id"] != 0) & ~truth["particle_id"].isin(particles["particle_id"])
            if orphan.any():
                raise TrackMLFormatError(
                    path, "truth rows whose particle_id is not in particles", "particle_id", int(orphan.sum())
                )
    cells = frames.get("cells")
    if cells is not None:
        unknown = ~cells["hit_id"].isin(hit_ids)
        if unknown.any():
            raise TrackMLFormatError(
                part_path(prefix, "cells"), "cells whose hit_id is not in hits", "hit_id", int(unknown.sum())
            )
