"""`Tracker`: load an artifact on a backend and turn hits into tracks (the public entry point)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

from trackrt.runtime.artifact import (
    DECODER_GRAPH,
    ENCODER_GRAPH,
    HIT_FILTER_GRAPH,
    Artifact,
    load_artifact,
)
from trackrt.runtime.backends import create_backend
from trackrt.runtime.backends.base import Backend, BackendOptions, GraphOptimization
from trackrt.runtime.chain import (
    Chain,
    HitFilterStage,
    ReconstructionResult,
    Stage,
    TrackFindingStage,
    TrackParameterStage,
)
from trackrt.runtime.checks import CheckConfig, EventError, HitsInput
from trackrt.runtime.helix_fit import DEFAULT_FIELD_T


def default_chain(
    artifact: Artifact, backend: Backend, checks: CheckConfig, field_t: float = DEFAULT_FIELD_T
) -> Chain:
    """Hit filter (when the artifact has one) -> tracker -> helix fit, on `backend`'s runners."""
    stages: list[Stage] = []
    if artifact.hit_filter is not None:
        stages.append(HitFilterStage(backend.runner(HIT_FILTER_GRAPH), artifact.hit_filter))
    stages.append(
        TrackFindingStage(backend.runner(ENCODER_GRAPH), backend.runner(DECODER_GRAPH), artifact.tracker)
    )
    stages.append(TrackParameterStage(field_t=field_t, min_hits=artifact.tracker.min_hits))
    return Chain(stages, checks)


class Tracker:
    """An artifact on a backend, behind one `reconstruct` call; safe to share between threads."""

    def __init__(self, artifact: Artifact, backend: Backend, chain: Chain):
        self.artifact = artifact
        self.backend = backend
        self.chain = chain

    @classmethod
    def load(
        cls,
        artifact_dir: str | Path,
        backend: str = "auto",
        device: str = "cpu",
        threads: int | None = None,
        graph_optimization: GraphOptimization = "all",
        inter_op_threads: int | None = None,
        io_binding: bool = True,
        checkpoints: dict[str, str] | None = None,
        field_t: float = DEFAULT_FIELD_T,
        checks: CheckConfig | None = None,
        engine_dir: str | Path | None = None,
    ) -> Tracker:
        """Read `artifact_dir` and open its graphs on `backend` (`auto`, `tensorrt`, `onnxruntime`, `torch`).

        `threads` sets intra-op threads per graph; `checkpoints` ({"tracker": dir, "hit_filter": dir})
        overrides where the torch reference backend finds weights; `engine_dir` where the tensorrt
        backend finds engines (default `<artifact>/engines`). The artifact's `limits.max_hits`, else the
        backend's (an engine's profile), becomes the hit-count check unless `checks` sets its own.
        """
        artifact = load_artifact(artifact_dir)
        options = BackendOptions(
            device=device,
            threads=threads,
            inter_op_threads=inter_op_threads,
            graph_optimization=graph_optimization,
            io_binding=io_binding,
            checkpoints=dict(checkpoints or {}),
            engine_dir=None if engine_dir is None else str(engine_dir),
        )
        opened = create_backend(backend, artifact, options)
        checks = checks or CheckConfig()
        max_hits = artifact.max_hits if artifact.max_hits is not None else opened.max_hits
        if checks.max_hits is None and max_hits is not None:
            checks = dataclasses.replace(checks, max_hits=max_hits)
        return cls(artifact, opened, default_chain(artifact, opened, checks, field_t))

    def reconstruct(self, hits: HitsInput, event_id: int | None = None) -> ReconstructionResult:
        """Tracks of one event (hits: TrackML DataFrame, mapping of arrays or [N, 3] x-y-z array).

        Raises `InputCheckError` (with one record per failed check) when the hits are unusable.
        """
        return self.chain.run(hits, event_id)

    def reconstruct_many(
        self, events: Iterable[tuple[int | None, HitsInput]], workers: int = 1
    ) -> Iterator[ReconstructionResult | list[EventError]]:
        """Reconstruct `(event_id, hits)` pairs on `workers` threads, in order; failures as error records."""
        return self.chain.run_many(events, workers)

    def warmup(self, num_hits: int = 2000, repeats: int = 2) -> dict[str, float]:
        """Run a synthetic event `repeats` times; returns the last run's stage timings (ms)."""
        return self.chain.warmup(num_hits, repeats)

    def with_stage(self, name: str, stage: Stage) -> Tracker:
        """A tracker sharing this backend whose chain has stage `name` replaced by `stage`."""
        return Tracker(self.artifact, self.backend, self.chain.replace(name, stage))

    def without_stage(self, name: str) -> Tracker:
        """A tracker sharing this backend whose chain skips stage `name`."""
        return Tracker(self.artifact, self.backend, self.chain.without(name))

    def describe(self) -> dict[str, Any]:
        """Backend, device, artifact and stages, for logs and benchmark records."""
        return {
            **self.backend.describe(),
            "artifact": str(self.artifact.directory),
            "variant": self.artifact.tracker.variant,
            "hit_filter": self.artifact.hit_filter is not None,
            "stages": self.chain.stage_names,
        }

    def close(self) -> None:
        """Release the backend's sessions."""
        self.backend.close()

    def __enter__(self) -> Tracker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
