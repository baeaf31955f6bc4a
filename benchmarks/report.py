"""What the PyTorch scans under `benchmarks/` share: where they ran, and writing their JSON + PNG."""

from __future__ import annotations

import json
import platform
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def environment(**machine: Any) -> dict[str, Any]:
    """`machine` (platform plus the given entries) and `versions` (python, torch) of a report."""
    return {
        "machine": {"platform": platform.platform(), **machine},
        "versions": {"python": platform.python_version(), "torch": torch.__version__},
    }


def write_report(report: dict[str, Any], out: Path, plot: Callable[[Path], None]) -> None:
    """Write `report` to `out` (JSON) and its figure beside it (`plot(PNG path)`), and say where."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    plot(out.with_suffix(".png"))
    print(f"wrote {out} and {out.with_suffix('.png')}")
