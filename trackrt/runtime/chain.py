"""The reconstruction chain: input checks, then stages (hit filter -> tracker -> track parameters).

Each stage is a callable that reads and fills one `EventWork`; stages can be swapped one by one with
`Chain.replace`. Stages hold no per-event state, so one chain serves many threads at once: the graph
runners are thread-safe (ONNX Runtime sessions allow concurrent `run`) and every event has its own
`EventWork`. `Chain.run_many` uses a thread pool for batches of events; the numpy work and the
runtime calls release the GIL for their heavy parts. Nothing is random: identical inputs give
identical outputs.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Protocol, TypeVar

import numpy as np
import pandas as pd

from trackrt.configuration import to_dict
from trackrt.data.features import (
    FeatureConfig,
    hit_features,
    phi_sort_order,
    shared_feature_columns,
    shares_feature_columns,
)
from trackrt.data.tracks import assign_hits, find_tracks_in_passes, select_seeds, sigmoid, valid_queries
from trackrt.runtime.artifact import HitFilterSettings, TrackerSettings
from trackrt.runtime.backends.base import GraphRunner
from trackrt.runtime.checks import CheckConfig, EventError, HitsInput, InputCheckError, validate_hits
from trackrt.runtime.helix_fit import DEFAULT_FIELD_T, fit_helices

TIMING_STAGES: tuple[str, ...] = (
    "checks",
    "features",
    "hit_filter",
    "encoder",
    "seeding",
    "decoder",
    "post_processing",
    "track_parameters",
)


@dataclass
class EventWork:
    """One event on its way through the chain: φ-sorted hits and what the stages found so far."""

    event_id: int | None
    hits: pd.DataFrame
    sort_order: np.ndarray
    kept: np.ndarray
    filter_scores: np.ndarray
    track_of_hit: np.ndarray
    hit_scores: np.ndarray
    track_scores: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.float32))
    num_queries: int = 0
    parameters: pd.DataFrame | None = None
    timings_ms: dict[str, float] = field(default_factory=dict)
    feature_configs: tuple[FeatureConfig, ...] = ()
    _features: dict[str, np.ndarray] = field(default_factory=dict, repr=False)

    @classmethod
    def start(
        cls, hits: pd.DataFrame, event_id: int | None, feature_configs: Sequence[FeatureConfig] = ()
    ) -> EventWork:
        """Sort the hits by φ (the order every graph expects) and start with no hits filtered out;
        `feature_configs` are those the stages will ask for."""
        order = phi_sort_order(hits)
        sorted_hits = hits.iloc[order].reset_index(drop=True)
        n = len(sorted_hits)
        return cls(
            event_id=event_id,
            hits=sorted_hits,
            sort_order=order,
            kept=np.arange(n, dtype=np.int64),
            filter_scores=np.full(n, np.nan, dtype=np.float32),
            track_of_hit=np.full(n, -1, dtype=np.int64),
            hit_scores=np.full(n, np.nan, dtype=np.float32),
            feature_configs=tuple(feature_configs),
        )

    @contextmanager
    def timed(self, stage: str) -> Iterator[None]:
        """Add the wall time of the block to `timings_ms[stage]`."""
        start = time.perf_counter()
        try:
            yield
        finally:
            elapsed = (time.perf_counter() - start) * 1000.0
            self.timings_ms[stage] = self.timings_ms.get(stage, 0.0) + elapsed

    def features(self, config: FeatureConfig) -> np.ndarray:
        """Features [N, F] of all (sorted) hits for `config`, computed once per config and event; a
        config whose columns lead another announced one's (the filter's triplets, the tracker's triplets
        and helix columns) takes them from it, so the triplet search runs once."""
        key = repr(sorted(to_dict(config).items()))
        if key not in self._features:
            source = next((c for c in self.feature_configs if shares_feature_columns(c, config)), None)
            if source is not None:
                wider = self.features(source)
                with self.timed("features"):
                    self._features[key] = shared_feature_columns(wider, source, config)
            else:
                with self.timed("features"):
                    self._features[key] = hit_features(self.hits, config)
        return self._features[key]


@dataclass(frozen=True)
class ReconstructionResult:
    """Tracks of one event: per-hit table in input order, per-track scores and parameters, timings."""

    event_id: int | None
    hits: pd.DataFrame
    track_scores: pd.DataFrame
    parameters: pd.DataFrame | None
    timings_ms: dict[str, float]
    num_filtered_hits: int
    num_queries: int

    @property
    def tracks(self) -> pd.DataFrame:
        """`[hit_id, track_id]` for every input hit, -1 where a hit is in no track (metrics contract)."""
        return self.hits[["hit_id", "track_id"]]

    @property
    def num_tracks(self) -> int:
        return len(self.track_scores)

    def submission(self, event_id: int | None = None) -> pd.DataFrame:
        """TrackML submission rows `[event_id, hit_id, track_id]` (track_id -1: unassigned)."""
        eid = self.event_id if event_id is None else event_id
        return pd.DataFrame(
            {
                "event_id": np.full(len(self.hits), -1 if eid is None else eid, dtype=np.int64),
                "hit_id": self.hits["hit_id"].to_numpy(),
                "track_id": self.hits["track_id"].to_numpy(),
            }
        )


class Stage(Protocol):
    """One step of the chain; it reads and fills the event's `EventWork`."""

    name: str

    def __call__(self, work: EventWork) -> None: ...


class HitFilterStage:
    """Keeps the hits whose filter probability reaches the artifact's threshold."""

    name = "hit_filter"

    def __init__(self, runner: GraphRunner, settings: HitFilterSettings):
        self.runner = runner
        self.settings = settings

    def __call__(self, work: EventWork) -> None:
        features = work.features(self.settings.features)
        with work.timed("hit_filter"):
            logits = self.runner.run({"hit_features": features[None]})["hit_logits"]
            probability = sigmoid(np.asarray(logits)[0]).astype(np.float32)
        work.filter_scores = probability
        work.kept = np.flatnonzero(probability >= self.settings.hit_threshold).astype(np.int64)


class TrackFindingStage:
    """Encoder -> seed selection -> decoder -> hit assignment on the hits the filter kept, once per pass
    (`TrackerSettings.passes`): each later pass on the kept hits no track of the passes before took."""

    name = "tracker"

    def __init__(self, encoder: GraphRunner, decoder: GraphRunner, settings: TrackerSettings):
        self.encoder = encoder
        self.decoder = decoder
        self.settings = settings

    def __call__(self, work: EventWork) -> None:
        features = work.features(self.settings.features)

        def find_tracks(hits: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            return self._find_tracks(work, features, work.kept[hits])

        track_of_kept, track_scores = find_tracks_in_passes(len(work.kept), self.settings.passes, find_tracks)
        work.track_of_hit[work.kept] = track_of_kept
        work.track_scores = track_scores

    def _find_tracks(
        self, work: EventWork, features: np.ndarray, hits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """One pass on `hits` (indices into the sorted hits): their track ids (-1: none) and track scores."""
        s = self.settings
        none = (np.full(len(hits), -1, dtype=np.int64), np.zeros(0, dtype=np.float32))
        with work.timed("features"):
            pass_features = np.ascontiguousarray(features[hits])[None]
        with work.timed("encoder"):
            encoded = self.encoder.run({"hit_features": pass_features}, keep_on_device={"hit_embeddings"})
        inputs = {"hit_embeddings": encoded["hit_embeddings"]}
        if s.dynamic_queries:
            with work.timed("seeding"):
                seed_logits = np.asarray(encoded["seed_logits"])[0]
                queries = select_seeds(seed_logits, s.seed_threshold, s.max_queries)
            work.num_queries += len(queries)
            if len(queries) == 0:
                return none
            inputs["query_indices"] = queries[None]
        with work.timed("decoder"):
            decoded = self.decoder.run(inputs)
        with work.timed("post_processing"):
            track_logits = np.asarray(decoded["track_logits"])[0]
            return self._assign(work, hits, track_logits, np.asarray(decoded["assignment_logits"])[0])

    def _assign(
        self, work: EventWork, hits: np.ndarray, track_logits: np.ndarray, assignment_logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Hits to tracks (shared `assign_hits`); a hit's score is its probability for its track."""
        s = self.settings
        if not s.dynamic_queries:
            work.num_queries += len(track_logits)
        valid = valid_queries(
            track_logits, assignment_logits, s.track_threshold, s.hit_threshold, s.duplicate_iou
        )
        track_of_hits, track_scores = assign_hits(
            track_logits, assignment_logits, s.track_threshold, s.hit_threshold, s.min_hits, valid=valid
        )
        assigned = track_of_hits >= 0
        if assigned.any():
            # assign_hits gives each hit to the valid query with the highest probability.
            best_logit = assignment_logits[valid].max(axis=0)
            work.hit_scores[hits[assigned]] = sigmoid(best_logit[assigned])
        return track_of_hits, track_scores


class TrackParameterStage:
    """Helix fit of every track's hits: pT, η, φ, d0, z0, charge (uniform field along z)."""

    name = "track_parameters"

    def __init__(self, field_t: float = DEFAULT_FIELD_T, min_hits: int = 3):
        self.field_t = field_t
        self.min_hits = min_hits

    def __call__(self, work: EventWork) -> None:
        with work.timed("track_parameters"):
            work.parameters = fit_helices(
                work.hits["x"].to_numpy(),
                work.hits["y"].to_numpy(),
                work.hits["z"].to_numpy(),
                work.track_of_hit,
                field_t=self.field_t,
                min_hits=self.min_hits,
            )


def _finish(work: EventWork, started: float) -> ReconstructionResult:
    """Results in the caller's hit order, with timings in a fixed key order and the total."""
    n = len(work.hits)
    inverse = np.empty(n, dtype=np.int64)
    inverse[work.sort_order] = np.arange(n)
    hits = pd.DataFrame(
        {
            "hit_id": work.hits["hit_id"].to_numpy()[inverse],
            "track_id": work.track_of_hit[inverse],
            "hit_score": work.hit_scores[inverse],
            "filter_score": work.filter_scores[inverse],
        }
    )
    track_scores = pd.DataFrame(
        {"track_id": np.arange(len(work.track_scores), dtype=np.int64), "score": work.track_scores}
    )
    timings = {stage: work.timings_ms.get(stage, 0.0) for stage in TIMING_STAGES}
    timings.update({k: v for k, v in work.timings_ms.items() if k not in timings})
    timings["total"] = (time.perf_counter() - started) * 1000.0
    return ReconstructionResult(
        event_id=work.event_id,
        hits=hits,
        track_scores=track_scores,
        parameters=work.parameters,
        timings_ms=timings,
        num_filtered_hits=len(work.kept),
        num_queries=work.num_queries,
    )


T = TypeVar("T")
R = TypeVar("R")


def ordered_map(function: Callable[[T], R], items: Iterable[T], workers: int) -> Iterator[R]:
    """`map` over a thread pool, results in input order, at most 2·workers items in flight."""
    if workers <= 1:
        yield from map(function, items)
        return
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="trackrt") as pool:
        pending: deque[Future[R]] = deque()
        for item in items:
            pending.append(pool.submit(function, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


class Chain:
    """Input checks followed by stages; thread-safe, deterministic, stages replaceable by name."""

    def __init__(self, stages: Sequence[Stage], checks: CheckConfig | None = None):
        names = [s.name for s in stages]
        if len(set(names)) != len(names):
            raise ValueError(f"stage names must be unique, got {names}")
        self.stages: tuple[Stage, ...] = tuple(stages)
        self.checks = checks or CheckConfig()
        configs = (getattr(getattr(s, "settings", None), "features", None) for s in self.stages)
        # The feature configs of the stages that read hit features, announced to every event.
        self.feature_configs = tuple(c for c in configs if isinstance(c, FeatureConfig))

    @property
    def stage_names(self) -> list[str]:
        return [s.name for s in self.stages]

    def replace(self, name: str, stage: Stage) -> Chain:
        """A new chain with stage `name` swapped for `stage`."""
        if name not in self.stage_names:
            raise KeyError(f"no stage {name!r} (stages: {', '.join(self.stage_names)})")
        return Chain([stage if s.name == name else s for s in self.stages], self.checks)

    def without(self, name: str) -> Chain:
        """A new chain without stage `name` (e.g. skip the hit filter or the parameter fit)."""
        if name not in self.stage_names:
            raise KeyError(f"no stage {name!r} (stages: {', '.join(self.stage_names)})")
        return Chain([s for s in self.stages if s.name != name], self.checks)

    def run(self, hits: HitsInput, event_id: int | None = None) -> ReconstructionResult:
        """Reconstruct one event; InputCheckError if its hits fail a check."""
        started = time.perf_counter()
        frame = validate_hits(hits, event_id, self.checks)
        checks_ms = (time.perf_counter() - started) * 1000.0
        return self._run_stages(frame, event_id, started, checks_ms)

    def _run_stages(
        self, frame: pd.DataFrame, event_id: int | None, started: float, checks_ms: float
    ) -> ReconstructionResult:
        work = EventWork.start(frame, event_id, self.feature_configs)
        work.timings_ms["checks"] = checks_ms
        for stage in self.stages:
            stage(work)
        return _finish(work, started)

    def try_run(
        self, hits: HitsInput, event_id: int | None = None
    ) -> ReconstructionResult | list[EventError]:
        """Like `run`, but failures come back as error records instead of exceptions."""
        try:
            return self.run(hits, event_id)
        except InputCheckError as exc:
            return exc.errors
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}"
            return [EventError(event_id, "reconstruction_failed", message, stage="reconstruction")]

    def run_many(
        self, events: Iterable[tuple[int | None, HitsInput]], workers: int = 1
    ) -> Iterator[ReconstructionResult | list[EventError]]:
        """Reconstruct `(event_id, hits)` pairs on `workers` threads; one result or error list per event."""
        return ordered_map(lambda event: self.try_run(event[1], event[0]), events, workers)

    def warmup(self, num_hits: int = 2000, repeats: int = 2, seed: int = 0) -> dict[str, Any]:
        """Run a synthetic event a few times (allocations, kernel selection); returns its last timings.

        The synthetic hits skip the input checks, so a tight envelope or hit limit does not stop it.
        """
        hits = synthetic_hits(num_hits, seed)
        result = None
        for _ in range(max(repeats, 1)):
            result = self._run_stages(hits, None, time.perf_counter(), 0.0)
        assert result is not None
        return result.timings_ms


def synthetic_hits(num_hits: int, seed: int = 0) -> pd.DataFrame:
    """Random hits on the pixel barrel layers (for warm-up; not physics)."""
    rng = np.random.default_rng(seed)
    radii = np.array([32.0, 72.0, 116.0, 172.0])
    r = rng.choice(radii, num_hits)
    phi = rng.uniform(-np.pi, np.pi, num_hits)
    return pd.DataFrame(
        {
            "hit_id": np.arange(1, num_hits + 1, dtype=np.int64),
            "x": (r * np.cos(phi)).astype(np.float32),
            "y": (r * np.sin(phi)).astype(np.float32),
            "z": rng.uniform(-450.0, 450.0, num_hits).astype(np.float32),
            "volume_id": np.full(num_hits, 8, dtype=np.int32),
            "layer_id": (2 * (np.searchsorted(radii, r) + 1)).astype(np.int32),
            "module_id": np.ones(num_hits, dtype=np.int32),
        }
    )
