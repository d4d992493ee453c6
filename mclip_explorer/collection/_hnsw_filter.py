"""Filtered search strategies of :class:`~mclip_explorer.collection.index.VectorIndex`.

Filtered search (``allowed_ids``, the collection's metadata ``where``) picks its strategy by
measurement (``bench/collection.py filters``, 100k items; see docs/benchmarks.md): a selective
filter (up to 2,000 items or 1 % of the index) is answered exactly by brute force over the
allowed vectors; a broader one by over-fetching from the graph and dropping what is not
allowed, widening until ``k`` are found. hnswlib's filter callback is not used: at 0.1-1 %
allowed it cost 20-460 ms a query (the walk rejects nearly every node, with a Python call per
node); at 20-90 % it was 1-2 ms faster than over-fetching, not worth a second mechanism.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from mclip_explorer.collection import _hnsw_data

Knn = Callable[[np.ndarray, int, int], tuple[np.ndarray, np.ndarray]]


def live_allowed(allowed: np.ndarray, labels: np.ndarray, dead: np.ndarray) -> np.ndarray:
    """The sorted, distinct ``allowed`` ids that are stored (``labels``, sorted) and not dead."""
    if not (allowed[1:] > allowed[:-1]).all():  # sorting dominates broad filters
        allowed = np.unique(allowed)
    if not len(labels):
        return allowed[:0]
    # Sorted lookups, not np.isin against all ids: this runs on every filtered query.
    pos = np.minimum(np.searchsorted(labels, allowed), len(labels) - 1)
    return np.asarray(allowed[(labels[pos] == allowed) & ~dead[pos]])


def brute(vectors: np.ndarray, k: int, allowed: np.ndarray, base: np.ndarray,
          out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Exact search over the allowed vectors ``base`` only (selective filters)."""
    kk = min(k, len(allowed))
    ids, scores = _hnsw_data.topk(vectors @ base.T, kk)
    out_ids[:, :kk], out_scores[:, :kk] = allowed[ids], scores
    return out_ids, out_scores


def overfetch(knn: Knn, live: int, vectors: np.ndarray, k: int, ef: int, allowed: np.ndarray,
              out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Graph search (``knn(vectors, k, ef)``) for more than ``k``, dropping what is not allowed.

    The fetch widens fourfold for the rows still short of ``k`` until every row is full or the
    whole index (``live`` items) was fetched.
    """
    share = len(allowed) / live
    fetch = min(live, max(2 * k, math.ceil(2 * k / share)))
    todo = np.arange(len(vectors))
    while len(todo):
        labels, scores = knn(vectors[todo], fetch, max(ef, fetch))
        keep = allowed[np.minimum(np.searchsorted(allowed, labels), len(allowed) - 1)] == labels
        filled = keep.sum(axis=1)
        done = (filled >= k) | (fetch >= live)
        for row in np.flatnonzero(done):
            sel = np.flatnonzero(keep[row])[:k]
            out_ids[todo[row], :len(sel)] = labels[row, sel]
            out_scores[todo[row], :len(sel)] = scores[row, sel]
        todo = todo[~done]
        fetch = min(live, fetch * 4)
    return out_ids, out_scores
