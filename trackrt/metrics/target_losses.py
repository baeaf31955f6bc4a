"""Where a filter + tracker chain loses each target particle: filter, seed, valid query or track building.

Each target particle is given the first stage it fails, in chain order:
- `filter`: the hit filter kept at most half of its hits, so no track can reach DM recall > 0.5;
- `seed`: no query is seeded on any of its kept hits (dynamic queries only);
- `valid`: queries are seeded on it, but none is a valid track (classifier, duplicate resolution);
- `tracks`: a valid query is seeded on it, but no track matches it by double majority;
- `found`: a track matches it (DM).
A query "is seeded on" a particle when its seed hit belongs to the particle. Fixed-query decoders have
no seeds: their particles go from `filter` straight to `tracks` or `found`.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

STAGES: tuple[str, ...] = ("filter", "seed", "valid", "tracks", "found")


def target_loss_stages(
    hit_particle_id: np.ndarray,
    target_particle_id: np.ndarray,
    kept: np.ndarray,
    found_particle_id: np.ndarray,
    query_hits: np.ndarray | None = None,
    valid_query_hits: np.ndarray | None = None,
) -> pd.DataFrame:
    """One row per target particle: particle_id, nhits, kept_hits and the `stage` where it is lost.

    `hit_particle_id` [N] is the truth of every hit of the event, `kept` [N] the filter's decision,
    `query_hits` / `valid_query_hits` the indices (into the N hits) of the seed hits of all queries and
    of the valid ones (None for fixed queries), `found_particle_id` the DM-matched particles.
    """
    hit_particle_id = np.asarray(hit_particle_id, dtype=np.int64)
    kept = np.asarray(kept, dtype=bool)
    if kept.shape != hit_particle_id.shape:
        raise ValueError(f"kept: expected shape {hit_particle_id.shape}, got {kept.shape}")
    targets = np.unique(np.asarray(target_particle_id, dtype=np.int64))
    index = np.searchsorted(targets, hit_particle_id)
    is_target_hit = index < len(targets)
    is_target_hit[is_target_hit] = targets[index[is_target_hit]] == hit_particle_id[is_target_hit]
    nhits = np.bincount(index[is_target_hit], minlength=len(targets))
    kept_hits = np.bincount(index[is_target_hit & kept], minlength=len(targets))
    found = np.isin(targets, np.asarray(found_particle_id, dtype=np.int64))
    stage = np.full(len(targets), "found", dtype=object)
    stage[~found] = "tracks"
    if query_hits is not None:
        stage[~found & ~np.isin(targets, _particles_at(hit_particle_id, valid_query_hits))] = "valid"
        stage[~found & ~np.isin(targets, _particles_at(hit_particle_id, query_hits))] = "seed"
    stage[~found & (2 * kept_hits <= nhits)] = "filter"
    return pd.DataFrame({"particle_id": targets, "nhits": nhits, "kept_hits": kept_hits, "stage": stage})


def _particles_at(hit_particle_id: np.ndarray, hits: np.ndarray | None) -> np.ndarray:
    if hits is None:
        return np.zeros(0, dtype=np.int64)
    return np.unique(hit_particle_id[np.asarray(hits, dtype=np.int64)])


def stage_counts(table: pd.DataFrame) -> dict[str, int]:
    """Target particles per stage, in chain order (every stage present, zeros included)."""
    counts = table["stage"].value_counts()
    return {stage: int(counts.get(stage, 0)) for stage in STAGES}


VERTEX_RADIUS_EDGES: tuple[float, ...] = (0.0, 1.0, 10.0, 50.0, 100.0, float("inf"))


def stage_counts_by_vertex_radius(
    table: pd.DataFrame, edges: tuple[float, ...] = VERTEX_RADIUS_EDGES
) -> list[dict]:
    """`stage_counts` per bin of production-vertex radius √(vx² + vy²) (mm): particles made at the beam
    line (first bin) against secondaries made in the detector (`high` None: open-ended); [] when the
    table has no vx, vy."""
    if not {"vx", "vy"} <= set(table.columns):
        return []
    radius = np.hypot(table["vx"].to_numpy(dtype=np.float64), table["vy"].to_numpy(dtype=np.float64))
    bins = pd.cut(radius, edges, include_lowest=True)
    rows = []
    for low, high, interval in zip(edges[:-1], edges[1:], bins.categories, strict=True):
        counts = stage_counts(table[bins == interval])
        open_ended = None if np.isinf(high) else high
        rows.append({"low": low, "high": open_ended, "particles": sum(counts.values()), "stages": counts})
    return rows
