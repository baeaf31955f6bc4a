"""TrackML scoring weights per hit: the official (phase 1) hit-order × pT weighting.

A particle's hits are ranked by |tz − vz| (distance along z from its vertex). The order weight
interpolates the proposal (10, 8, 6, 5, 3, 3, 3, 5, 6) over the particle's hit count and is normalised
per particle; particles with fewer than 4 hits, hit ranks ≥ 20 and noise weigh 0 (counts above 20 use
the 20-hit row). The pT weight is 0.2 up to 0.5 GeV, rises linearly to 1 at 3 GeV and stays there
(0 below 0.05 GeV). Secondary particles (particle_id generation ≠ 0) weigh 0, as in the released
TrackML files (the library's `weight_hits_phase2`; `include_secondaries=True` gives phase 1). Weights
are normalised to sum 1 over the event.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pandas as pd

from trackrt.data.particle_ids import decode_particle_id

ORDER_PROPOSAL: tuple[float, ...] = (10.0, 8.0, 6.0, 5.0, 3.0, 3.0, 3.0, 5.0, 6.0)
ORDER_MIN_HITS = 4
ORDER_MAX_HITS = 20
PT_WEIGHT_KNOTS: tuple[tuple[float, float], ...] = ((0.05, 0.2), (0.5, 0.2), (3.0, 1.0))


def order_weight_matrix() -> np.ndarray:
    """Order weights indexed [nhits, ihit]; rows below ORDER_MIN_HITS are zero, each other row sums to 1."""
    matrix = np.zeros((ORDER_MAX_HITS + 1, ORDER_MAX_HITS))
    proposal = np.asarray(ORDER_PROPOSAL)
    for nhits in range(ORDER_MIN_HITS, ORDER_MAX_HITS + 1):
        supports = np.arange(len(proposal)) * (nhits - 1) / (len(proposal) - 1)
        weights = np.interp(np.arange(nhits), supports, proposal)
        matrix[nhits, :nhits] = weights / weights.sum()
    return matrix


def pt_weight(pt: np.ndarray) -> np.ndarray:
    """pT-dependent hit weight: 0.2 up to 0.5 GeV, linear to 1.0 at 3 GeV, 0 below 0.05 GeV."""
    xp, fp = zip(*PT_WEIGHT_KNOTS, strict=True)
    return np.interp(np.asarray(pt, dtype=np.float64), xp, fp, left=0.0, right=1.0)


def trackml_weights(
    truth: pd.DataFrame,
    particles: pd.DataFrame,
    nhits_from: Literal["particles", "truth"] = "particles",
    include_secondaries: bool = False,
) -> np.ndarray:
    """Official TrackML weight of each truth row (float64, in truth's row order, summing to 1).

    `nhits_from="particles"` uses the particles file's `nhits` (the official phase-1 rule);
    `"truth"` counts each particle's rows in `truth` instead. Secondaries weigh 0 unless
    `include_secondaries`. An event without any weighted hit gets
    all-zero weights.
    """
    if nhits_from not in ("particles", "truth"):
        raise ValueError(f"nhits_from must be 'particles' or 'truth', not {nhits_from!r}")
    by_id = particles.set_index("particle_id")
    if not by_id.index.is_unique:
        raise ValueError("particles.particle_id has duplicate values; weights need one row per particle")
    pid = truth["particle_id"]
    known = pid.isin(by_id.index) & (pid != 0)
    if not include_secondaries:
        known &= decode_particle_id(pid.clip(lower=0))["generation"].to_numpy() == 0
    vz = pid.map(by_id["vz"])
    pt = np.hypot(by_id["px"].to_numpy(np.float64), by_id["py"].to_numpy(np.float64))
    w_pt = pid.map(pd.Series(pt_weight(pt), index=by_id.index)).where(known, 0.0).to_numpy()

    distance = (truth["tz"] - vz).abs()
    ihit = (distance.groupby(pid).rank(method="average") - 1).fillna(0).to_numpy().astype(np.int64)
    if nhits_from == "particles":
        nhits = pid.map(by_id["nhits"]).where(known, 0).to_numpy().astype(np.int64)
    else:
        nhits = pid.map(pid[known].value_counts()).where(known, 0).to_numpy().astype(np.int64)
    too_many = known.to_numpy() & (ihit >= nhits) & (nhits >= ORDER_MIN_HITS)
    if too_many.any():
        raise ValueError(
            f"{int(too_many.sum())} truth rows belong to particles with more hits in truth than their nhits"
        )
    clamped = np.minimum(nhits, ORDER_MAX_HITS)
    in_matrix = ihit < ORDER_MAX_HITS
    w_order = np.where(in_matrix, order_weight_matrix()[clamped, np.minimum(ihit, ORDER_MAX_HITS - 1)], 0.0)

    weights = w_pt * w_order
    total = weights.sum()
    return weights / total if total > 0 else weights
