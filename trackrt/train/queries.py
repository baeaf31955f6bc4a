"""Dynamic queries in training: predicted seeds (≥ τ, top-M) united with the true first hits.

At inference the decoder's queries are the hits whose seed probability is ≥ τ, capped at M by
score (`trackrt.data.tracks.select_seeds`). In training the seed head is still learning, so every
target particle's first hit is added as a query as well: each target can then be matched, the
decoder learns from all of them from the first step, and the predicted seeds that are not first
hits supply the negative (unmatched → not valid) queries it meets at inference. The cap keeps all
true first hits and fills the rest with the best-scoring predicted seeds. The seed head is trained
by its own per-hit loss; query embeddings are detached (the model's `detach_queries`).
"""

from __future__ import annotations

import numpy as np

from trackrt.data.tracks import select_seeds


def training_query_indices(
    seed_logits: np.ndarray,
    seed_targets: np.ndarray,
    threshold: float,
    max_queries: int,
    include_true_seeds: bool = True,
) -> np.ndarray:
    """Ascending hit indices (int64) of the training queries for one event.

    Predicted seeds (probability ≥ `threshold`, top `max_queries`) plus, with `include_true_seeds`,
    every hit flagged in `seed_targets`; at most max(`max_queries`, #true seeds) queries. An event
    with hits always gets at least one query (its best-scoring hit), so the valid head still learns.
    """
    seed_logits = np.asarray(seed_logits, dtype=np.float64)
    if len(seed_logits) == 0:
        return np.zeros(0, dtype=np.int64)
    if include_true_seeds:
        true = np.flatnonzero(np.asarray(seed_targets, dtype=bool))
        extra = np.setdiff1d(select_seeds(seed_logits, threshold, None), true, assume_unique=True)
        room = max(max_queries - len(true), 0)
        if len(extra) > room:
            by_score = np.argsort(-seed_logits[extra], kind="stable")
            extra = extra[by_score[:room]]
        chosen = np.union1d(true, extra)
    else:
        chosen = select_seeds(seed_logits, threshold, max_queries)
    if len(chosen) == 0:
        chosen = np.array([int(np.argmax(seed_logits))])
    return np.sort(chosen).astype(np.int64)
