"""Read an exported artifact directory: `artifact.json` plus the graphs it names (no onnx, no torch)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from trackrt.configuration import ConfigError, from_dict
from trackrt.data.features import FeatureConfig

ARTIFACT_FORMAT = "trackrt-onnx-artifact"
SUPPORTED_FORMAT_VERSIONS = (1,)
ARTIFACT_JSON = "artifact.json"
HIT_FILTER_GRAPH = "hit_filter"
ENCODER_GRAPH = "tracker_encoder"
DECODER_GRAPH = "tracker_decoder"
GRAPH_NAMES = (HIT_FILTER_GRAPH, ENCODER_GRAPH, DECODER_GRAPH)
DECODER_VARIANTS = ("fq-ma", "dq-ma", "dq-lsca")


class ArtifactError(ValueError):
    """An artifact directory is missing, malformed, or of an unsupported version; names the path."""


@dataclass(frozen=True)
class HitFilterSettings:
    """The hit filter's features and the probability a hit needs to be kept."""

    features: FeatureConfig
    hit_threshold: float
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None


@dataclass(frozen=True)
class TrackerSettings:
    """The tracker's features, decoder variant and the thresholds applied to its outputs."""

    features: FeatureConfig
    variant: str
    seed_threshold: float
    max_queries: int | None
    track_threshold: float
    hit_threshold: float
    min_hits: int
    duplicate_iou: float = 1.0
    passes: int = 1
    checkpoint: str | None = None
    checkpoint_sha256: str | None = None

    @property
    def dynamic_queries(self) -> bool:
        """True when the decoder takes seed hits as queries (`dq-*`), False for learned queries."""
        return self.variant != "fq-ma"


@dataclass(frozen=True)
class Artifact:
    """An artifact directory as the runtime sees it: settings per model and the graph files."""

    directory: Path
    format_version: int
    trackrt_version: str
    tracker: TrackerSettings
    hit_filter: HitFilterSettings | None
    graphs: dict[str, Path]
    max_hits: int | None = None
    lsca_mode: str | None = None
    raw: dict[str, Any] = field(default_factory=dict, repr=False, compare=False)

    def graph(self, name: str) -> Path | None:
        """Path of graph `name` (`hit_filter`, `tracker_encoder`, `tracker_decoder`), None if absent."""
        return self.graphs.get(name)

    @property
    def required_graphs(self) -> tuple[str, ...]:
        """The graphs this artifact's models need: encoder, decoder and the hit filter if it has one."""
        extra = (HIT_FILTER_GRAPH,) if self.hit_filter is not None else ()
        return (*extra, ENCODER_GRAPH, DECODER_GRAPH)

    def require_graphs(self) -> dict[str, Path]:
        """The required graph files by name; ArtifactError naming any that are missing."""
        missing = [name for name in self.required_graphs if name not in self.graphs]
        if missing:
            files = ", ".join(f"{name}.onnx" for name in missing)
            raise ArtifactError(f"{self.directory}: graph file(s) missing: {files}")
        return {name: self.graphs[name] for name in self.required_graphs}


def file_sha256(path: Path) -> str:
    """sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _require(mapping: dict[str, Any], key: str, where: str) -> Any:
    if key not in mapping:
        raise ArtifactError(f"{where}: missing key '{key}'")
    return mapping[key]


def _features(model: dict[str, Any], where: str) -> FeatureConfig:
    try:
        return from_dict(FeatureConfig, dict(_require(model, "features", where)), f"{where}.features")
    except ConfigError as exc:
        raise ArtifactError(str(exc)) from None


def _models_by_kind(data: dict[str, Any], path: Path) -> dict[str, tuple[str, dict[str, Any]]]:
    models = _require(data, "models", str(path))
    if not isinstance(models, dict):
        raise ArtifactError(f"{path}: 'models' must be a mapping of model name to record")
    by_kind: dict[str, tuple[str, dict[str, Any]]] = {}
    for name, record in models.items():
        kind = _require(record, "kind", f"{path}: models.{name}")
        if kind in by_kind:
            raise ArtifactError(f"{path}: two models of kind '{kind}' ({by_kind[kind][0]}, {name})")
        by_kind[kind] = (name, record)
    if "tracker" not in by_kind:
        raise ArtifactError(f"{path}: no model of kind 'tracker' in 'models'")
    return by_kind


def _tracker_settings(record: dict[str, Any], where: str) -> TrackerSettings:
    thresholds = _require(record, "thresholds", where)
    variant = _require(record.get("config", {}), "variant", f"{where}.config")
    if variant not in DECODER_VARIANTS:
        raise ArtifactError(f"{where}.config.variant: {variant!r} is not one of {list(DECODER_VARIANTS)}")
    max_queries = _require(thresholds, "max_queries", f"{where}.thresholds")
    return TrackerSettings(
        features=_features(record, where),
        variant=variant,
        seed_threshold=float(_require(thresholds, "seed_threshold", f"{where}.thresholds")),
        max_queries=None if max_queries is None else int(max_queries),
        track_threshold=float(_require(thresholds, "track_threshold", f"{where}.thresholds")),
        hit_threshold=float(_require(thresholds, "hit_threshold", f"{where}.thresholds")),
        min_hits=int(_require(thresholds, "min_hits", f"{where}.thresholds")),
        duplicate_iou=_duplicate_iou(thresholds, where),
        passes=_passes(thresholds, where),
        checkpoint=record.get("checkpoint"),
        checkpoint_sha256=record.get("checkpoint_sha256"),
    )


def _duplicate_iou(thresholds: dict[str, Any], where: str) -> float:
    """The duplicate-resolution IoU (1: off, also for artifacts written before it existed)."""
    value = float(thresholds.get("duplicate_iou", 1.0))
    if not 0.0 <= value <= 1.0:
        raise ArtifactError(f"{where}.thresholds.duplicate_iou: must be in [0, 1], got {value}")
    return value


def _passes(thresholds: dict[str, Any], where: str) -> int:
    """The number of tracker passes (1, also for artifacts written before passes existed)."""
    value = thresholds.get("passes", 1)
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ArtifactError(f"{where}.thresholds.passes: must be an integer >= 1, got {value!r}")
    return value


def _hit_filter_settings(record: dict[str, Any], where: str) -> HitFilterSettings:
    thresholds = _require(record, "thresholds", where)
    return HitFilterSettings(
        features=_features(record, where),
        hit_threshold=float(_require(thresholds, "hit_threshold", f"{where}.thresholds")),
        checkpoint=record.get("checkpoint"),
        checkpoint_sha256=record.get("checkpoint_sha256"),
    )


def _expected_sha256(info: dict[str, Any], filename: str) -> str | None:
    """The recorded hash of `filename`: a plain string, or one entry of a {file: sha256} mapping."""
    recorded = info.get("sha256")
    if isinstance(recorded, dict):
        return recorded.get(filename)
    return recorded


def _locate_graphs(directory: Path, data: dict[str, Any], verify: bool) -> dict[str, Path]:
    """The graph files that exist, by graph name; hashes checked against artifact.json when recorded."""
    described = data.get("graphs") or {}
    graphs: dict[str, Path] = {}
    for name in GRAPH_NAMES:
        info = described.get(name) if isinstance(described.get(name), dict) else {}
        path = directory / info.get("file", f"{name}.onnx")
        if not path.is_file():
            continue
        expected = _expected_sha256(info, path.name)
        if verify and expected and file_sha256(path) != expected:
            raise ArtifactError(f"{path}: sha256 differs from artifact.json (file changed after export)")
        graphs[name] = path
    return graphs


def read_format_json(path: Path, expected_format: str, error: type[ValueError]) -> dict[str, Any]:
    """The JSON object in `path` whose `format` is `expected_format`; `error` naming the path otherwise."""
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise error(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict) or data.get("format") != expected_format:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise error(f"{path}: format is {found!r}, expected {expected_format!r}")
    return data


def load_artifact(directory: str | Path, verify_hashes: bool = True) -> Artifact:
    """Read `artifact.json`, check its format and version, and locate the graph files."""
    directory = Path(directory)
    path = directory / ARTIFACT_JSON
    if not path.is_file():
        raise ArtifactError(f"{directory}: no {ARTIFACT_JSON}; is this a `trackrt export` directory?")
    data = read_format_json(path, ARTIFACT_FORMAT, ArtifactError)
    version = data.get("format_version")
    if version not in SUPPORTED_FORMAT_VERSIONS:
        raise ArtifactError(
            f"{path}: format_version {version!r} is not supported by this runtime "
            f"(supported: {', '.join(map(str, SUPPORTED_FORMAT_VERSIONS))}); re-export or upgrade trackrt"
        )
    seeding = data.get("seed_selection") or {}
    if seeding.get("where", "host") not in ("host", "none"):
        raise ArtifactError(
            f"{path}: seed_selection.where is {seeding.get('where')!r}; this runtime seeds on the host"
        )
    by_kind = _models_by_kind(data, path)
    tracker_name, tracker_record = by_kind["tracker"]
    tracker = _tracker_settings(tracker_record, f"{path}: models.{tracker_name}")
    hit_filter = None
    if "hit_filter" in by_kind:
        filter_name, filter_record = by_kind["hit_filter"]
        hit_filter = _hit_filter_settings(filter_record, f"{path}: models.{filter_name}")
    limits = data.get("limits") or {}
    max_hits = limits.get("max_hits")
    return Artifact(
        directory=directory,
        format_version=int(version),
        trackrt_version=str(data.get("trackrt_version", "unknown")),
        tracker=tracker,
        hit_filter=hit_filter,
        graphs=_locate_graphs(directory, data, verify_hashes),
        max_hits=None if max_hits is None else int(max_hits),
        lsca_mode=data.get("lsca_mode"),
        raw=data,
    )
