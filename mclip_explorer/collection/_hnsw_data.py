"""The index's vectors in bulk, outside the graph: read out, and ranked exactly.

hnswlib hands vectors out one item at a time (``get_items``, about 0.1 ms an item), which is too
slow for a sweep over the whole index. Its pickled state exposes the level-0 block, where each
element holds its neighbour list, its vector and its label; :func:`level0_vectors` slices the
vectors out of it in one copy. When the caller has the vectors already (the collection's
embeddings, row = id), :func:`rows` takes them from there instead.
"""

from __future__ import annotations

from typing import Any

import numpy as np


def level0_vectors(index: Any, dim: int, ids: np.ndarray) -> np.ndarray:
    """The float32 vectors of ``ids`` (stored ids), copied in bulk out of an hnswlib index.

    Args:
        index: The ``hnswlib.Index``; the caller holds its lock.
        dim: Vector size.
        ids: Ids present in the index.

    Returns:
        ``(len(ids), dim)`` float32 rows in the order of ``ids``.
    """
    state = index.__getstate__()[0]
    count, per = int(state["cur_element_count"]), int(state["size_data_per_element"])
    raw = np.asarray(state["data_level0"]).view(np.uint8)[: count * per].reshape(count, per)
    del state
    # Each element ends with its vector (4 * dim bytes) and then its int64 label.
    start, label_at = int(raw.shape[1] - 8 - 4 * dim), int(raw.shape[1] - 8)
    labels = np.ascontiguousarray(raw[:, label_at:label_at + 8]).view(np.int64)[:, 0]
    order = np.argsort(labels, kind="stable")
    pos = order[np.searchsorted(labels[order], ids)]
    return np.ascontiguousarray(raw[pos, start:label_at]).view(np.float32)


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


def exact_topk(queries: np.ndarray, ids: np.ndarray, vectors: np.ndarray, k: int,
               chunk: int) -> np.ndarray:
    """Ids of the exact ``k`` most similar of ``vectors`` (labelled ``ids``) for each query.

    Sweeps ``chunk`` vectors at a time, so temporary memory stays ``queries x (chunk + k)``.
    """
    best_ids = np.empty((len(queries), 0), dtype=np.int64)
    best_sims = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(ids), chunk):
        block = ids[start:start + chunk]
        sims = queries @ vectors[start:start + chunk].T
        cand_sims = np.concatenate([best_sims, sims], axis=1)
        cand_ids = np.concatenate([best_ids, np.broadcast_to(block, sims.shape)], axis=1)
        top, best_sims = topk(cand_sims, min(k, cand_sims.shape[1]))
        best_ids = np.take_along_axis(cand_ids, top, axis=1)
    return best_ids
