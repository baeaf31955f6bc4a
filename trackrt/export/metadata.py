"""What travels with an exported graph: configs, thresholds, versions and checkpoint hashes.

The same record goes into every ONNX file's `metadata_props` (keys `trackrt.*`, JSON values) and into
the artifact directory's `artifact.json`.
"""

from __future__ import annotations

import hashlib
import json
import platform
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

import trackrt
from trackrt.configuration import to_dict

ARTIFACT_FORMAT = "trackrt-onnx-artifact"
ARTIFACT_FORMAT_VERSION = 1
ARTIFACT_JSON = "artifact.json"
METADATA_PREFIX = "trackrt."
# Files of a checkpoint directory that decide the exported graph (weights and config); the
# optimiser state is left out so that resuming training does not change the hash.
CHECKPOINT_MODEL_FILES = ("config.json", "model.safetensors")


def checkpoint_sha256(path: str | Path) -> str:
    """sha256 of a checkpoint file, or of a checkpoint directory's config.json + model.safetensors."""
    path = Path(path)
    digest = hashlib.sha256()
    if path.is_file():
        files = [path]
    else:
        files = [path / name for name in CHECKPOINT_MODEL_FILES if (path / name).exists()]
    if not files:
        raise FileNotFoundError(f"{path}: no checkpoint files ({', '.join(CHECKPOINT_MODEL_FILES)}) to hash")
    for file in files:
        if path.is_dir():
            digest.update(file.name.encode() + b"\0")
        with file.open("rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    return digest.hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of one file's bytes."""
    digest = hashlib.sha256()
    with Path(path).open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


@dataclass
class ModelRecord:
    """One exported model (hit filter or tracker): its kind, config and where its weights came from."""

    kind: str
    config: dict[str, Any]
    checkpoint: str
    checkpoint_sha256: str

    @classmethod
    def from_config(cls, kind: str, config: Any, checkpoint: str | Path) -> ModelRecord:
        return cls(
            kind=kind,
            config=to_dict(config),
            checkpoint=str(checkpoint),
            checkpoint_sha256=checkpoint_sha256(checkpoint),
        )

    @property
    def thresholds(self) -> dict[str, Any]:
        """The decision thresholds the runtime applies to this model's outputs."""
        from trackrt.train.checkpoint import THRESHOLD_KEYS

        return {key: self.config[key] for key in THRESHOLD_KEYS[self.kind]}

    @property
    def windows(self) -> dict[str, Any]:
        """Attention windows: the encoder's sliding window and, for the tracker, LSCA's."""
        encoder = self.config["encoder"]
        windows = {"encoder_window": encoder["window"], "encoder_wrap": encoder["wrap"]}
        if self.kind == "tracker":
            windows.update({key: self.config[key] for key in ("lsca_window", "lsca_wrap", "lsca_centering")})
        return windows


@dataclass
class ExportRecord:
    """Everything `artifact.json` holds; each ONNX file carries the part relevant to it."""

    lsca_mode: str
    opset: int
    models: dict[str, ModelRecord]
    graphs: dict[str, dict[str, Any]] = field(default_factory=dict)
    versions: dict[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "format": ARTIFACT_FORMAT,
            "format_version": ARTIFACT_FORMAT_VERSION,
            "trackrt_version": trackrt.__version__,
            "lsca_mode": self.lsca_mode,
            "opset": self.opset,
            "versions": self.versions,
            "models": {
                name: {
                    "kind": m.kind,
                    "checkpoint": m.checkpoint,
                    "checkpoint_sha256": m.checkpoint_sha256,
                    "features": m.config["features"],
                    "thresholds": m.thresholds,
                    "windows": m.windows,
                    "config": m.config,
                }
                for name, m in self.models.items()
            },
            "graphs": self.graphs,
        }


def tool_versions() -> dict[str, str]:
    """Versions of the tools that produced the graphs."""
    import onnxscript
    import torch

    return {
        "trackrt": trackrt.__version__,
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxscript": onnxscript.__version__,
        "python": platform.python_version(),
    }


def graph_metadata(record: ExportRecord, model_name: str, graph_name: str) -> dict[str, str]:
    """The `metadata_props` of one graph: its model's config, features, thresholds, window and hashes."""
    model = record.models[model_name]
    values: dict[str, Any] = {
        "graph": graph_name,
        "model_kind": model.kind,
        "model_config": model.config,
        "features": model.config["features"],
        "thresholds": model.thresholds,
        "windows": model.windows,
        "lsca_mode": record.lsca_mode,
        "version": trackrt.__version__,
        "checkpoint_sha256": model.checkpoint_sha256,
        "tool_versions": record.versions,
    }
    return {
        METADATA_PREFIX + key: value if isinstance(value, str) else json.dumps(value, sort_keys=True)
        for key, value in values.items()
    }


def set_metadata_props(model: onnx.ModelProto, props: Mapping[str, str]) -> None:
    """Replace the model's `trackrt.*` metadata_props with `props` (other keys are kept)."""
    kept = [(p.key, p.value) for p in model.metadata_props if not p.key.startswith(METADATA_PREFIX)]
    del model.metadata_props[:]
    for key, value in [*kept, *props.items()]:
        model.metadata_props.add(key=key, value=value)


def read_metadata_props(model: onnx.ModelProto | str | Path) -> dict[str, Any]:
    """The `trackrt.*` metadata of an ONNX model, prefix stripped and JSON values decoded."""
    if not isinstance(model, onnx.ModelProto):
        model = onnx.load(str(model), load_external_data=False)
    out: dict[str, Any] = {}
    for prop in model.metadata_props:
        if prop.key.startswith(METADATA_PREFIX):
            key = prop.key[len(METADATA_PREFIX) :]
            try:
                out[key] = json.loads(prop.value)
            except json.JSONDecodeError:
                out[key] = prop.value
    return out


def read_artifact_json(directory: str | Path) -> dict[str, Any]:
    """Load and sanity-check `artifact.json` of an artifact directory."""
    path = Path(directory) / ARTIFACT_JSON
    if not path.is_file():
        raise FileNotFoundError(f"{directory}: no {ARTIFACT_JSON}; is this a `trackrt export` directory?")
    data = json.loads(path.read_text())
    if data.get("format") != ARTIFACT_FORMAT:
        raise ValueError(f"{path}: format is {data.get('format')!r}, expected {ARTIFACT_FORMAT!r}")
    if data.get("format_version") != ARTIFACT_FORMAT_VERSION:
        version = data.get("format_version")
        raise ValueError(f"{path}: format_version {version} is not {ARTIFACT_FORMAT_VERSION}")
    return data
