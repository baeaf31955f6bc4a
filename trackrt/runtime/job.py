"""The main job: reconstruct every event of a TrackML directory and write submissions, parameters, logs.

Every input event ends with outputs (`eventNNNNNNNNN-submission.csv`, `eventNNNNNNNNN-tracks.<fmt>`,
a line in `timings.jsonl`) or with one line per problem in `errors.jsonl`; none is dropped silently.
Events are read and reconstructed on a thread pool sharing one `Tracker`; files are written by the
calling thread in event order.
"""

from __future__ import annotations

import json
import math
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
import pandas as pd
from tqdm import tqdm

from trackrt.data.trackml import TrackMLFormatError, list_event_prefixes, read_event
from trackrt.metrics import combine_metrics
from trackrt.runtime.chain import TIMING_STAGES, ReconstructionResult, ordered_map
from trackrt.runtime.checks import CheckConfig, EventError
from trackrt.runtime.helix_fit import DEFAULT_FIELD_T
from trackrt.runtime.tracker import Tracker

ParameterFormat = Literal["csv", "parquet"]
TIMINGS_FILE = "timings.jsonl"
ERRORS_FILE = "errors.jsonl"
METRICS_FILE = "metrics.json"
SUMMARY_FILE = "run.json"


@dataclass(frozen=True)
class RunConfig:
    """What `trackrt run` does: which artifact, events, backend and outputs."""

    artifact_dir: Path
    events_dir: Path
    out_dir: Path
    backend: str = "auto"
    device: str = "cpu"
    workers: int = 1
    threads: int | None = None
    parameter_format: ParameterFormat = "csv"
    pixel_only: bool = True
    pt_min: float = 1.0
    field_t: float = DEFAULT_FIELD_T
    checks: CheckConfig = field(default_factory=CheckConfig)
    warmup: bool = True
    checkpoints: dict[str, str] = field(default_factory=dict)
    engine_dir: Path | None = None

    def intra_op_threads(self) -> int | None:
        """Threads per graph: as given, else the cores shared out between workers (None: runtime default)."""
        if self.threads is not None or self.workers <= 1:
            return self.threads
        return max(1, (os.cpu_count() or 1) // self.workers)


@dataclass
class EventOutcome:
    """What happened to one input event."""

    event_id: int | None
    source: Path
    result: ReconstructionResult | None = None
    errors: list[EventError] = field(default_factory=list)
    metrics: Any = None
    read_ms: float = 0.0
    num_input_hits: int = 0


@dataclass
class RunSummary:
    """Counts, mean stage timings and (with truth) the combined metrics of a run."""

    events: int
    failed: int
    mean_timings_ms: dict[str, float]
    metrics: Any
    backend: dict[str, Any]
    elapsed_s: float

    @property
    def ok(self) -> bool:
        return self.failed == 0


def _event_id(prefix: Path) -> int | None:
    digits = prefix.name.removeprefix("event")
    return int(digits) if digits.isdigit() else None


def _has_part(prefix: Path, part: str) -> bool:
    return any((prefix.parent / f"{prefix.name}-{part}{ext}").is_file() for ext in (".csv", ".csv.gz"))


def _evaluate(result: ReconstructionResult, event: Any, pt_min: float) -> Any:
    from trackrt.metrics import evaluate_tracks

    return evaluate_tracks(
        result.tracks,
        event.truth,
        event.particles,
        pt_min=pt_min,
        track_scores=result.track_scores,
        hits=event.hits,
    )


def process_event(tracker: Tracker, prefix: Path, config: RunConfig) -> EventOutcome:
    """Read, check, reconstruct and (with truth) evaluate one event; failures become error records."""
    outcome = EventOutcome(event_id=_event_id(prefix), source=prefix)
    with_truth = _has_part(prefix, "truth") and _has_part(prefix, "particles")
    parts = ("hits", "particles", "truth") if with_truth else ("hits",)
    start = time.perf_counter()
    try:
        event = read_event(prefix, parts, pixel_only=config.pixel_only)
    except TrackMLFormatError as exc:
        outcome.errors.append(EventError(outcome.event_id, "read_failed", str(exc), exc.rows, stage="read"))
        return outcome
    except Exception as exc:
        message = f"{type(exc).__name__}: {exc}"
        outcome.errors.append(EventError(outcome.event_id, "read_failed", message, stage="read"))
        return outcome
    outcome.read_ms = (time.perf_counter() - start) * 1000.0
    outcome.num_input_hits = len(event.hits)
    reconstructed = tracker.chain.try_run(event.hits, event.event_id)
    if isinstance(reconstructed, list):
        outcome.errors.extend(reconstructed)
        return outcome
    outcome.result = reconstructed
    if with_truth:
        try:
            outcome.metrics = _evaluate(reconstructed, event, config.pt_min)
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            outcome.errors.append(EventError(event.event_id, "metrics_failed", message, stage="metrics"))
    return outcome


class OutputWriter:
    """Writes per-event files and appends to the JSONL logs of one output directory."""

    def __init__(self, out_dir: Path, parameter_format: ParameterFormat):
        self.out_dir = out_dir
        self.parameter_format = parameter_format
        out_dir.mkdir(parents=True, exist_ok=True)
        self._timings = (out_dir / TIMINGS_FILE).open("w")
        self._errors = (out_dir / ERRORS_FILE).open("w")

    def write(self, outcome: EventOutcome) -> None:
        """Outputs of a reconstructed event, and a line per error."""
        for error in outcome.errors:
            self._errors.write(json.dumps({**error.to_record(), "source": str(outcome.source)}) + "\n")
        self._errors.flush()
        result = outcome.result
        if result is None:
            return
        name = f"event{result.event_id:09d}" if result.event_id is not None else outcome.source.name
        result.submission().to_csv(self.out_dir / f"{name}-submission.csv", index=False)
        parameters = result.parameters if result.parameters is not None else pd.DataFrame()
        parameters = parameters.assign(event_id=result.event_id)
        parameters = parameters[["event_id", *[c for c in parameters.columns if c != "event_id"]]]
        if self.parameter_format == "parquet":
            parameters.to_parquet(self.out_dir / f"{name}-tracks.parquet", index=False)
        else:
            parameters.to_csv(self.out_dir / f"{name}-tracks.csv", index=False)
        record = {
            "event_id": result.event_id,
            "num_hits": outcome.num_input_hits,
            "num_filtered_hits": result.num_filtered_hits,
            "num_queries": result.num_queries,
            "num_tracks": result.num_tracks,
            "read_ms": outcome.read_ms,
            "timings_ms": result.timings_ms,
        }
        self._timings.write(json.dumps(record) + "\n")
        self._timings.flush()

    def close(self) -> None:
        self._timings.close()
        self._errors.close()


def _mean_timings(records: list[dict[str, float]]) -> dict[str, float]:
    if not records:
        return {}
    keys = [*TIMING_STAGES, "total"]
    return {key: float(np.mean([r.get(key, 0.0) for r in records])) for key in keys}


def run_job(
    config: RunConfig,
    progress: bool = True,
    load: Callable[..., Tracker] = Tracker.load,
) -> RunSummary:
    """Reconstruct every event of `config.events_dir` into `config.out_dir`; see the module docstring.

    Raises (before any event runs) when the artifact cannot be loaded or the directory has no events.
    """
    started = time.perf_counter()
    prefixes = list_event_prefixes(config.events_dir)
    if not prefixes:
        raise FileNotFoundError(f"{config.events_dir}: no TrackML events (eventNNNNNNNNN-hits.csv[.gz])")
    tracker = load(
        config.artifact_dir,
        backend=config.backend,
        device=config.device,
        threads=config.intra_op_threads(),
        checkpoints=config.checkpoints,
        field_t=config.field_t,
        checks=config.checks,
        engine_dir=config.engine_dir,
    )
    backend = tracker.describe()
    writer = OutputWriter(config.out_dir, config.parameter_format)
    failed = 0
    timings: list[dict[str, float]] = []
    metrics = []
    metric_event_ids: list[int | None] = []
    try:
        if config.warmup:
            tracker.warmup(num_hits=1000, repeats=1)
        outcomes = ordered_map(lambda p: process_event(tracker, p, config), prefixes, config.workers)
        with tqdm(total=len(prefixes), unit="event", disable=not progress, desc="trackrt run") as bar:
            for outcome in outcomes:
                writer.write(outcome)
                failed += bool(outcome.errors)
                if outcome.result is not None:
                    timings.append(outcome.result.timings_ms)
                if outcome.metrics is not None:
                    metrics.append(outcome.metrics)
                    metric_event_ids.append(outcome.event_id)
                bar.update(1)
                bar.set_postfix(failed=failed)
    finally:
        writer.close()
        tracker.close()
    summary = RunSummary(
        events=len(prefixes),
        failed=failed,
        mean_timings_ms=_mean_timings(timings),
        metrics=combine_metrics(metrics, _known_ids(metric_event_ids)),
        backend=backend,
        elapsed_s=time.perf_counter() - started,
    )
    _write_summary(config, summary)
    return summary


def _known_ids(event_ids: list[int | None]) -> list[int] | None:
    """The event ids when every one is known and unique (so per-event metrics can be told apart)."""
    known = [e for e in event_ids if e is not None]
    return known if len(known) == len(event_ids) and len(set(known)) == len(known) else None


def _write_summary(config: RunConfig, summary: RunSummary) -> None:
    if summary.metrics is not None:
        from trackrt.metrics import write_metrics_json

        write_metrics_json(summary.metrics, config.out_dir / METRICS_FILE)
    record = {
        "artifact": str(config.artifact_dir),
        "events_dir": str(config.events_dir),
        "backend": summary.backend,
        "workers": config.workers,
        "events": summary.events,
        "failed": summary.failed,
        "mean_timings_ms": summary.mean_timings_ms,
        "metrics": summary.metrics.summary() if summary.metrics is not None else None,
        "elapsed_s": summary.elapsed_s,
    }
    text = json.dumps(_json_ready(record), indent=2, allow_nan=False)
    (config.out_dir / SUMMARY_FILE).write_text(text + "\n")


def _json_ready(value: Any) -> Any:
    """Plain JSON values: numpy scalars unwrapped, NaN and inf as null, other objects as strings."""
    if isinstance(value, dict):
        return {str(k): _json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_ready(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)
