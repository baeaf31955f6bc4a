"""Inference runtime: hits in, tracks out, behind interchangeable backends (no torch needed).

    from trackrt.runtime import Tracker
    tracker = Tracker.load("artifacts/pix10", backend="onnxruntime", device="cpu", threads=4)
    result = tracker.reconstruct(hits)          # TrackML hits DataFrame
    result.tracks, result.track_scores, result.parameters, result.timings_ms
"""

from trackrt.runtime.artifact import Artifact, ArtifactError, load_artifact
from trackrt.runtime.backends import BACKENDS, create_backend
from trackrt.runtime.backends.base import Backend, BackendOptions, BackendUnavailable, GraphRunner
from trackrt.runtime.chain import (
    TIMING_STAGES,
    Chain,
    EventWork,
    HitFilterStage,
    ReconstructionResult,
    Stage,
    TrackFindingStage,
    TrackParameterStage,
)
from trackrt.runtime.checks import CheckConfig, EventError, InputCheckError, check_hits
from trackrt.runtime.helix_fit import fit_helices
from trackrt.runtime.tracker import Tracker, default_chain

__all__ = [
    "BACKENDS",
    "TIMING_STAGES",
    "Artifact",
    "ArtifactError",
    "Backend",
    "BackendOptions",
    "BackendUnavailable",
    "Chain",
    "CheckConfig",
    "EventError",
    "EventWork",
    "GraphRunner",
    "HitFilterStage",
    "InputCheckError",
    "ReconstructionResult",
    "Stage",
    "TrackFindingStage",
    "TrackParameterStage",
    "Tracker",
    "check_hits",
    "create_backend",
    "default_chain",
    "fit_helices",
    "load_artifact",
]
