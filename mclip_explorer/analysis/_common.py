"""Shared helpers of the analysis views: exact cosine top-k, vector fetching, validation.

The views search exactly (a matrix product in chunks) rather than through the collection's
hnswlib index, so an audit measures the *model*, never the approximation error of the index.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

# Above this many items a self-join (duplicates, outliers) goes through the collection's hnswlib
# index: the exact one costs n^2 dim flops, about 5 s at 20k items on 2 cores but hours at 1M.
EXACT_LIMIT = 20_000
# Rows of queries per matrix product: 2048 x 100k float32 scores is 800 MB; keep it smaller.
_CHUNK_CELLS = 32_000_000

KINDS = ("image", "text")


def as_unit(vectors: Any, name: str = "vectors") -> np.ndarray:
    """Validate a 2-D float array and L2-normalise its rows (float32; zero rows stay zero)."""
    array = np.asarray(vectors, dtype=np.float32)
    if array.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array (n, dim), got shape {array.shape}")
    if not np.isfinite(array).all():
        bad = np.flatnonzero(~np.isfinite(array).all(axis=1))[:5].tolist()
        raise ValueError(f"{name} has non-finite rows (first: {bad}); drop failed items first")
    norms = np.linalg.norm(array, axis=1, keepdims=True)
    return array / np.where(norms > 0, norms, 1.0)


def as_ids(ids: Any, n: int, name: str = "ids") -> np.ndarray:
    """Validate an id vector of length ``n`` (int64, unique)."""
    array = np.asarray(ids)
    if array.ndim != 1 or len(array) != n:
        raise ValueError(f"{name} must be a 1-D array of length {n}, got shape {array.shape}")
    if not np.issubdtype(array.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {array.dtype}")
    array = array.astype(np.int64)
    if len(np.unique(array)) != n:
        raise ValueError(f"{name} holds repeated ids")
    return array


def check_k(k: int, name: str = "k") -> int:
    """A positive integer, or a ValueError naming the argument."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{name} must be a positive integer, got {k!r}")
    return int(k)


def check_kind(kind: str) -> str:
    """``"image"`` or ``"text"``, or a ValueError listing both."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
    return kind


def top_k(
    queries: np.ndarray, base: np.ndarray, k: int, *, exclude: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Exact cosine top-k of unit ``queries`` against unit ``base``.

    Args:
        queries: ``(q, dim)`` unit rows.
        base: ``(n, dim)`` unit rows.
        k: Neighbours per query (capped at the available count).
        exclude: Optional ``(q,)`` base position to leave out per query (the query itself in a
            self-join), ``-1`` for none.

    Returns:
        ``(positions, scores)``, each ``(q, k)``, best first; positions index ``base``.
    """
    available = len(base) - (0 if exclude is None else 1)
    k = min(k, max(available, 0))
    positions = np.empty((len(queries), k), dtype=np.int64)
    scores = np.empty((len(queries), k), dtype=np.float32)
    if k == 0 or len(queries) == 0:
        return positions, scores
    step = max(1, _CHUNK_CELLS // max(len(base), 1))
    for start in range(0, len(queries), step):
        block = queries[start : start + step] @ base.T
        if exclude is not None:
            rows = np.arange(len(block))
            own = exclude[start : start + step]
            block[rows[own >= 0], own[own >= 0]] = -np.inf
        part = np.argpartition(-block, k - 1, axis=1)[:, :k]
        part_scores = np.take_along_axis(block, part, axis=1)
        order = np.argsort(-part_scores, axis=1, kind="stable")
        positions[start : start + step] = np.take_along_axis(part, order, axis=1)
        scores[start : start + step] = np.take_along_axis(part_scores, order, axis=1)
    return positions, scores


# --------------------------------------------------------------------------- collection access
def item_vectors(coll: Any, kind: str = "image") -> tuple[np.ndarray, np.ndarray]:
    """Ids and unit vectors of a collection's live, successfully encoded items of ``kind``."""
    check_kind(kind)
    ids, vectors = coll.vectors(kind)
    ids = np.asarray(ids, dtype=np.int64)
    vectors = np.asarray(vectors, dtype=np.float32)
    keep = np.isfinite(vectors).all(axis=1) if len(vectors) else np.zeros(0, dtype=bool)
    items = coll.items
    if "deleted" in items.columns and len(ids):
        keep &= ~items["deleted"].to_numpy(dtype=bool)[ids]
    return ids[keep], as_unit(vectors[keep], f"{kind} vectors")


def self_neighbours(
    coll: Any, kind: str, ids: np.ndarray, vectors: np.ndarray, k: int
) -> tuple[np.ndarray, np.ndarray]:
    """Each item's ``k`` nearest other items of the same kind, as positions into ``ids``.

    Exact below :data:`EXACT_LIMIT` items, else from the collection's index (a hit that is not
    among ``ids`` is dropped, and missing slots are padded with position -1 and score -inf).

    Returns:
        ``(positions, scores)``, each ``(n, k)``, best first.
    """
    if len(ids) <= EXACT_LIMIT:
        return top_k(vectors, vectors, k, exclude=np.arange(len(ids)))
    position_of = np.full(int(ids.max()) + 1, -1, dtype=np.int64)
    position_of[ids] = np.arange(len(ids))
    positions = np.full((len(ids), k), -1, dtype=np.int64)
    scores = np.full((len(ids), k), -np.inf, dtype=np.float32)
    batch = 1024
    for start in range(0, len(ids), batch):
        hit, hit_scores = coll.neighbours(vectors[start : start + batch], k + 1, kind=kind)
        valid = (hit >= 0) & (hit < len(position_of))
        hit_position = np.where(valid, position_of[np.where(valid, hit, 0)], -1)
        query = start + np.arange(len(hit))[:, None]
        # Drop the query itself and hits outside ``ids``; keep the best k of the rest in order.
        keep = (hit_position >= 0) & (hit_position != query)
        for row in range(len(hit)):
            chosen = np.flatnonzero(keep[row])[:k]
            positions[start + row, : len(chosen)] = hit_position[row, chosen]
            scores[start + row, : len(chosen)] = hit_scores[row, chosen]
    return positions, scores


def encode_texts(coll: Any, texts: list[str]) -> np.ndarray:
    """Encode a batch of texts with the collection's own text tower (unit rows)."""
    if not texts:
        return np.zeros((0, int(coll.dim)), dtype=np.float32)
    return as_unit(coll.encoder.encode_text(list(texts)), "query vectors")


def n_items(coll: Any) -> int:
    """Number of rows (ids) of a collection, deleted ones included."""
    return len(coll.items)


def require_columns(frame: pd.DataFrame, columns: tuple[str, ...], name: str) -> None:
    """Raise a ValueError naming the missing columns of ``frame``."""
    missing = [c for c in columns if c not in frame.columns]
    if missing:
        raise ValueError(f"{name} lacks column(s) {missing}; it has {list(frame.columns)}")
