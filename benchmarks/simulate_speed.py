"""Time the pixel event simulator on one core versus pile-up; writes results/simulate_speed.{json,png}.

Timed: `EventSimulator.simulate` (particles, transport, digitisation, truth weights) per event, mean of
several events after one warm-up event, with OMP/MKL/OpenBLAS limited to one thread. Writing the
compressed CSV files is timed separately (`write_seconds`), since it depends on the disk.
"""

from __future__ import annotations

import os

for _variable in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
    os.environ[_variable] = "1"

import json  # noqa: E402
import platform  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import click  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from trackrt.data.simulate import EventSimulator, SimulationConfig  # noqa: E402
from trackrt.data.trackml import write_event  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


def time_pileup(pileup: float, repeats: int, seed: int) -> dict[str, float]:
    """Seconds per simulated event at one pile-up (one warm-up event, then `repeats` timed events)."""
    simulator = EventSimulator(SimulationConfig(pileup=pileup))
    simulator.simulate(0, seed)
    seconds, hits = [], []
    for event_id in range(1, repeats + 1):
        start = time.perf_counter()
        event = simulator.simulate(event_id, seed)
        seconds.append(time.perf_counter() - start)
        hits.append(len(event.hits))
    with tempfile.TemporaryDirectory() as scratch:
        start = time.perf_counter()
        write_event(scratch, event, compress=True)
        write_seconds = time.perf_counter() - start
    return {
        "pileup": pileup,
        "events": repeats,
        "mean_seconds": float(np.mean(seconds)),
        "min_seconds": float(np.min(seconds)),
        "max_seconds": float(np.max(seconds)),
        "mean_hits": float(np.mean(hits)),
        "write_seconds": write_seconds,
    }


@click.command()
@click.option("--pileups", default="50,100,200,300", show_default=True, help="Comma-separated ⟨μ⟩ values.")
@click.option("--repeats", default=3, show_default=True, help="Timed events per pile-up.")
@click.option("--seed", default=2026, show_default=True)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), default=RESULTS, show_default=True)
def main(pileups: str, repeats: int, seed: int, out: Path) -> None:
    """Time the simulator and write JSON + PNG."""
    load_before = os.getloadavg()
    rows = [time_pileup(float(mu), repeats, seed) for mu in pileups.split(",")]
    document = {
        "benchmark": "simulate one event on one core (EventSimulator.simulate)",
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "cpus": os.cpu_count(),
        },
        "versions": {"python": platform.python_version(), "numpy": np.__version__},
        "threads": 1,
        "load_average_1min_before_after": [load_before[0], os.getloadavg()[0]],
        "target_seconds_at_mu_200": 2.0,
        "results": rows,
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "simulate_speed.json").write_text(json.dumps(document, indent=2))
    fig = Figure(figsize=(5, 3.5))
    ax = fig.subplots()
    mus = [r["pileup"] for r in rows]
    ax.errorbar(
        mus,
        [r["mean_seconds"] for r in rows],
        yerr=[
            [r["mean_seconds"] - r["min_seconds"] for r in rows],
            [r["max_seconds"] - r["mean_seconds"] for r in rows],
        ],
        marker="o",
        label="simulate (mean, min-max)",
    )
    ax.plot(mus, [r["write_seconds"] for r in rows], marker="s", ls="--", label="write .csv.gz")
    ax.axhline(2.0, color="grey", ls=":", label="target at ⟨μ⟩=200")
    ax.set_xlabel("pile-up ⟨μ⟩")
    ax.set_ylabel("seconds per event (1 core)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "simulate_speed.png", dpi=110)
    for r in rows:
        click.echo(
            f"mu={r['pileup']:g}: {r['mean_seconds']:.2f} s/event ({r['mean_hits']:.0f} hits),"
            f" write {r['write_seconds']:.2f} s"
        )


if __name__ == "__main__":
    main()
