"""The index's vectors in bulk, outside the graph: read out, and ranked exactly.

hnswlib hands vectors out one item at a time (``get_items``), so a sweep over the whole index
reads them a chunk at a time (:func:`stored_vectors`). When the caller has the vectors already
(the collection's embeddings, row = id), :func:`rows` takes them from there instead, which is
what the collection does.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np


def stored_vectors(index: Any, ids: np.ndarray, dim: int) -> np.ndarray:
    """The float32 vectors of stored ``ids`` read out of an hnswlib index (caller holds its lock).

    hnswlib copies item by item (about 0.04 ms an item, 0.8): fine for a chunk, and unlike its
    pickled state (``__getstate__``, a copy of the whole graph) the memory stays per chunk.
    """
    if len(ids) == 0:
        return np.empty((0, dim), dtype=np.float32)
    out = index.get_items(ids, return_type="numpy")
    return np.ascontiguousarray(out, dtype=np.float32).reshape(len(ids), dim)


def rows(vectors_by_id: np.ndarray, ids: np.ndarray, dim: int) -> np.ndarray:
    """Rows ``ids`` of the caller's vector table (row = id) as contiguous float32.

    Raises:
        ValueError: The table is not ``(N, dim)`` or has no row for the largest id.
    """
    table = np.asarray(vectors_by_id)
    if table.ndim != 2 or table.shape[1] != dim:
        raise ValueError(f"vectors_by_id must have shape (N, {dim}), got {table.shape}")
    if len(ids) and int(ids.max()) >= len(table):
        raise ValueError(f"vectors_by_id has {len(table)} rows, id {int(ids.max())} needs "
                         "more")
    return np.ascontiguousarray(table[ids], dtype=np.float32)


def topk(sims: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Column positions and values of the ``k`` largest entries of each row, best first."""
    if k < sims.shape[1]:
        part = np.argpartition(-sims, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(sims.shape[1]), sims.shape).copy()
    vals = np.take_along_axis(sims, part, axis=1)
    order = np.argsort(-vals, axis=1, kind="stable")
    return np.take_along_axis(part, order, axis=1), np.take_along_axis(vals, order, axis=1)


def exact_topk(queries: np.ndarray, ids: np.ndarray,
               vectors_of: Callable[[np.ndarray], np.ndarray], k: int, chunk: int) -> np.ndarray:
    """Ids of the exact ``k`` most similar of ``ids`` (vectors from ``vectors_of``) per query.

    Sweeps ``chunk`` ids at a time, so temporary memory stays ``queries x (chunk + k)``.
    """
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_sims = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(ids), chunk):
        block = ids[start:start + chunk]
        sims = queries @ vectors_of(block).T
        cand_sims = np.concatenate([best_sims, sims], axis=1)
        cand_ids = np.concatenate([best_ids, np.broadcast_to(block, sims.shape)], axis=1)
        top, best_sims = topk(cand_sims, min(k, cand_sims.shape[1]))
        best_ids = np.take_along_axis(cand_ids, top, axis=1)
    return best_ids


def put_others(labels: np.ndarray, sims: np.ndarray, rows: np.ndarray, out_ids: np.ndarray,
               out_sims: np.ndarray) -> None:
    """Write each row's neighbours other than the item itself after column 0 of the outputs.

    ``labels`` / ``sims`` hold one extra neighbour per row: the item itself may come back
    anywhere in its own list, or not at all.
    """
    others = labels != rows[:, None]
    # Stable argsort of "is self" moves the item's own entry to the end of its row.
    width = min(out_ids.shape[1], labels.shape[1]) - 1
    order = np.argsort(~others, axis=1, kind="stable")[:, :width]
    out_ids[:, 1:1 + width] = np.take_along_axis(labels, order, axis=1)
    out_sims[:, 1:1 + width] = np.take_along_axis(sims, order, axis=1)


def knn_rows(index: Any, vectors: np.ndarray, k: int, live: int) -> tuple[np.ndarray, np.ndarray]:
    """Row-by-row hnswlib search for when a batch query fails (caller holds the index's lock).

    hnswlib refuses a whole batch when any row reaches fewer than ``k`` items; here each row
    gets the widest search (``ef`` = ``live`` items) and ``k`` shrinks until hnswlib answers.
    Missing slots are -1 / NaN. The caller resets ``ef`` afterwards.
    """
    labels = np.full((len(vectors), k), -1, dtype=np.int64)
    sims = np.full((len(vectors), k), np.nan, dtype=np.float32)
    index.set_ef(max(live, k))
    for row, vector in enumerate(vectors):
        kk = k
        while kk:
            try:
                got, dist = index.knn_query(vector, k=kk, num_threads=1)
            except RuntimeError:
                kk = kk - 1 if kk < 8 else kk * 3 // 4
                continue
            labels[row, :kk], sims[row, :kk] = got[0], 1.0 - dist[0]
            break
    return labels, sims
