"""`trackrt.runtime` imports and reconstructs with ONNX Runtime where torch cannot be imported."""

from __future__ import annotations

import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import sys
    import tempfile
    from pathlib import Path

    sys.modules["torch"] = None  # any `import torch` now raises ImportError

    import trackrt.runtime
    from trackrt.data.trackml import write_event
    from trackrt.runtime import BackendUnavailable, Tracker
    from trackrt.runtime.job import RunConfig, run_job
    from trackrt.runtime.synthetic import synthetic_event, write_synthetic_artifact

    tmp = Path(tempfile.mkdtemp())
    artifact = write_synthetic_artifact(tmp / "artifact")
    event = synthetic_event(num_particles=20, seed=1)
    with Tracker.load(artifact, backend="auto") as tracker:
        assert tracker.backend.name == "onnxruntime"
        result = tracker.reconstruct(event.hits, event.event_id)
    assert result.num_tracks == 20, result.num_tracks
    try:
        Tracker.load(artifact, backend="torch")
    except BackendUnavailable as exc:
        assert "PyTorch" in str(exc)
    else:
        raise AssertionError("the torch backend loaded without torch")

    write_event(tmp / "events", event)
    summary = run_job(RunConfig(artifact, tmp / "events", tmp / "out", warmup=False), progress=False)
    assert summary.ok and summary.metrics.efficiency == 1.0
    assert sys.modules["torch"] is None
    print("torch-free ok")
    """
)


def test_runtime_runs_without_torch():
    completed = subprocess.run(
        [sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=120, check=False
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    assert "torch-free ok" in completed.stdout
