"""TrackML file schema: official column order and dtypes per event part, and the format error."""

from __future__ import annotations

from pathlib import Path

HITS_DTYPES: dict[str, str] = {
    "hit_id": "i4",
    "x": "f4",
    "y": "f4",
    "z": "f4",
    "volume_id": "i4",
    "layer_id": "i4",
    "module_id": "i4",
}
CELLS_DTYPES: dict[str, str] = {"hit_id": "i4", "ch0": "i4", "ch1": "i4", "value": "f4"}
PARTICLES_DTYPES: dict[str, str] = {
    "particle_id": "i8",
    "particle_type": "i4",
    "vx": "f4",
    "vy": "f4",
    "vz": "f4",
    "px": "f4",
    "py": "f4",
    "pz": "f4",
    "q": "i4",
    "nhits": "i4",
}
TRUTH_DTYPES: dict[str, str] = {
    "hit_id": "i4",
    "particle_id": "i8",
    "tx": "f4",
    "ty": "f4",
    "tz": "f4",
    "tpx": "f4",
    "tpy": "f4",
    "tpz": "f4",
    "weight": "f4",
}
DTYPES: dict[str, dict[str, str]] = {
    "hits": HITS_DTYPES,
    "cells": CELLS_DTYPES,
    "particles": PARTICLES_DTYPES,
    "truth": TRUTH_DTYPES,
}
PARTS: tuple[str, ...] = ("hits", "cells", "particles", "truth")

# The Kaggle release of the TrackML training set has no particle_type column; later releases do.
OPTIONAL_COLUMNS: dict[str, frozenset[str]] = {
    "hits": frozenset(),
    "cells": frozenset(),
    "particles": frozenset({"particle_type"}),
    "truth": frozenset(),
}

# Parts whose key column must be unique within the file.
UNIQUE_KEYS: dict[str, str] = {"hits": "hit_id", "particles": "particle_id", "truth": "hit_id"}


class TrackMLFormatError(ValueError):
    """A TrackML file is missing, unreadable or malformed; names the file, column and affected rows."""

    def __init__(self, path: str | Path, problem: str, column: str | None = None, rows: int | None = None):
        self.path = Path(path)
        self.column = column
        self.rows = rows
        self.problem = problem
        where = f"column '{column}'" if column is not None else "file"
        count = f" ({rows} row{'s' if rows != 1 else ''} affected)" if rows is not None else ""
        super().__init__(f"{self.path}: {where}: {problem}{count}")
