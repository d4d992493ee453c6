"""Approximate nearest-neighbour search over unit vectors: a thin, validated hnswlib wrapper.

hnswlib's inner-product space on L2-normalised vectors gives cosine similarity (``score = 1 -
distance``). hnswlib stores neither ``space``, ``dim`` nor ``ef`` in its file, so they travel in
:attr:`VectorIndex.params` (the collection manifest) and :meth:`VectorIndex.load` checks the file
against them before hnswlib reads a byte of it. Deleted items stay in the file, flagged; their ids
are read back from those flags, so the index file alone says which ids are live. The file
checks live in :mod:`._hnsw_file`; bulk vector reads and exact ranking in :mod:`._hnsw_data`.

Filtered search (``allowed_ids``, the collection's metadata ``where``) picks its strategy by
measurement; see :mod:`._hnsw_filter`.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer._files import ByPath, FileRecord, atomic_write
from mclip_explorer.collection import _hnsw_data, _hnsw_file, _hnsw_filter, _index_checks
from mclip_explorer.collection._index_checks import as_ids, auto_ef, check_k
from mclip_explorer.errors import CollectionError

SPACE = "ip"
# Below this many allowed items a filtered query is answered exactly by a matrix product over
# the caller's vectors (``vectors_by_id``); without them, hnswlib's get_items costs about 0.1 ms
# per item, so only tiny filters go that way.
BRUTE_FORCE_MAX = 2_000
BRUTE_FORCE_SHARE = 0.01  # ... or this share of the live items: over-fetching grows as 1/share
BRUTE_FORCE_MAX_STORED = 256
_GROWTH = 1.5  # capacity factor on resize: amortises the copy hnswlib makes when growing
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
        _index_checks.check_graph_params(dim, M, ef_construction, ef)
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
        ids = as_ids(ids, "ids")
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
        ids = np.unique(as_ids(ids, "ids"))
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
        ids = as_ids(ids, "ids")
        if len(ids) == 0:
            return np.empty((0, self.dim), dtype=np.float32)
        with self._lock:
            try:
                # "list" is ten times faster than hnswlib 0.8's "numpy" return type.
                out = self._index.get_items(ids, return_type="list")
            except RuntimeError as error:
                raise KeyError(f"some ids are not live in the index: {error}") from None
        return np.asarray(out, dtype=np.float32).reshape(len(ids), self.dim)

    def _vectors_of(self, ids: np.ndarray, vectors_by_id: np.ndarray | None) -> np.ndarray:
        """The vectors hnswlib holds for stored ``ids``; callers pass at most ``_CHUNK`` of them.

        With ``vectors_by_id`` (row = id, the vectors once added) they are checked and
        renormalised as :meth:`add` did before storing them, so both ways give the same bits.
        """
        if vectors_by_id is not None:
            return self._check_vectors(_hnsw_data.rows(vectors_by_id, ids, self.dim),
                                       "vectors_by_id")
        return _hnsw_data.stored_vectors(self._index, ids, self.dim)

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
        k = min(check_k(k), max(len(self), 1))
        ef = self.search_ef if ef is None else check_k(ef, "ef")
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
            allowed = _hnsw_filter.live_allowed(as_ids(allowed_ids, "allowed_ids"),
                                                self._labels, self._dead)
            if len(allowed) == 0:
                return out_ids, out_scores
            brute_max = max(BRUTE_FORCE_MAX, BRUTE_FORCE_SHARE * len(self))
            if vectors_by_id is not None and len(allowed) <= brute_max:
                base = _hnsw_data.rows(vectors_by_id, allowed, self.dim)
            elif len(allowed) <= BRUTE_FORCE_MAX_STORED:
                base = self.get_vectors(allowed)
            else:
                return self._overfetch(vectors, k, ef, allowed, out_ids, out_scores)
            return _hnsw_filter.brute(vectors, k, allowed, base, out_ids, out_scores)

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
                return _hnsw_data.knn_rows(self._index, vectors, k, len(self))
        finally:
            self._index.set_ef(self.search_ef)
        return labels.astype(np.int64), (1.0 - dist).astype(np.float32)

    def _overfetch(self, vectors: np.ndarray, k: int, ef: int, allowed: np.ndarray,
                   out_ids: np.ndarray, out_scores: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Broad filters: see :func:`._hnsw_filter.overfetch`; caller holds the lock."""
        return _hnsw_filter.overfetch(self._knn, len(self), vectors, k, ef, allowed, out_ids,
                                      out_scores)

    def knn_graph(self, k: int, *, ef: int | None = None,
                  vectors_by_id: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The ``k`` nearest neighbours of every live item, itself first.

        Args:
            k: Neighbours per item, the item itself included.
            ef: Search breadth (default: ``max(64, k + 1)``, or the index's fixed ``ef`` when it
                has one). A map does not need the search's recall (UMAP's own neighbour search
                is approximate too), and at 100k items ef 64 halves this sweep against 128.
            vectors_by_id: The stored vectors, row = id; without them the vectors are read from
                hnswlib a chunk at a time (slower, never a copy of the whole index).

        Returns:
            ``(ids, sims)``: int64 ``(N, k)`` neighbour ids and float32 ``(N, k)`` similarities,
            rows in the order of :attr:`ids`; ``k`` is clamped to ``N``.
        """
        k = check_k(k)
        with self._lock:
            live = self.ids
            n = len(live)
            k = min(k, max(n, 1))  # before allocating (n, k)
            out_ids = np.full((n, k), -1, dtype=np.int64)
            out_sims = np.full((n, k), np.nan, dtype=np.float32)
            kk = min(k + 1, n)  # one extra: the item itself may come back anywhere or not at all
            if ef is None:
                ef = self.ef if self.ef is not None else _GRAPH_EF
            search_ef = max(check_k(ef, "ef"), kk)
            for start in range(0, n, _CHUNK):
                rows = live[start:start + _CHUNK]
                vecs = self._check_vectors(self._vectors_of(rows, vectors_by_id), "vectors_by_id")
                out_ids[start:start + len(rows), 0] = rows
                out_sims[start:start + len(rows), 0] = 1.0
                if kk and k > 1:
                    labels, sims = self._knn(vecs, kk, search_ef)
                    block = slice(start, start + len(rows))
                    _hnsw_data.put_others(labels, sims, rows, out_ids[block], out_sims[block])
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
            vectors_by_id: The stored vectors, row = id; without them the vectors are read from
                hnswlib a chunk at a time (slower, never a copy of the whole index).

        Returns:
            Mean share of the exact top-``k`` ids that the graph search returned.
        """
        vectors = self._check_vectors(vectors, "vectors")
        k = check_k(k)
        if len(self) == 0 or len(vectors) == 0:
            raise ValueError("recall needs a non-empty index and at least one query vector")
        if len(vectors) > sample:
            pick = np.random.default_rng(seed).choice(len(vectors), sample, replace=False)
            vectors = vectors[np.sort(pick)]
        kk = min(k, len(self))
        got, _ = self.query(vectors, kk, ef=ef)
        with self._lock:
            best_ids = _hnsw_data.exact_topk(
                vectors, self.ids, lambda ids: self._vectors_of(ids, vectors_by_id), kk, _CHUNK)
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

    def _check_vectors(self, vectors: np.ndarray, what: str) -> np.ndarray:
        return _index_checks.check_unit_vectors(vectors, self.dim, what)
