"""Reading and validating one TrackML CSV part file into a typed DataFrame."""

from __future__ import annotations

import zlib
from pathlib import Path

import numpy as np
import pandas as pd

from trackrt.data.trackml_schema import DTYPES, OPTIONAL_COLUMNS, UNIQUE_KEYS, TrackMLFormatError

_READ_ERRORS = (
    OSError,
    EOFError,
    zlib.error,
    UnicodeDecodeError,
    pd.errors.ParserError,
    pd.errors.EmptyDataError,
)
_FLOAT_EXACT_INT_LIMIT = 2**53


def read_part_csv(path: Path, part: str) -> pd.DataFrame:
    """Read one `.csv` / `.csv.gz` event part and return it with the official columns and dtypes."""
    try:
        frame = pd.read_csv(path, header=0, index_col=False, low_memory=False)
    except _READ_ERRORS as exc:
        raise TrackMLFormatError(path, f"cannot be read as CSV ({type(exc).__name__}: {exc})") from exc
    frame = coerce_part(frame, part, path)
    check_unique_key(frame, part, path)
    return frame


def coerce_part(frame: pd.DataFrame, part: str, path: Path) -> pd.DataFrame:
    """Check the columns of `frame` against the `part` schema and cast them to the official dtypes."""
    schema = DTYPES[part]
    optional = OPTIONAL_COLUMNS[part]
    present = [str(c) for c in frame.columns]
    missing = [c for c in schema if c not in present and c not in optional]
    if missing:
        raise TrackMLFormatError(
            path, "required column is missing", column=", ".join(missing), rows=len(frame)
        )
    unexpected = [c for c in present if c not in schema]
    if unexpected:
        raise TrackMLFormatError(
            path,
            f"unexpected column (allowed: {', '.join(schema)})",
            column=", ".join(unexpected),
            rows=len(frame),
        )
    columns = {c: _coerce_column(frame[c], schema[c], path, c) for c in schema if c in present}
    return pd.DataFrame(columns)


def _coerce_column(values: pd.Series, dtype: str, path: Path, column: str) -> pd.Series:
    """Cast one column to `dtype`, refusing non-numeric, missing, non-finite or out-of-range values."""
    if pd.api.types.is_bool_dtype(values):
        raise TrackMLFormatError(path, "boolean values, not numbers", column=column, rows=len(values))
    if not pd.api.types.is_numeric_dtype(values):
        numeric = pd.to_numeric(values.astype(object), errors="coerce")
        bad = numeric.isna() & values.notna()
        if bad.any():
            example = values[bad].iloc[0]
            raise TrackMLFormatError(
                path, f"non-numeric values such as {example!r}", column=column, rows=int(bad.sum())
            )
        values = numeric
    array = values.to_numpy()
    if np.issubdtype(array.dtype, np.floating):
        finite = np.isfinite(array)
        if not finite.all():
            raise TrackMLFormatError(
                path, "missing, NaN or infinite values", column=column, rows=int((~finite).sum())
            )
    if dtype.startswith("f"):
        return pd.Series(array.astype(dtype), name=column)
    return pd.Series(_to_integer(array, dtype, path, column), name=column)


def _to_integer(array: np.ndarray, dtype: str, path: Path, column: str) -> np.ndarray:
    """Cast a finite numeric array to integer `dtype`, refusing fractions and values out of range."""
    if np.issubdtype(array.dtype, np.floating):
        fractional = array != np.round(array)
        if fractional.any():
            raise TrackMLFormatError(
                path,
                f"non-integer values in an integer ({dtype}) column",
                column=column,
                rows=int(fractional.sum()),
            )
        inexact = np.abs(array) >= _FLOAT_EXACT_INT_LIMIT
        if inexact.any():
            raise TrackMLFormatError(
                path,
                "integers written in float notation are too large to be exact",
                column=column,
                rows=int(inexact.sum()),
            )
    info = np.iinfo(dtype)
    out_of_range = (array < info.min) | (array > info.max)
    if out_of_range.any():
        raise TrackMLFormatError(
            path,
            f"values outside the {dtype} range [{info.min}, {info.max}]",
            column=column,
            rows=int(out_of_range.sum()),
        )
    return array.astype(dtype)


def check_unique_key(frame: pd.DataFrame, part: str, path: Path) -> None:
    """Refuse repeated keys (hit_id in hits and truth, particle_id in particles)."""
    key = UNIQUE_KEYS.get(part)
    if key is None:
        return
    repeated = frame[key].duplicated(keep=False)
    if repeated.any():
        example = frame.loc[repeated, key].iloc[0]
        raise TrackMLFormatError(
            path, f"duplicate {key} values such as {example}", column=key, rows=int(repeated.sum())
        )
