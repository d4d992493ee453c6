"""Outliers: items far from all their nearest neighbours.

The score of an item is its mean cosine distance (``1 - cos``) to its ``k`` nearest other items.
An item is flagged when its score is far above the typical score: a robust z-score (distance from
the median in units of 1.4826 x the median absolute deviation, which equals the standard deviation
for normal data) above ``z``. The median and MAD are not dragged up by the outliers themselves,
as a mean and a standard deviation would be.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import (
    as_ids,
    as_unit,
    check_k,
    check_kind,
    item_vectors,
    self_neighbours,
    top_k,
)

MAD_TO_SIGMA = 1.4826


def outliers(coll: Any, *, k: int = 10, z: float = 3.5, kind: str = "image") -> pd.DataFrame:
    """Score every item of a collection by its distance to its nearest neighbours.

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        k: Neighbours averaged per item.
        z: Robust z-score above which an item is flagged.
        kind: ``"image"`` (default) or ``"text"``.

    Returns:
        One row per item, most isolated first: ``id``, ``score`` (mean cosine distance to its
        ``k`` nearest neighbours), ``z`` (robust z-score) and ``outlier`` (bool).
    """
    check_kind(kind)
    ids, vectors = item_vectors(coll, kind)
    neighbours = self_neighbours(coll, kind, ids, vectors, check_k(k))
    return outliers_from_vectors(ids, vectors, k=k, z=z, neighbours=neighbours)


def outliers_from_vectors(
    ids: Any,
    vectors: Any,
    *,
    k: int = 10,
    z: float = 3.5,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The array-level core of :func:`outliers`.

    Args:
        ids: ``(n,)`` item ids.
        vectors: ``(n, dim)`` embeddings.
        k: Neighbours averaged per item.
        z: Robust z-score threshold.
        neighbours: Optional precomputed ``(positions, scores)`` of each row's nearest other
            rows (score -inf for a missing slot); default exact search.

    Returns:
        The frame described in :func:`outliers`.
    """
    from scipy.stats import median_abs_deviation

    k = check_k(k)
    if not isinstance(z, (int, float)) or z <= 0:
        raise ValueError(f"z must be a positive number, got {z!r}")
    unit = as_unit(vectors)
    ids = as_ids(ids, len(unit))
    if len(unit) < 3:
        raise ValueError(f"outlier scores need at least 3 items, got {len(unit)}")
    if neighbours is None:
        neighbours = top_k(unit, unit, k, exclude=np.arange(len(unit)))
    scores = neighbours[1].astype(np.float64)
    # A missing neighbour slot (index path) counts as the farthest possible, cosine -1.
    distance = (1.0 - np.where(np.isfinite(scores), scores, -1.0)).mean(axis=1)
    median = float(np.median(distance))
    scale = MAD_TO_SIGMA * float(median_abs_deviation(distance))
    if scale <= 1e-9:
        # More than half the items share one score (e.g. many exact copies): fall back to the
        # standard deviation rather than flag every item that is not such a copy.
        scale = float(distance.std()) or 1.0
    robust_z = (distance - median) / scale
    frame = pd.DataFrame(
        {
            "id": ids,
            "score": distance.astype(np.float32),
            "z": robust_z.astype(np.float32),
            "outlier": robust_z > z,
        }
    )
    return frame.sort_values("score", ascending=False, kind="stable").reset_index(drop=True)
