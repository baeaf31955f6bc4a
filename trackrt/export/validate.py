"""Validate an ONNX artifact against PyTorch on events: per-output differences, then tracks and metrics.

Two comparisons per event:
- graph by graph, both runtimes get the same inputs (PyTorch's), so each output's difference is that
  graph's own numerical error;
- end to end, each runtime runs the whole chain on its own outputs (filter → seeds → decoder →
  `assign_hits`); the tracks and physics metrics must then be identical, and where they are not, every
  differing decision is traced to a float tie (two values within tolerance of a threshold or of each other).
Both comparisons cover the tracker's first pass; its later `passes` run the same graphs on fewer hits, and
`benchmarks/shipped_models.py` compares the full chain's counts with the PyTorch evaluation.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import pandas as pd

from trackrt.export.metadata import read_artifact_json

DEFAULT_ATOL = 1e-4
DEFAULT_RTOL = 1e-3


class ValidationError(RuntimeError):
    """The artifact, checkpoints or events cannot be validated (missing, inconsistent, unreadable)."""


@dataclass(frozen=True)
class Tolerances:
    """Elementwise criterion |onnx − torch| ≤ atol + rtol·|torch| (as numpy.allclose)."""

    atol: float = DEFAULT_ATOL
    rtol: float = DEFAULT_RTOL

    @classmethod
    def with_overrides(cls, atol: float | None, rtol: float | None) -> Tolerances:
        return cls(atol=DEFAULT_ATOL if atol is None else atol, rtol=DEFAULT_RTOL if rtol is None else rtol)

    def margin(self, reference: np.ndarray) -> np.ndarray:
        """Allowed difference per element."""
        return self.atol + self.rtol * np.abs(reference)


@dataclass
class OutputComparison:
    """Largest differences of one output over all events, and whether every element was within tolerance."""

    graph: str
    output: str
    max_abs: float = 0.0
    max_rel: float = 0.0
    elements: int = 0
    failures: int = 0
    shapes: set[tuple[int, ...]] = field(default_factory=set)

    @property
    def passed(self) -> bool:
        return self.failures == 0 and self.elements > 0

    def update(self, onnx_value: np.ndarray, torch_value: np.ndarray, tolerances: Tolerances) -> None:
        if onnx_value.shape != torch_value.shape:
            raise ValidationError(
                f"{self.graph}.{self.output}: ONNX shape {onnx_value.shape} != PyTorch {torch_value.shape}"
            )
        diff = np.abs(onnx_value.astype(np.float64) - torch_value.astype(np.float64))
        self.shapes.add(tuple(onnx_value.shape))
        self.elements += diff.size
        if diff.size:
            self.max_abs = max(self.max_abs, float(diff.max()))
            self.max_rel = max(self.max_rel, float((diff / (np.abs(torch_value) + tolerances.atol)).max()))
            self.failures += int(np.count_nonzero(~(diff <= tolerances.margin(torch_value))))


@dataclass
class DecisionDifferences:
    """Decisions (kept hit, seed, valid track, hit→track) on which the two runtimes differ."""

    stage: str
    differing: int = 0
    ties: int = 0

    @property
    def explained(self) -> bool:
        return self.differing == self.ties


@dataclass
class EventResult:
    """End-to-end outcome of one event on both runtimes."""

    event_id: int
    num_hits: int
    num_filtered_hits: int
    num_queries: int
    num_tracks: dict[str, int]
    tracks_identical: bool
    differences: list[DecisionDifferences] = field(default_factory=list)
    metrics: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def metrics_identical(self) -> bool:
        if not self.metrics:
            return True
        ours, reference = self.metrics["onnxruntime"], self.metrics["torch"]
        return ours.keys() == reference.keys() and all(
            ours[k] == reference[k] or (math.isnan(ours[k]) and math.isnan(reference[k])) for k in ours
        )

    @property
    def passed(self) -> bool:
        return (self.tracks_identical and self.metrics_identical) or all(
            d.explained for d in self.differences
        )


@dataclass
class ValidationResult:
    """Everything `trackrt validate` reports."""

    artifact: str
    tolerances: Tolerances
    outputs: dict[str, OutputComparison] = field(default_factory=dict)
    events: list[EventResult] = field(default_factory=list)
    export_sizes: dict[str, int] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return (
            bool(self.events)
            and all(o.passed for o in self.outputs.values())
            and all(e.passed for e in self.events)
        )

    def comparison(self, graph: str, output: str) -> OutputComparison:
        return self.outputs.setdefault(f"{graph}.{output}", OutputComparison(graph, output))

    def to_json(self) -> dict[str, Any]:
        return {
            "artifact": self.artifact,
            "passed": self.passed,
            "tolerances": asdict(self.tolerances),
            "traced_with": self.export_sizes,
            "outputs": [
                {
                    **{k: v for k, v in asdict(o).items() if k != "shapes"},
                    "passed": o.passed,
                    "shapes": sorted(o.shapes),
                }
                for o in self.outputs.values()
            ],
            "events": [{**asdict(e), "passed": e.passed} for e in self.events],
        }

    def write_json(self, path: str | Path) -> None:
        """Write `to_json()`; NaN metrics (e.g. no matched track) become null."""
        Path(path).write_text(json.dumps(_nan_to_none(self.to_json()), indent=2) + "\n")


def _nan_to_none(value: Any) -> Any:
    if isinstance(value, float) and math.isnan(value):
        return None
    if isinstance(value, dict):
        return {k: _nan_to_none(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nan_to_none(v) for v in value]
    return value


def logit(probability: float) -> float:
    """Inverse sigmoid (±inf at 0 and 1)."""
    if probability <= 0.0:
        return -math.inf
    if probability >= 1.0:
        return math.inf
    return math.log(probability / (1.0 - probability))


class OnnxRuntimeChain:
    """The artifact's graphs in ONNX Runtime (CPU), one call per graph."""

    def __init__(self, directory: Path, artifact: dict[str, Any]) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.log_severity_level = 3
        self.sessions = {
            name: ort.InferenceSession(
                str(directory / entry["file"]), options, providers=["CPUExecutionProvider"]
            )
            for name, entry in artifact["graphs"].items()
        }

    def run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.sessions[graph].run(None, inputs)


class TorchChain:
    """The checkpoints in PyTorch eager mode, with the same call signature as `OnnxRuntimeChain`."""

    def __init__(self, tracker: Any, hit_filter: Any | None) -> None:
        self.tracker, self.hit_filter = tracker, hit_filter

    def run(self, graph: str, **inputs: np.ndarray) -> list[np.ndarray]:
        import torch

        tensors = {k: torch.from_numpy(v) for k, v in inputs.items()}
        with torch.no_grad():
            if graph == "hit_filter":
                outputs: tuple[torch.Tensor, ...] = (self.hit_filter(tensors["hit_features"]),)
            elif graph == "tracker_encoder":
                outputs = self.tracker.encode(tensors["hit_features"])
            else:
                final = self.tracker.decode(tensors["hit_embeddings"], tensors.get("query_indices"))[-1]
                outputs = (final["track_logits"], final["assignment_logits"])
        return [t.numpy() for t in outputs]


@dataclass
class ChainOutputs:
    """Every intermediate of one runtime's end-to-end run on one event (hits in φ order)."""

    kept: np.ndarray
    hit_logits: np.ndarray | None
    hit_embeddings: np.ndarray
    seed_logits: np.ndarray
    query_indices: np.ndarray | None
    track_logits: np.ndarray
    assignment_logits: np.ndarray
    track_of_hit: np.ndarray
    track_scores: np.ndarray


class Pipeline:
    """The numpy steps around the graphs, exactly as the runtime does them (trackrt.data)."""

    def __init__(self, artifact: dict[str, Any]) -> None:
        from trackrt.configuration import from_dict
        from trackrt.data.features import FeatureConfig

        models = artifact["models"]
        self.tracker = models["tracker"]
        self.hit_filter = models.get("hit_filter")
        self.tracker_features = from_dict(FeatureConfig, self.tracker["features"])
        self.filter_features = (
            from_dict(FeatureConfig, self.hit_filter["features"]) if self.hit_filter else None
        )
        self.dynamic_queries = self.tracker["config"]["variant"] != "fq-ma"

    def filter_inputs(self, hits: pd.DataFrame) -> np.ndarray:
        from trackrt.data.features import hit_features

        return hit_features(hits, self.filter_features)[None]

    def tracker_inputs(self, hits: pd.DataFrame) -> np.ndarray:
        from trackrt.data.features import hit_features

        return hit_features(hits, self.tracker_features)[None]

    def keep(self, hit_logits: np.ndarray) -> np.ndarray:
        return hit_logits >= logit(self.hit_filter["thresholds"]["hit_threshold"])

    def seeds(self, seed_logits: np.ndarray) -> np.ndarray | None:
        from trackrt.data.tracks import select_seeds

        if not self.dynamic_queries:
            return None
        t = self.tracker["thresholds"]
        return select_seeds(seed_logits, t["seed_threshold"], t["max_queries"])

    def assign(
        self, track_logits: np.ndarray, assignment_logits: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        from trackrt.data.tracks import assign_hits

        t = self.tracker["thresholds"]
        return assign_hits(
            track_logits, assignment_logits, t["track_threshold"], t["hit_threshold"], t["min_hits"],
            t.get("duplicate_iou", 1.0),
        )  # fmt: skip

    def run(self, chain: OnnxRuntimeChain | TorchChain, hits: pd.DataFrame) -> ChainOutputs:
        """The full chain on φ-sorted `hits` with one runtime."""
        hit_logits = None
        kept = np.ones(len(hits), dtype=bool)
        if self.hit_filter is not None:
            hit_logits = chain.run("hit_filter", hit_features=self.filter_inputs(hits))[0][0]
            kept = self.keep(hit_logits)
        if not kept.any():  # as in the runtime: no hits left, so the tracker graphs do not run
            return ChainOutputs(
                kept=kept,
                hit_logits=hit_logits,
                hit_embeddings=np.zeros((1, 0, 0), np.float32),
                seed_logits=np.zeros(0, np.float32),
                query_indices=np.zeros(0, np.int64) if self.dynamic_queries else None,
                track_logits=np.zeros(0, np.float32),
                assignment_logits=np.zeros((0, 0), np.float32),
                track_of_hit=np.zeros(0, np.int64),
                track_scores=np.zeros(0, np.float32),
            )
        embeddings, seed_logits = chain.run("tracker_encoder", hit_features=self.tracker_inputs(hits[kept]))
        queries = self.seeds(seed_logits[0])
        decoder_inputs = {"hit_embeddings": embeddings}
        if queries is not None:
            decoder_inputs["query_indices"] = queries[None]
        track_logits, assignment_logits = chain.run("tracker_decoder", **decoder_inputs)
        track_of_hit, scores = self.assign(track_logits[0], assignment_logits[0])
        return ChainOutputs(
            kept,
            hit_logits,
            embeddings,
            seed_logits[0],
            queries,
            track_logits[0],
            assignment_logits[0],
            track_of_hit,
            scores,
        )


def _compare_graphs(
    result: ValidationResult,
    pipeline: Pipeline,
    ort_chain: OnnxRuntimeChain,
    reference: ChainOutputs,
    hits: pd.DataFrame,
) -> None:
    """Graph by graph with PyTorch's inputs: every output's largest difference."""
    tol = result.tolerances
    if pipeline.hit_filter is not None:
        (hit_logits,) = ort_chain.run("hit_filter", hit_features=pipeline.filter_inputs(hits))
        result.comparison("hit_filter", "hit_logits").update(hit_logits[0], reference.hit_logits, tol)
    if not reference.kept.any():
        return
    embeddings, seeds = ort_chain.run(
        "tracker_encoder", hit_features=pipeline.tracker_inputs(hits[reference.kept])
    )
    result.comparison("tracker_encoder", "hit_embeddings").update(embeddings, reference.hit_embeddings, tol)
    result.comparison("tracker_encoder", "seed_logits").update(seeds[0], reference.seed_logits, tol)
    inputs = {"hit_embeddings": reference.hit_embeddings}
    if reference.query_indices is not None:
        inputs["query_indices"] = reference.query_indices[None]
    track_logits, assignment_logits = ort_chain.run("tracker_decoder", **inputs)
    result.comparison("tracker_decoder", "track_logits").update(track_logits[0], reference.track_logits, tol)
    result.comparison("tracker_decoder", "assignment_logits").update(
        assignment_logits[0], reference.assignment_logits, tol
    )


def _near(values: np.ndarray, boundary: float | np.ndarray, tolerances: Tolerances) -> np.ndarray:
    """Elements within tolerance of a decision boundary: the two runtimes may fall on either side."""
    return np.abs(values - boundary) <= 2 * tolerances.margin(values)


def trace_differences(
    pipeline: Pipeline, onnx_run: ChainOutputs, torch_run: ChainOutputs, tolerances: Tolerances
) -> list[DecisionDifferences]:
    """Find the first stage where the chains diverge and count how many of its decisions are float ties."""
    if not np.array_equal(onnx_run.kept, torch_run.kept):
        stage = DecisionDifferences("hit filter")
        differing = onnx_run.kept != torch_run.kept
        threshold = logit(pipeline.hit_filter["thresholds"]["hit_threshold"])
        stage.differing = int(differing.sum())
        stage.ties = int((differing & _near(torch_run.hit_logits, threshold, tolerances)).sum())
        return [stage]
    if onnx_run.query_indices is not None and not np.array_equal(
        onnx_run.query_indices, torch_run.query_indices
    ):
        stage = DecisionDifferences("seed selection")
        differing = np.setxor1d(onnx_run.query_indices, torch_run.query_indices)
        logits = torch_run.seed_logits[differing]
        boundaries = [logit(pipeline.tracker["thresholds"]["seed_threshold"])]
        if len(torch_run.query_indices):
            boundaries.append(float(torch_run.seed_logits[torch_run.query_indices].min()))  # top-k edge
        tie = np.zeros(len(differing), dtype=bool)
        for boundary in boundaries:
            tie |= _near(logits, boundary, tolerances)
        stage.differing, stage.ties = len(differing), int(tie.sum())
        return [stage]
    if np.array_equal(onnx_run.track_of_hit, torch_run.track_of_hit):
        return []
    return [_trace_track_building(pipeline.tracker["thresholds"], onnx_run, torch_run, tolerances)]


def raw_assignment(
    track_logits: np.ndarray, assignment_logits: np.ndarray, thresholds: dict[str, Any]
) -> np.ndarray:
    """Query per hit before the `min_hits` cut (-1: none), decided as `assign_hits` decides it."""
    from trackrt.data.tracks import sigmoid, valid_queries

    valid = np.zeros(len(track_logits), dtype=bool)
    valid[
        valid_queries(
            track_logits, assignment_logits, thresholds["track_threshold"], thresholds["hit_threshold"],
            thresholds.get("duplicate_iou", 1.0),
        )
    ] = True  # fmt: skip
    if not valid.any():
        return np.full(assignment_logits.shape[1], -1, dtype=np.int64)
    probabilities = np.where(valid[:, None], sigmoid(assignment_logits), -1.0)
    best = np.argmax(probabilities, axis=0)
    assigned = probabilities[best, np.arange(probabilities.shape[1])] >= thresholds["hit_threshold"]
    return np.where(assigned, best, -1)


def _trace_track_building(
    thresholds: dict[str, Any], onnx_run: ChainOutputs, torch_run: ChainOutputs, tolerances: Tolerances
) -> DecisionDifferences:
    """Hits whose query differs before the `min_hits` cut; everything after it follows deterministically.

    A moved hit is a tie when its two best valid queries (or the best one and the hit threshold) are within
    tolerance, or when one of its queries' validity sits at the track threshold.
    """
    stage = DecisionDifferences("track building")
    raw_onnx = raw_assignment(onnx_run.track_logits, onnx_run.assignment_logits, thresholds)
    raw_torch = raw_assignment(torch_run.track_logits, torch_run.assignment_logits, thresholds)
    moved = np.flatnonzero(raw_onnx != raw_torch)
    if not len(moved):  # final tracks differ without any moved hit: nothing explains it
        stage.differing = int(np.count_nonzero(onnx_run.track_of_hit != torch_run.track_of_hit))
        return stage
    tie_queries = _near(torch_run.track_logits, logit(thresholds["track_threshold"]), tolerances)
    valid = torch_run.track_logits >= logit(thresholds["track_threshold"])
    scores = np.where(valid[:, None], torch_run.assignment_logits, -np.inf)
    top2 = np.sort(scores, axis=0)[-2:] if scores.shape[0] > 1 else np.vstack([scores, scores - np.inf])
    tie_hits = _near(top2[1], top2[0], tolerances) | _near(
        top2[1], logit(thresholds["hit_threshold"]), tolerances
    )
    stage.differing = len(moved)
    for hit in moved:
        queries = [int(q) for q in (raw_onnx[hit], raw_torch[hit]) if q >= 0]
        if tie_hits[hit] or any(tie_queries[q] for q in queries):
            stage.ties += 1
    return stage


def _tracks_frame(hit_ids: np.ndarray, track_of_hit: np.ndarray) -> pd.DataFrame:
    assigned = track_of_hit >= 0
    return pd.DataFrame({"hit_id": hit_ids[assigned], "track_id": track_of_hit[assigned]})


def _metrics(event: Any, hits: pd.DataFrame, run: ChainOutputs, pt_min: float) -> dict[str, float]:
    from trackrt.metrics import evaluate_tracks

    kept_ids = hits["hit_id"].to_numpy()[run.kept]
    tracks = _tracks_frame(kept_ids, run.track_of_hit)
    scores = pd.DataFrame({"track_id": np.arange(len(run.track_scores)), "score": run.track_scores})
    metrics = evaluate_tracks(
        tracks, event.truth, event.particles, pt_min=pt_min, track_scores=scores, hits=event.hits
    )
    values = {
        "efficiency": metrics.efficiency,
        "efficiency_perfect": metrics.efficiency_perfect,
        "efficiency_lhc": metrics.efficiency_lhc,
        "fake_rate": metrics.fake_rate,
        "duplicate_rate": metrics.duplicate_rate,
    }
    if metrics.trackml_score is not None:
        values["trackml_score"] = metrics.trackml_score
    return values


def load_torch_chain(
    artifact: dict[str, Any], checkpoint: Path | None, filter_checkpoint: Path | None
) -> TorchChain:
    """The checkpoints in PyTorch (the ones recorded in artifact.json unless given), sha256 checked."""
    from trackrt.export.exporter import ExportError, load_model

    models = artifact["models"]
    try:
        tracker = load_model(checkpoint or models["tracker"]["checkpoint"], "tracker")
        hit_filter = None
        if "hit_filter" in models:
            hit_filter = load_model(filter_checkpoint or models["hit_filter"]["checkpoint"], "hit_filter")
    except ExportError as exc:
        raise ValidationError(f"{exc} (pass --checkpoint / --filter-checkpoint)") from None
    for name, loaded in (("tracker", tracker), ("hit_filter", hit_filter)):
        if loaded is not None and loaded.record.checkpoint_sha256 != models[name]["checkpoint_sha256"]:
            raise ValidationError(
                f"{loaded.record.checkpoint}: sha256 differs from the {name} checkpoint the "
                "artifact was exported from"
            )
    return TorchChain(tracker.module, hit_filter.module if hit_filter else None)


def iter_validation_events(events_dir: Path, max_events: int | None) -> Iterator[Any]:
    """Pixel-only events of `events_dir` (truth and particles when present)."""
    from trackrt.data.trackml import iter_events, list_event_prefixes

    prefixes = list_event_prefixes(events_dir)
    if not prefixes:
        raise ValidationError(f"{events_dir}: no TrackML events (eventNNNNNNNNN-hits.csv[.gz])")
    has_truth = all(
        any(p.parent.glob(f"{p.name}-{part}.csv*")) for p in prefixes for part in ("truth", "particles")
    )
    parts = ("hits", "particles", "truth") if has_truth else ("hits",)
    for index, event in enumerate(iter_events(events_dir, parts=parts, pixel_only=True)):
        if max_events is not None and index >= max_events:
            return
        yield event


def validate_artifact(
    artifact_dir: str | Path,
    events_dir: str | Path,
    checkpoint: Path | None = None,
    filter_checkpoint: Path | None = None,
    max_events: int | None = None,
    tolerances: Tolerances | None = None,
    pt_min: float = 1.0,
    progress: Callable[[str], None] | None = None,
) -> ValidationResult:
    """Compare ONNX Runtime with PyTorch on every event of `events_dir` (see the module docstring)."""
    from trackrt.data.features import phi_sort_order

    artifact_dir = Path(artifact_dir)
    try:
        artifact = read_artifact_json(artifact_dir)
    except (FileNotFoundError, ValueError) as exc:
        raise ValidationError(str(exc)) from None
    result = ValidationResult(artifact=str(artifact_dir), tolerances=tolerances or Tolerances())
    result.export_sizes = dict(artifact.get("traced_with", {}))
    pipeline = Pipeline(artifact)
    torch_chain = load_torch_chain(artifact, checkpoint, filter_checkpoint)
    ort_chain = OnnxRuntimeChain(artifact_dir, artifact)
    for event in iter_validation_events(Path(events_dir), max_events):
        hits = event.hits.iloc[phi_sort_order(event.hits)].reset_index(drop=True)
        torch_run = pipeline.run(torch_chain, hits)
        onnx_run = pipeline.run(ort_chain, hits)
        _compare_graphs(result, pipeline, ort_chain, torch_run, hits)
        identical = bool(
            np.array_equal(onnx_run.kept, torch_run.kept)
            and np.array_equal(onnx_run.track_of_hit, torch_run.track_of_hit)
        )
        outcome = EventResult(
            event_id=event.event_id,
            num_hits=len(hits),
            num_filtered_hits=int(torch_run.kept.sum()),
            num_queries=int(torch_run.track_logits.shape[0]),
            num_tracks={"torch": len(torch_run.track_scores), "onnxruntime": len(onnx_run.track_scores)},
            tracks_identical=identical,
            differences=[]
            if identical
            else trace_differences(pipeline, onnx_run, torch_run, result.tolerances),
        )
        if event.truth is not None:
            outcome.metrics = {
                "torch": _metrics(event, hits, torch_run, pt_min),
                "onnxruntime": _metrics(event, hits, onnx_run, pt_min),
            }
        result.events.append(outcome)
        if progress is not None:
            progress(f"event {event.event_id}: {len(hits)} hits, {outcome.num_queries} queries")
    return result


def format_validation(result: ValidationResult) -> list[str]:
    """The report: one line per output (largest abs/rel difference), one per event (tracks, metrics)."""
    tol = result.tolerances
    lines = [
        f"outputs (ONNX Runtime vs PyTorch, same inputs; ✓ if |Δ| ≤ {tol.atol:g} + {tol.rtol:g}·|torch|)",
        f"  {'graph.output':<34} {'max |Δ|':>10} {'max rel':>10}  shapes seen",
    ]
    if result.export_sizes:
        traced = ", ".join(f"{k}={v}" for k, v in result.export_sizes.items())
        lines.insert(0, f"graphs traced at export with {traced}; the events below have their own sizes")
    for key, o in result.outputs.items():
        shapes = ", ".join("×".join(map(str, s)) for s in sorted(o.shapes)[:3])
        lines.append(f"{'✓' if o.passed else '✗'} {key:<34} {o.max_abs:>10.2e} {o.max_rel:>10.2e}  {shapes}")
    lines.append("events (end to end, each runtime on its own outputs)")
    for e in result.events:
        tracks = (
            "identical"
            if e.tracks_identical
            else "differ: "
            + "; ".join(f"{d.stage} {d.differing} decisions, {d.ties} float ties" for d in e.differences)
        )
        metrics = ""
        if e.metrics:
            m = e.metrics["torch"]
            same = "identical" if e.metrics_identical else "DIFFER"
            metrics = f"; metrics {same} (DM eff {m['efficiency']:.3f}, fake {m['fake_rate']:.3f})"
        lines.append(
            f"{'✓' if e.passed else '✗'} event {e.event_id}: {e.num_hits} hits → {e.num_filtered_hits} "
            f"kept, {e.num_queries} queries, {e.num_tracks['torch']} tracks; tracks {tracks}{metrics}"
        )
    lines.append("PASSED" if result.passed else "FAILED")
    return lines


def echo_validation(result: ValidationResult) -> None:
    """Print `format_validation`, failures in red."""
    for line in format_validation(result):
        click.secho(line, fg="red" if line.startswith("✗") or line == "FAILED" else None)
