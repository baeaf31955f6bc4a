"""TrackML particle_id bit fields: vertex 52+, primary 36+, generation 24+, secondary 12+, process 0+."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import numpy.typing as npt
import pandas as pd

# (name, lowest bit, number of bits); vertex gets 11 bits so that ids stay positive in int64.
PARTICLE_ID_FIELDS: tuple[tuple[str, int, int], ...] = (
    ("vertex", 52, 11),
    ("primary", 36, 16),
    ("generation", 24, 12),
    ("secondary", 12, 12),
    ("process", 0, 12),
)


def decode_particle_id(ids: npt.ArrayLike | pd.Series) -> pd.DataFrame:
    """Split particle ids into vertex, primary, generation, secondary and process (int64 columns)."""
    values = np.asarray(ids)
    if values.size and not np.issubdtype(values.dtype, np.integer):
        raise TypeError(f"particle ids must be integers, got dtype {values.dtype}")
    if values.size and (values < 0).any():
        raise ValueError(f"particle ids must be non-negative; {int((values < 0).sum())} are negative")
    bits = values.astype(np.uint64)
    columns = {
        name: ((bits >> np.uint64(shift)) & np.uint64((1 << width) - 1)).astype(np.int64)
        for name, shift, width in PARTICLE_ID_FIELDS
    }
    index = ids.index if isinstance(ids, pd.Series) else None
    return pd.DataFrame(columns, index=index)


def encode_particle_id(
    vertex: npt.ArrayLike,
    primary: npt.ArrayLike,
    generation: npt.ArrayLike,
    secondary: npt.ArrayLike,
    process: npt.ArrayLike,
) -> np.ndarray:
    """Pack the five fields into int64 particle ids; refuses values that do not fit their bits."""
    fields: Sequence[npt.ArrayLike] = (vertex, primary, generation, secondary, process)
    arrays = np.broadcast_arrays(*[np.asarray(f) for f in fields])
    packed = np.zeros(arrays[0].shape, dtype=np.uint64)
    for (name, shift, width), array in zip(PARTICLE_ID_FIELDS, arrays, strict=True):
        if array.size and not np.issubdtype(array.dtype, np.integer):
            raise TypeError(f"particle id field '{name}' must be integers, got dtype {array.dtype}")
        limit = (1 << width) - 1
        bad = (array < 0) | (array > limit)
        if bad.any():
            raise ValueError(
                f"particle id field '{name}' must lie in [0, {limit}]; {int(bad.sum())} values do not"
            )
        packed |= array.astype(np.uint64) << np.uint64(shift)
    return packed.astype(np.int64)
