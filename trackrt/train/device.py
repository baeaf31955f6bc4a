"""Device selection for training and evaluation."""

from __future__ import annotations

import torch


def resolve_device(name: str | torch.device) -> torch.device:
    """`auto` → CUDA when available, else CPU; `cuda` without a GPU is refused with a clear message."""
    if isinstance(name, torch.device):
        return name
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"device: {name!r} requested but torch.cuda.is_available() is False")
    return torch.device(name)
