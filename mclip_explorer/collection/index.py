"""Approximate nearest-neighbour search over unit vectors: a thin, validated hnswlib wrapper.

hnswlib's inner-product space on L2-normalised vectors gives cosine similarity (``score = 1 -
distance``). hnswlib stores neither ``space``, ``dim`` nor ``ef`` in its file, so they travel in
:attr:`VectorIndex.params` (the collection manifest) and :meth:`VectorIndex.load` checks the file
against them before hnswlib reads a byte of it. Deleted items stay in the file, flagged; their ids
are read back from those flags, so the index file alone says which ids are live. The file
checks live in :mod:`._hnsw_file`; bulk vector reads and exact ranking in :mod:`._hnsw_data`.

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
import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer._files import ByPath, FileRecord, atomic_write
from mclip_explorer.collection import _hnsw_data, _hnsw_file
from mclip_explorer.errors import CollectionError

SPACE = "ip"
# Below this many allowed items a filtered query is answered exactly by a matrix product over
# the caller's vectors (``vectors_by_id``); without them, hnswlib's get_items costs about 0.1 ms
# per item, so only tiny filters go that way.
BRUTE_FORCE_MAX = 2_000
BRUTE_FORCE_SHARE = 0.01  # ... or this share of the live items: over-fetching grows as 1/share
BRUTE_FORCE_MAX_STORED = 256
_GROWTH = 1.5  # capacity factor on resize: amortises the copy hnswlib makes when growing
_NORM_TOLERANCE = 1e-2  # float16-stored embeddings come back with |norm - 1| around 1e-3
_GRAPH_EF = 64  # default search breadth of knn_graph (see there)
_CHUNK = 8192  # rows per batch when sweeping the whole index (bounds temporary memory)


class VectorIndex:
    """An hnswlib HNSW index of L2-normalised float32 vectors keyed by non-negative int64 ids.

    Args:
        dim: Vector size.
        M: Graph degree (hnswlib ``M``); memory and build time grow with it.
        ef_construction: Candidate list size while building; higher gives a better graph.
        ef: Candidate list size while searching (raised to ``k`` when a query asks for more);
            ``None`` (default) picks :func:`auto_ef` of the current size, so recall holds as
            the index grows.
        random_seed: Seed of hnswlib's level generator, for reproducible graphs.
        num_threads: Threads for batch adds and batch queries (-1: all cores).
    """

    def __init__(
        self,
        dim: int,
        *,
        M: int = 16,  # noqa: N803  (hnswlib's own name)
        ef_construction: int = 200,
        ef: int | None = None,
        random_seed: int = 100,
        num_threads: int = -1,
    ) -> None:
        for name, value in (("dim", dim), ("M", M), ("ef_construction", ef_construction),
                            ("ef", 1 if ef is None else ef)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if M < 2:
            raise ValueError(f"M must be at least 2, got {M}")
        self.dim = int(dim)
        self.M = int(M)
        self.ef_construction = int(ef_construction)
        self.ef = None if ef is None else int(ef)
        self.random_seed = int(random_seed)
        self.num_threads = int(num_threads)
        self._lock = threading.RLock()  # add_items is not thread-safe with knn_query
        self._labels = np.empty(0, dtype=np.int64)  # every stored id, sorted
        self._dead = np.empty(0, dtype=bool)  # aligned with _labels
        self._index = self._new_hnsw(capacity=1024)

    def _new_hnsw(self, capacity: int) -> Any:
        import hnswlib

        index = hnswlib.Index(space=SPACE, dim=self.dim)
        index.init_index(max_elements=capacity, M=self.M, ef_construction=self.ef_construction,
                         random_seed=self.random_seed)
        index.set_ef(self.search_ef)
        return index

    # --------------------------------------------------------------------------- properties
    @property
    def params(self) -> dict[str, Any]:
        """JSON-able parameters for the manifest; :meth:`load` needs them back."""
        return {
            "space": SPACE,
            "dim": self.dim,
            "M": self.M,
            "ef_construction": self.ef_construction,
            "ef": self.ef,  # None: auto_ef(live count) at query time
            "random_seed": self.random_seed,
            "count": len(self._labels),
            "live": len(self),
            "hnswlib": _hnsw_file.hnswlib_version(),
        }

    @property
    def search_ef(self) -> int:
        """The search breadth queries use: ``ef`` if set, else :func:`auto_ef` of the size."""
        return self.ef if self.ef is not None else auto_ef(len(self))

    @property
    def ids(self) -> np.ndarray:
        """Live ids, ascending (int64)."""
        return self._labels[~self._dead]

    def __len__(self) -> int:
        return int(len(self._dead) - np.count_nonzero(self._dead))

    def __contains__(self, item_id: object) -> bool:
        if not isinstance(item_id, (int, np.integer)):
            return False
        pos = int(np.searchsorted(self._labels, item_id))
        return pos < len(self._labels) and self._labels[pos] == item_id and not self._dead[pos]

    def __repr__(self) -> str:
        return f"VectorIndex(dim={self.dim}, M={self.M}, ef={self.ef}, live={len(self)})"

    # ------------------------------------------------------------------------------ writing
    def add(self, ids: np.ndarray, vectors: np.ndarray) -> None:
        """Add vectors under new ids, growing the index as needed.

        Args:
            ids: ``(n,)`` distinct non-negative integers not yet in the index (live or deleted).
            vectors: ``(n, dim)`` float32 rows of unit length.

        Raises:
            ValueError: Bad shapes, repeated or already-present ids, non-finite or non-unit rows.
        """
        ids = _as_ids(ids, "ids")
        vectors = self._check_vectors(vectors, "vectors")
        if len(ids) != len(vectors):
            raise ValueError(f"{len(ids)} ids for {len(vectors)} vectors")
        if len(ids) == 0:
            return
        if len(np.unique(ids)) != len(ids):
            raise ValueError("ids contains repeated values")
        with self._lock:
            present = np.isin(ids, self._labels)
            if present.any():
                shown = ", ".join(str(i) for i in ids[present][:5])
                raise ValueError(f"ids already in the index (ids are never reused): {shown}")
            needed = len(self._labels) + len(ids)
            if needed > self._index.get_max_elements():
                self._index.resize_index(max(needed, int(self._index.get_max_elements() * _GROWTH)))
            self._index.add_items(vectors, ids, num_threads=self.num_threads)
            labels = np.concatenate([self._labels, ids])
            order = np.argsort(labels, kind="stable")
            self._labels = labels[order]
            self._dead = np.concatenate([self._dead, np.zeros(len(ids), dtype=bool)])[order]

    def reserve(self, extra: int) -> None:
        """Make room for ``extra`` more items at once: growing step by step copies the graph."""
        with self._lock:
            needed = len(self._labels) + int(extra)
            if needed > self._index.get_max_elements():
                self._index.resize_index(needed)

    def mark_deleted(self, ids: np.ndarray) -> None:
        """Hide ids from every later query; already-deleted ids are ignored.

        Raises:
            KeyError: An id that was never added.
        """
        ids = np.unique(_as_ids(ids, "ids"))
        with self._lock:
            pos = np.searchsorted(self._labels, ids)
            found = np.isin(ids, self._labels, assume_unique=True)
            if not found.all():
                shown = ", ".join(str(i) for i in ids[~found][:5])
                raise KeyError(f"ids not in the index: {shown}")
            for item_id, p in zip(ids.tolist(), pos.tolist(), strict=True):
                if not self._dead[p]:
                    self._index.mark_deleted(item_id)
                    self._dead[p] = True

    # ------------------------------------------------------------------------------ reading
    def get_vectors(self, ids: np.ndarray) -> np.ndarray:
        """The stored float32 vectors of a few live ids, ``(n, dim)`` (item by item: slow)."""
        ids = _as_ids(ids, "ids")
        if len(ids) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            try:
                # "list" is ten times faster than hnswlib 0.8's "numpy" return type.
                out = self._index.get_items(ids, return_type="list")
            except RuntimeError as error:
                raise KeyError(f"some ids are not live in the index: {error}") from None
        return np.asarray(out, dtype=np.float32).reshape(len(ids), self.dim)

    def _live_vectors(self, vectors_by_id: np.ndarray | None) -> np.ndarray:
        """Vectors of every live item in the order of :attr:`ids`; caller holds the lock.

        From ``vectors_by_id`` (row = id) when given, else copied out of hnswlib in bulk.
        """
        if vectors_by_id is not None:
            return _hnsw_data.rows(vectors_by_id, self.ids, self.dim)
        return _hnsw_data.level0_vectors(self._index, self.dim, self.ids)

    def query(
        self,
        vectors: np.ndarray,
        k: int,
        *,
        ef: int | None = None,
        allowed_ids: np.ndarray | None = None,
        vectors_by_id: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Find the ``k`` most similar live items of each query vector.

        Args:
            vectors: ``(n, dim)`` or ``(dim,)`` unit query vectors.
            k: Neighbours per query.
            ef: Search breadth for this call (default: the index's ``ef``; raised to ``k``).
            allowed_ids: Only these ids may be returned (a metadata filter); ids that are not
                live are ignored. Selective filters (``BRUTE_FORCE_MAX`` items or
                ``BRUTE_FORCE_SHARE`` of the index, with ``vectors_by_id``; else up to
                ``BRUTE_FORCE_MAX_STORED``) are searched exactly, broader ones by over-fetching
                from the graph.
            vectors_by_id: The stored vectors, row = id (e.g. the collection's embeddings),
                for exact search over a selective filter.

        Returns:
            ``(ids, scores)``: int64 ``(n, k')`` and float32 ``(n, k')`` cosine similarities,
            best first, where ``k' = min(k, live items)`` (at least 1); rows are padded with
            id -1 and score NaN when fewer than ``k'`` match.
        """
        vectors = self._check_vectors(vectors, "query vectors")
        # Clamped before anything is allocated: k=10**9 on 24 items must not cost 8 GB.
        k = min(_check_k(k), max(len(self), 1))
        ef = self.search_ef if ef is None else _check_k(ef, "ef")
        n = len(vectors)
        out_ids = np.full((n, k), -1, dtype=np.int64)
        out_scores = np.full((n, k), np.nan, dtype=np.float32)
        if n == 0:
            return out_ids, out_scores
        with self._lock:
            if allowed_ids is None:
                kk = min(k, len(self))
                if kk:
                    got_ids, got_scores = self._knn(vectors, kk, max(ef, kk))
                    out_ids[:, :kk], out_scores[:, :kk] = got_ids, got_scores
                return out_ids, out_scores
            allowed = _as_ids(allowed_ids, "allowed_ids")
            if not (allowed[1:] > allowed[:-1]).all():  # sorting dominates broad filters
                allowed = np.unique(allowed)
            # Sorted lookups, not np.isin against all ids: this runs on every filtered query.
            pos = np.minimum(np.searchsorted(self._labels, allowed), len(self._labels) - 1)
            if len(self._labels):
                allowed = allowed[(self._labels[pos] == allowed) & ~self._dead[pos]]
            else:
                allowed = allowed[:0]
            if len(allowed) == 0:
                return out_ids, out_scores
            brute_max = max(BRUTE_FORCE_MAX, BRUTE_FORCE_SHARE * len(self))
            if vectors_by_id is not None and len(allowed) <= brute_max:
                base = _hnsw_data.rows(vectors_by_id, allowed, self.dim)
                return self._brute(vectors, k, allowed, base, out_ids, out_scores)
            if len(allowed) <= BRUTE_FORCE_MAX_STORED:
                base = self.get_vectors(allowed)
                return self._brute(vectors, k, allowed, base, out_ids, out_scores)
            return self._overfetch(vectors, k, ef, allowed, out_ids, out_scores)

    def _knn(self, vectors: np.ndarray, k: int, ef: int) -> tuple[np.ndarray, np.ndarray]:
        """Run an hnswlib query for ``k <= len(self)`` results; caller holds the lock.

        Rows that reach fewer than ``k`` items through the graph are padded with -1 / NaN.
        """
        self._index.set_ef(ef)
        try:
            # One query is fastest on one thread; batches share the cores.
            threads = 1 if len(vectors) == 1 else self.num_threads
            try:
                labels, dist = self._index.knn_query(vectors, k=k, num_threads=threads)
            except RuntimeError:
                # hnswlib refuses the whole batch when any row reaches fewer than k items (a
                # sparse graph, many deletions, k close to the item count): go row by row.
                return self._knn_rows(vectors, k)
        finally:
            self._index.set_ef(self.search_ef)
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def _knn_rows(self, vectors: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Slow path of :meth:`_knn`: widest search per row, shrinking k until hnswlib answers."""
        labels = np.full((len(vectors), k), -1, dtype=np.int64)
        sims = np.full((len(vectors), k), np.nan, dtype=np.float32)
        self._index.set_ef(max(len(self), k))
        for row, vector in enumerate(vectors):
            kk = k
            while kk:
                try:
                    got, dist = self._index.knn_query(vector, k=kk, num_threads=1)
                except RuntimeError:
                    kk = kk - 1 if kk < 8 else kk * 3 // 4
                    continue
                labels[row, :kk], sims[row, :kk] = got[0], 1.0 - dist[0]
                break
        return labels, sims

    @staticmethod
    def _brute(vectors: np.ndarray, k: int, allowed: np.ndarray, base: np.ndarray,
               out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Exact search over the allowed vectors only (selective filters)."""
        kk = min(k, len(allowed))
        ids, scores = _hnsw_data.topk(vectors @ base.T, kk)
        out_ids[:, :kk], out_scores[:, :kk] = allowed[ids], scores
        return out_ids, out_scores

    def _overfetch(self, vectors: np.ndarray, k: int, ef: int, allowed: np.ndarray,
                   out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Graph search for more than ``k`` and drop what is not allowed (broad filters)."""
        live = len(self)
        share = len(allowed) / live
        fetch = min(live, max(2 * k, math.ceil(2 * k / share)))
        todo = np.arange(len(vectors))
        while len(todo):
            labels, scores = self._knn(vectors[todo], fetch, max(ef, fetch))
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

    def knn_graph(self, k: int, *, ef: int | None = None,
                  vectors_by_id: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest neighbours of every live item, itself first.

        Args:
            k: Neighbours per item, the item itself included.
            ef: Search breadth (default: ``max(64, k + 1)``, or the index's fixed ``ef`` when it
                has one). A map does not need the search's recall (UMAP's own neighbour search
                is approximate too), and at 100k items ef 64 halves this sweep against 128.
            vectors_by_id: The stored vectors, row = id; saves a bulk copy out of hnswlib.

        Returns:
            ``(ids, sims)``: int64 ``(N, k)`` neighbour ids and float32 ``(N, k)`` similarities,
            rows in the order of :attr:`ids`; ``k`` is clamped to ``N``.
        """
        k = _check_k(k)
        with self._lock:
            live = self.ids
            n = len(live)
            k = min(k, max(n, 1))  # before allocating (n, k)
            out_ids = np.full((n, k), -1, dtype=np.int64)
            out_sims = np.full((n, k), np.nan, dtype=np.float32)
            kk = min(k + 1, n)  # one extra: the item itself may come back anywhere or not at all
            if ef is None:
                ef = self.ef if self.ef is not None else _GRAPH_EF
            search_ef = max(_check_k(ef, "ef"), kk)
            every = self._live_vectors(vectors_by_id)
            for start in range(0, n, _CHUNK):
                rows = live[start:start + _CHUNK]
                vecs = self._check_vectors(every[start:start + _CHUNK], "vectors_by_id")
                labels, sims = self._knn(vecs, kk, search_ef) if kk else (None, None)
                out_ids[start:start + len(rows), 0] = rows
                out_sims[start:start + len(rows), 0] = 1.0
                if labels is None or k == 1:
                    continue
                others = labels != rows[:, None]
                # Stable argsort of "is self" moves the item's own entry to the end of its row.
                order = np.argsort(~others, axis=1, kind="stable")[:, : min(k - 1, n - 1)]
                width = order.shape[1]
                out_ids[start:start + len(rows), 1:1 + width] = np.take_along_axis(
                    labels, order, axis=1)
                out_sims[start:start + len(rows), 1:1 + width] = np.take_along_axis(
                    sims, order, axis=1)
        return out_ids, out_sims

    def exact_recall(
        self, vectors: np.ndarray, sample: int = 1000, k: int = 10, *, ef: int | None = None,
        seed: int = 0, vectors_by_id: np.ndarray | None = None,
    ) -> float:
        """Recall@k of the graph search against exact search, on a sample of query vectors.

        Args:
            vectors: Candidate query vectors (typically the collection's own embeddings).
            sample: How many of them to use (a seeded random subset when there are more).
            k: Neighbours compared per query.
            ef: Search breadth to evaluate (default: the index's ``ef``).
            seed: Seed of the sample.
            vectors_by_id: The stored vectors, row = id; saves a bulk copy out of hnswlib.

        Returns:
            Mean share of the exact top-``k`` ids that the graph search returned.
        """
        vectors = self._check_vectors(vectors, "vectors")
        k = _check_k(k)
        if len(self) == 0 or len(vectors) == 0:
            raise ValueError("recall needs a non-empty index and at least one query vector")
        if len(vectors) > sample:
            pick = np.random.default_rng(seed).choice(len(vectors), sample, replace=False)
            vectors = vectors[np.sort(pick)]
        kk = min(k, len(self))
        got, _ = self.query(vectors, kk, ef=ef)
        with self._lock:
            live = self.ids
            every = self._live_vectors(vectors_by_id)
            best_ids = _hnsw_data.exact_topk(vectors, live, every, kk, _CHUNK * 4)
        hits = sum(len(np.intersect1d(a, b)) for a, b in zip(got, best_ids, strict=True))
        return hits / (len(vectors) * kk)

    # ------------------------------------------------------------------------------- files
    def save(self, path: str | os.PathLike[str]) -> FileRecord:
        """Write the index file atomically, and only once it is checked complete.

        Returns:
            The written file's name, size and checksum.
        """
        with self._lock:
            count = len(self._labels)

            def check(tmp: Path) -> None:
                _hnsw_file.check_complete(tmp, dim=self.dim, m=self.M, count=count)

            return atomic_write(path, ByPath(lambda tmp: self._index.save_index(str(tmp)), check))

    @classmethod
    def load(cls, path: str | os.PathLike[str], params: dict[str, Any], *,
             field: str = "index") -> VectorIndex:
        """Open an index file written by :meth:`save`, checked against its manifest ``params``.

        Raises:
            CollectionError: The file is missing, truncated, or does not match ``params``.
        """
        path = Path(path)
        dim, m, ef_c, ef, count = _hnsw_file.read_params(params, SPACE)
        if not path.is_file():
            raise CollectionError(f"index file is missing: {path}")
        labels, dead = _hnsw_file.read_layout(path, dim=dim, m=m, count=count, field=field)
        self = cls(dim, M=m, ef_construction=ef_c, ef=ef,
                   random_seed=int(params.get("random_seed", 100)))
        index = _hnsw_file.load_hnsw(path, space=SPACE, dim=dim, count=count)
        order = np.argsort(labels, kind="stable")
        self._index, self._labels, self._dead = index, labels[order], dead[order]
        index.set_ef(self.search_ef)
        if "live" in params and int(params["live"]) != len(self):
            raise CollectionError(f"index file {path} holds {len(self)} live items, the "
                                  f"manifest's field '{field}.live' says {params['live']}")
        return self

    # ------------------------------------------------------------------------------ helpers
    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        arr = np.asarray(vectors)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise ValueError(f"{what} must have shape (n, {self.dim}), got {np.shape(vectors)}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise ValueError(f"{what} must be floating point, got {arr.dtype}")
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        norms = np.linalg.norm(arr, axis=1)
        bad = ~np.isfinite(norms) | (np.abs(norms - 1.0) > _NORM_TOLERANCE)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(f"{what} must be finite unit vectors (L2-normalised); row {row} has "
                             f"norm {norms[row]:.4g} ({int(bad.sum())} bad rows)")
        # Within tolerance, renormalise so that scores stay in [-1, 1].
        return arr / norms[:, None]


def auto_ef(count: int) -> int:
    """Default search breadth for an index of ``count`` items.

    Chosen by measurement (``bench/collection.py``, CLIP-like clustered 512-d vectors, M=16,
    ef_construction=200): recall@10 >= 0.98 needs ef 64 up to about 20k items (0.99-1.0),
    128 at 100k (0.995; 64 gives 0.955) and 512 at 1M (0.99; 128 gives 0.89, 256 0.97).
    ``128 * (count / 100k) ** 0.6`` passes through those points; it is clipped to [64, 512].
    """
    return int(min(512, max(64, math.ceil(128 * (max(count, 1) / 100_000) ** 0.6))))


def _as_ids(ids: np.ndarray, what: str) -> np.ndarray:
    arr = np.atleast_1d(np.asarray(ids))
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{what} must be non-negative, got {int(arr.min())}")
    return arr


def _check_k(k: int, what: str = "k") -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what} must be a positive integer, got {k!r}")
    return int(k)
