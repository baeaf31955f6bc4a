"""Checkpoint files: names, format tag, and readers/writers that turn bad files into `CheckpointError`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError
from safetensors.torch import load_file

FORMAT = "trackrt-checkpoint"
FORMAT_VERSION = 1
MODEL_FILE = "model.safetensors"
CONFIG_FILE = "config.json"
STATE_TENSORS_FILE = "train_state.safetensors"
STATE_JSON_FILE = "train_state.json"


class CheckpointError(RuntimeError):
    """A checkpoint is missing, truncated, of another format, or its weights do not fit its config."""


def write_json(path: Path, data: dict[str, Any]) -> None:
    """Write `data` as indented, key-sorted JSON."""
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def read_json(path: Path) -> dict[str, Any]:
    """A JSON object from `path`; missing, truncated or non-object files raise `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated JSON ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object at the top level")
    return data


def read_tensors(path: Path) -> dict[str, torch.Tensor]:
    """All tensors of a safetensors file; missing or truncated files raise `CheckpointError`."""
    if not path.is_file():
        raise CheckpointError(f"{path}: missing checkpoint file")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError, ValueError) as exc:
        raise CheckpointError(f"{path}: unreadable or truncated safetensors file ({exc})") from None
