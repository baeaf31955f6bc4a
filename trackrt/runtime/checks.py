"""Per-event input checks: every problem becomes an `EventError` record naming the event and check."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd

REQUIRED_COLUMNS: tuple[str, ...] = ("hit_id", "x", "y", "z")
HitsInput = pd.DataFrame | Mapping[str, Any] | np.ndarray


@dataclass(frozen=True)
class CheckConfig:
    """Limits for the input checks; hits beyond the pixel envelope (r, |z| in mm) are refused."""

    max_r_mm: float = 200.0
    max_abs_z_mm: float = 1600.0
    max_hits: int | None = None


@dataclass(frozen=True)
class EventError:
    """Why one event produced no output: the stage, the check, how many rows, and a readable message."""

    event_id: int | None
    check: str
    message: str
    bad_rows: int | None = None
    stage: str = "input_check"

    def to_record(self) -> dict[str, Any]:
        """A JSON-serialisable record (one line of errors.jsonl)."""
        return asdict(self)


class InputCheckError(ValueError):
    """An event failed one or more input checks; `errors` holds one record per failed check."""

    def __init__(self, errors: list[EventError]):
        self.errors = errors
        self.event_id = errors[0].event_id if errors else None
        where = f"event {self.event_id}" if self.event_id is not None else "event"
        super().__init__(f"{where}: " + "; ".join(f"{e.check}: {e.message}" for e in errors))


def as_hits_frame(hits: HitsInput) -> pd.DataFrame:
    """A DataFrame from TrackML-style hits: a DataFrame, a mapping of columns, or an [N, 3] x-y-z array.

    An [N, 3] array gets hit ids 1..N.
    """
    if isinstance(hits, pd.DataFrame):
        return hits
    if isinstance(hits, np.ndarray):
        if hits.ndim != 2 or hits.shape[1] != 3:
            raise ValueError(f"hits: expected an [N, 3] array of x, y, z, got shape {hits.shape}")
        return pd.DataFrame(
            {"hit_id": np.arange(1, len(hits) + 1), "x": hits[:, 0], "y": hits[:, 1], "z": hits[:, 2]}
        )
    if isinstance(hits, Mapping):
        return pd.DataFrame({name: np.asarray(values) for name, values in hits.items()})
    raise TypeError(f"hits: expected a DataFrame, a mapping of arrays or an [N, 3] array, got {type(hits)}")


def _coordinates(hits: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    return tuple(pd.to_numeric(hits[c], errors="coerce").to_numpy(np.float64) for c in ("x", "y", "z"))


def check_hits(hits: pd.DataFrame, event_id: int | None, config: CheckConfig) -> list[EventError]:
    """Every failed check of one event's hits (empty list: the event can be reconstructed)."""
    missing = [c for c in REQUIRED_COLUMNS if c not in hits.columns]
    if missing:
        return [EventError(event_id, "missing_columns", f"missing column(s) {', '.join(missing)}", len(hits))]
    if len(hits) == 0:
        return [EventError(event_id, "empty_event", "the event has no hits", 0)]
    errors: list[EventError] = []
    x, y, z = _coordinates(hits)
    finite = np.isfinite(x) & np.isfinite(y) & np.isfinite(z)
    if not finite.all():
        bad = int(np.count_nonzero(~finite))
        errors.append(EventError(event_id, "non_finite", f"{bad} hit(s) with NaN or infinite x, y or z", bad))
    hit_ids = pd.to_numeric(hits["hit_id"], errors="coerce")
    not_integer = hit_ids.isna() | (hit_ids != np.floor(hit_ids))
    if not_integer.any():
        bad = int(not_integer.sum())
        errors.append(EventError(event_id, "invalid_hit_ids", f"{bad} hit id(s) are not integers", bad))
    duplicated = hits["hit_id"].duplicated(keep=False)
    if duplicated.any():
        bad = int(duplicated.sum())
        distinct = hits.loc[duplicated, "hit_id"].nunique()
        errors.append(
            EventError(event_id, "duplicate_hit_ids", f"{bad} hits share {distinct} hit id(s)", bad)
        )
    r = np.hypot(x, y)
    outside = finite & ((r > config.max_r_mm) | (np.abs(z) > config.max_abs_z_mm))
    if outside.any():
        bad = int(np.count_nonzero(outside))
        errors.append(
            EventError(
                event_id,
                "outside_detector",
                f"{bad} hit(s) beyond r = {config.max_r_mm:g} mm or |z| = {config.max_abs_z_mm:g} mm",
                bad,
            )
        )
    on_axis = finite & (r == 0.0)
    if on_axis.any():
        bad = int(np.count_nonzero(on_axis))
        errors.append(EventError(event_id, "on_beam_axis", f"{bad} hit(s) at x = y = 0", bad))
    if config.max_hits is not None and len(hits) > config.max_hits:
        excess = len(hits) - config.max_hits
        errors.append(
            EventError(
                event_id,
                "too_many_hits",
                f"{len(hits)} hits; the model supports at most {config.max_hits}",
                excess,
            )
        )
    return errors


def validate_hits(hits: HitsInput, event_id: int | None, config: CheckConfig) -> pd.DataFrame:
    """The hits as a DataFrame, or InputCheckError listing every failed check."""
    try:
        frame = as_hits_frame(hits)
    except (TypeError, ValueError) as exc:
        raise InputCheckError([EventError(event_id, "invalid_input", str(exc))]) from None
    errors = check_hits(frame, event_id, config)
    if errors:
        raise InputCheckError(errors)
    return frame
