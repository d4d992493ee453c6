"""The :class:`Collection`: a persistent, searchable, mapped set of encoded images and texts.

The in-memory state and its commits live in :mod:`._state` (the base class), the on-disk layout
in :mod:`.store`, reading it back in :mod:`._loading`, encoding and its cache in :mod:`.building`,
the first map in :mod:`.projection`, query handling in :mod:`.search`; this module ties them
together behind the public contract of ``docs/architecture.md``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer._files import is_writable_folder
from mclip_explorer.collection import building, engines, projection, search, store, thumbnails
from mclip_explorer.collection._loading import check_model, load_encoder
from mclip_explorer.collection._state import KINDS as KINDS
from mclip_explorer.collection._state import CollectionState
from mclip_explorer.collection.layout import MAP_SAMPLE, first_map, samples_map
from mclip_explorer.collection.projection import MAP_NEIGHBORS as MAP_NEIGHBORS
from mclip_explorer.collection.projection import PLACE_K as PLACE_K
from mclip_explorer.collection.sources import item_identity, text_items
from mclip_explorer.errors import CollectionError
from mclip_explorer.models.base import normalize
from mclip_explorer.models.registry import DEFAULT_MODEL

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.models.base import Encoder



class Collection(CollectionState):
    """A collection folder opened for search; create one with :meth:`build` or :meth:`open`.

    Attributes:
        path: The collection folder (absolute).
        manifest: The parsed ``manifest.json``.
    """

    # ------------------------------------------------------------------------ construction
    @classmethod
    def build(cls, source: Any, *, model: str | Encoder = DEFAULT_MODEL,
              out: str | Path, batch_size: int | None = None, num_workers: int | None = None,
              device: str | None = None, progress: bool = True, precision: str = "float16",
              shard_size: int = building.SHARD_SIZE, map_method: str = "auto",
              map_sample: int = MAP_SAMPLE, overwrite: bool = False, engine: str = "local",
              address: str | None = None, concurrency: int | None = None) -> Collection:
        """Encode ``source`` into a new collection at ``out``, reusing any cached embeddings.

        Rerunning the same call after a crash or a kill resumes it; rerunning it after files
        were added encodes only those. A collection of another source at ``out`` is refused
        unless ``overwrite=True``.

        Args:
            source: A folder, glob, list of paths, DataFrame with a ``path`` column, a
                ``datasets.Dataset``, or WebDataset / parquet shards (a brace pattern, glob,
                folder or list, local or fsspec URLs; see
                :mod:`mclip_explorer.collection.sources`).
            model: Registry name or an :class:`Encoder`.
            out: The collection folder (created; must be empty, or a collection).
            batch_size: Images per forward pass (default 32).
            num_workers: Decoding processes (default: the encoder's choice).
            device: Device for a model given by name.
            progress: Show progress bars (hashing, encoding with images/s and ETA, map).
            precision: ``"float16"`` (default) or ``"float32"`` for the stored embeddings.
            shard_size: Items per flushed cache shard: at most this much work is redone.
            map_method: ``"auto"``, ``"umap"`` or ``"pca"``.
            map_sample: Above this many images UMAP is fitted on a seeded sample of this size
                and the other images are placed from their nearest sampled images.
            overwrite: Replace a collection at ``out`` that holds none of the source's files.
            engine: ``"local"`` (this process) or ``"ray"`` (Ray Data and an actor pool;
                ``pip install "mclip-explorer[ray]"``); both give the same collection.
            address: Ray cluster to use (``"auto"``, ``"ray://head:10001"``); default: the
                connected one, else a new local cluster.
            concurrency: Ray encoder actors (default: one per GPU, else from free CPUs).

        Raises:
            CollectionError: ``out`` holds a collection of another source (and not
                ``overwrite``), or is a folder of other files.
        """
        if precision not in ("float16", "float32"):
            raise ValueError(f"precision must be 'float16' or 'float32', got {precision!r}")
        engines.check_engine(engine, address, concurrency)
        # A bad folder or another collection fails before a slow model load.
        target = store.prepare_out(out, create=False)
        items = engines.resolve(source)
        engines.check_replace(target, items, overwrite=overwrite)
        encoder = load_encoder(model, device)
        folder = store.prepare_out(out)
        frame, vectors = engines.encode(
            folder, items, encoder, engine=engine, model=model,
            device=device, batch_size=batch_size, num_workers=num_workers,
            shard_size=shard_size, progress=progress, address=address, concurrency=concurrency,
            dtype=np.float16 if precision == "float16" else np.float32)
        return cls._assemble(folder, frame, vectors, encoder, device=device, precision=precision,
                             map_method=map_method, map_sample=map_sample, progress=progress)

    @classmethod
    def from_embeddings(cls, source: Any, *, model: str | Encoder = DEFAULT_MODEL,
                        out: str | Path, vectors_model: str | None = None,
                        column: str | None = None, texts: bool = True,
                        device: str | None = None, progress: bool = True,
                        precision: str = "float16", map_method: str = "auto",
                        map_sample: int = MAP_SAMPLE) -> Collection:
        """Open embeddings made elsewhere (clip-retrieval, LAION, parquet, DataFrame) unencoded.

        See :func:`mclip_explorer.collection.imported.from_embeddings` and docs/interop.md.
        """
        from mclip_explorer.collection.imported import from_embeddings

        return from_embeddings(cls, source, model=model, out=out, vectors_model=vectors_model,
                               column=column, texts=texts, device=device, progress=progress,
                               precision=precision, map_method=map_method,
                               map_sample=map_sample)

    @classmethod
    def _assemble(cls, folder: Path, frame: pd.DataFrame, vectors: np.ndarray, encoder: Encoder,
                  *, device: str | None, precision: str, map_method: str, progress: bool,
                  map_sample: int = MAP_SAMPLE,
                  extra: dict[str, Any] | None = None) -> Collection:
        """Index, map and commit a new collection from its item rows and their vectors.

        ``vectors``: row = item, NaN rows for failures. They are cast to the stored precision
        first, and index and map read them a chunk at a time by id; after the commit they are
        memory-mapped from the new file.
        """
        frame.insert(0, "id", np.arange(len(frame), dtype=np.int64))
        frame = building.normalise_items(frame)
        manifest = store.new_manifest(folder, encoder.name, encoder.fingerprint, encoder.dim,
                                      precision, building.PREPROCESS_VERSION)
        manifest.update(extra or {})
        vectors = vectors.astype(np.float16 if precision == "float16" else np.float32,
                                 copy=False)
        coll = cls(folder, manifest, frame, vectors, np.empty((0, 2), np.float32),
                   np.empty(0, np.float32), {}, encoder, device)
        good = coll._live_ids("image")
        index = coll._new_index()
        # A map fitted on every image reads the index's kNN graph; a sampled map does not, and
        # runs first, so its sample, index and UMAP never share memory with the full index.
        index_first = not samples_map(len(good), map_method, map_sample)
        if index_first:
            building.index_vectors(index, good, vectors, progress=progress)
        coll._coords, coll._stretch, params = first_map(index, vectors, good, map_method,
                                                        progress, sample_max=map_sample)
        if not index_first:
            building.index_vectors(index, good, vectors, progress=progress)
        coll._indexes = {"image": index}
        if params is not None:
            manifest["projection"] = params
        texts = coll._live_ids("text")
        if len(texts):  # imported caption vectors: their own index, placed on the image map
            coll._indexes["text"] = building.index_vectors(coll._new_index(), texts, vectors,
                                                           progress=progress)
            coll._coords[texts], coll._stretch[texts] = coll.place(vectors[texts])
        store.checkpoint("assembled")
        coll._commit(set(store.ROLES))
        return coll

    @classmethod
    def open(cls, path: str | Path, *, model: str | Encoder | None = None,
             device: str | None = None, read_only: bool | None = None,
             memory_map: bool = True) -> Collection:
        """Open a collection folder; nothing in it is executed or unpickled, nothing written.

        Args:
            path: The collection folder.
            model: ``None`` loads the collection's own model on the first text/image query;
                a name or Encoder is loaded now and must match the collection's fingerprint.
            device: Device for the model.
            read_only: Never write to the folder (thumbnails go to the user's cache folder;
                ``add``/``remove`` refuse). ``None`` (default): read-only when the folder cannot
                be written (permissions, a read-only mount), decided without writing.
            memory_map: Memory-map the stored embeddings (default: pages are read when used and
                may be dropped again, so a collection larger than RAM opens); ``False`` loads
                them into memory.

        Raises:
            CollectionError: Missing, damaged or incompatible collection.
            ModelMismatchError: ``model`` is not the model that encoded the collection.
        """
        folder = Path(path).expanduser().resolve()
        try:
            coll = cls._load(folder, device, memory_map)
        except CollectionError:
            # A writer may have switched generations (and deleted the old files) between our
            # reading the manifest and the files: that is a retry, not damage.
            coll = cls._load(folder, device, memory_map)
        coll.read_only = not is_writable_folder(folder) if read_only is None else read_only
        if model is not None:
            coll._encoder = check_model(load_encoder(model, device), coll.manifest, folder)
        return coll

    # ---------------------------------------------------------------------------- reading
    def vectors(self, kind: str = "image") -> tuple[np.ndarray, np.ndarray]:
        """Ids and float32 embeddings of the live, successfully encoded items of ``kind``."""
        ids = self._live_ids(kind)
        return ids, self._embeddings[ids].astype(np.float32)

    def encode_query(self, query: Any) -> np.ndarray:
        """Embed a query (or a list of them) as ``(n, dim)`` unit rows; see :meth:`search`."""
        queries = list(query) if search.is_batch(query) else [query]
        kinds = [search.classify(q) for q in queries]
        return search.encode_queries(queries, kinds, encoder=lambda: self.encoder,
                                     vector_of_id=self._vector_of_id, dim=self.dim)

    def search(self, query: Any, k: int = 10, *, ef: int | None = None, where: Any = None,
               kind: str = "image", lang: str | None = None) -> pd.DataFrame:
        """Find the ``k`` items of ``kind`` closest to the query.

        Args:
            query: Text in any language; an image (``Path``, a ``str`` naming an existing image
                file, bytes or PIL); an item id; a vector; or a list of these (one batch, and
                the result gains a ``query`` column).
            k: Hits per query.
            ef: hnswlib search breadth (default: the manifest's).
            where: Metadata filter (see :func:`mclip_explorer.collection.search.where_mask`).
            kind: ``"image"`` or ``"text"`` items.
            lang: The text queries' language for models that need it (NLLB-CLIP), ISO 639-1 or
                FLORES-200; default: detected per query.

        Returns:
            Columns ``(query,) rank, id, path, score, x, y`` then metadata, best first. Text
            queries add ``probability`` on SigLIP models and ``query_lang`` on NLLB-CLIP (see
            :func:`mclip_explorer.collection.search.add_model_scores`).
        """
        index = self._index(kind)
        batch = search.is_batch(query)
        queries = list(query) if batch else [query]
        if not queries:
            raise ValueError("empty list of queries")
        kinds = [search.classify(q) for q in queries]
        vectors = search.encode_queries(queries, kinds, encoder=lambda: self.encoder,
                                        vector_of_id=self._vector_of_id, dim=self.dim, lang=lang)
        allowed = None
        if where is not None:
            live = self._live_ids(kind)
            allowed = live[search.where_mask(self._items, where)[live]]
        # The stored embeddings let a selective filter search exactly instead of widening the
        # graph search (see VectorIndex.query).
        ids, scores = index.query(vectors, k, ef=ef, allowed_ids=allowed,
                                  vectors_by_id=self._embeddings)
        labels = [search.label(q, c, i) for i, (q, c) in enumerate(zip(queries, kinds,
                                                                       strict=True))]
        if kind not in self._hits:
            self._hits[kind] = search.HitColumns(self._items, kind)
        frame = search.result_frame(self._hits[kind], self._coords, ids, scores,
                                    labels if batch else None)
        if "text" in kinds:
            search.add_model_scores(frame, ids, queries, kinds, self.encoder, lang, kind)
        return frame

    def neighbours(self, vectors: np.ndarray, k: int = 10, *, ef: int | None = None,
                   kind: str = "image") -> tuple[np.ndarray, np.ndarray]:
        """Array form of :meth:`search` for many vectors: ``(ids, scores)``, each ``(n, k)``.

        Rows are normalised first; ``k`` is clamped to the live item count (before anything is
        allocated); missing hits are padded with id -1 and score NaN.
        """
        vectors = normalize(np.atleast_2d(np.asarray(vectors, dtype=np.float32)))
        return self._index(kind).query(vectors, k, ef=ef)

    def export(self, format: str, path: str | Path, **options: Any) -> Path:
        """Write the collection for another tool; see :func:`.exporting.export` for formats."""
        from mclip_explorer.collection.exporting import export

        return export(self, format, path, **options)

    def thumbnail(self, item_id: int, size: int = 128) -> bytes:
        """A small WebP of image item ``item_id``, made once and cached in ``DIR/thumbs``."""
        return thumbnails.thumbnail(self, item_id, size)

    def place(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Map positions and stretch of new vectors, from their nearest images (no refit)."""
        vectors = np.atleast_2d(np.asarray(vectors, dtype=np.float32))
        ids, sims = self._index("image").query(vectors, PLACE_K)
        scale = self.manifest["projection"].get("scale")
        return projection.place(ids, sims, self._coords, scale=scale)

    def index_recall(self, sample: int = 1000, k: int = 10, *, kind: str = "image") -> float:
        """Recall@k of the index against exact search on ``sample`` of the collection's items."""
        _, vectors = self.vectors(kind)
        return self._index(kind).exact_recall(vectors, sample, k)

    # ---------------------------------------------------------------------------- growing
    def add(self, source: Any, *, batch_size: int | None = None, num_workers: int | None = None,
            progress: bool = True, engine: str = "local", address: str | None = None,
            concurrency: int | None = None) -> np.ndarray:
        """Encode only the new items of ``source``, index them and place them on the map.

        An item already in the collection under the same identity (its path, or its shard and
        key) with the same content is skipped; one whose content changed replaces the old item
        (which is removed). ``engine``, ``address``, ``concurrency``: as in :meth:`build`.

        Returns:
            The ids of the added items.
        """
        engines.check_engine(engine, address, concurrency)
        items = engines.resolve(source)
        known = self._items[(self._items["kind"] == "image") & ~self._items["deleted"]]
        known_ids = item_identity(known)
        known_sha = dict(zip(known_ids, known["sha256"], strict=True))
        frame, vectors = engines.encode(
            self.path, items, self.encoder, engine=engine,
            device=self._device, batch_size=batch_size,
            num_workers=num_workers, progress=progress, address=address, concurrency=concurrency,
            dtype=self._embeddings.dtype)
        new_ids = item_identity(frame)
        same = np.array([p is not None and known_sha.get(p) == s
                         for p, s in zip(new_ids, frame["sha256"], strict=True)], dtype=bool)
        changed = {p for p, keep in zip(new_ids, same, strict=True) if p is not None and not keep}
        replaced = known.index[[p in changed for p in known_ids]].to_numpy()
        if same.all():
            return np.empty(0, dtype=np.int64)  # nothing new: no new generation either
        return self._append(frame[~same].reset_index(drop=True), vectors[~same], replaced)

    def add_texts(self, texts: str | Sequence[str], lang: str | Sequence[str | None] | None = None,
                  **metadata: Any) -> np.ndarray:
        """Add captions or labels as text items, in their own index, placed on the same map.

        Args:
            texts: One text or a list of texts (any language).
            lang: One language code for all, or one per text.
            **metadata: Metadata columns: one value for all texts, or one per text.

        Returns:
            The ids of the new text items.
        """
        frame = text_items(texts, lang, metadata)
        cache = self._cache()
        keys = building.encode_texts(self.encoder, cache, frame["text"].tolist())
        frame["sha256"] = keys
        vectors, _ = cache.lookup(keys)
        return self._append(frame, vectors, np.empty(0, np.int64))

    def remove(self, ids: int | Sequence[int] | np.ndarray) -> None:
        """Mark items deleted: they leave the indexes and the map, their ids stay reserved."""
        ids = np.unique(np.atleast_1d(np.asarray(ids, dtype=np.int64)))
        bad = ids[(ids < 0) | (ids >= len(self._items))]
        if len(bad):
            raise KeyError(f"no items with id(s) {bad[:5].tolist()} (collection has "
                           f"{len(self._items)} items)")
        self._remove(ids)
        self._commit({"items", "coords", "stretch", "index_image", "index_text"})

    # ---------------------------------------------------------------------------- helpers
    def _append(self, frame: pd.DataFrame, vectors: np.ndarray, replaced: np.ndarray) -> np.ndarray:
        import pandas as pd

        start = len(self._items)
        frame.insert(0, "id", np.arange(start, start + len(frame), dtype=np.int64))
        frame = building.normalise_items(frame)
        if len(replaced):
            self._remove(replaced)
        new_ids = frame["id"].to_numpy()
        # Index and place what is stored, so a search ranks like exact search over the store.
        vectors = vectors.astype(self._embeddings.dtype, copy=False)
        good = ~np.isnan(vectors).any(axis=1) if len(vectors) else np.zeros(0, bool)
        xy = np.full((len(frame), 2), np.nan, np.float32)
        stretch = np.full(len(frame), np.nan, np.float32)
        if good.any() and len(self._index("image")):
            xy[good], stretch[good] = self.place(vectors[good])
        for kind in KINDS:
            sel = good & (frame["kind"] == kind).to_numpy()
            if sel.any():
                self._indexes.setdefault(kind, self._new_index()).add(new_ids[sel], vectors[sel])
        self._items = pd.concat([self._items, frame], ignore_index=True)
        self._coords = np.concatenate([self._coords, xy])
        self._stretch = np.concatenate([self._stretch, stretch])
        self._commit(set(store.ROLES), appended=vectors)
        return new_ids
