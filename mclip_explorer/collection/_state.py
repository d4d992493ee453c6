"""What a :class:`~mclip_explorer.collection.core.Collection` holds, and its private bookkeeping.

The base class of ``Collection``: the in-memory state (items, embeddings, map, indexes), read
access to it, live-id caches, and the commit of a changed state as a new generation. The public
operations (build, open, search, add, remove) are in :mod:`.core`.
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from mclip_explorer.collection import _commit, building, search, store
from mclip_explorer.collection._loading import check_model, load_encoder, read_folder
from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.collection.index import VectorIndex
    from mclip_explorer.models.base import Encoder

KINDS = ("image", "text")
S = TypeVar("S", bound="CollectionState")


class CollectionState:
    """The state of a collection folder opened in memory (see ``Collection``).

    Attributes:
        path: The collection folder (absolute).
        manifest: The parsed ``manifest.json``.
    """

    def __init__(self, path: Path, manifest: dict[str, Any], items: pd.DataFrame,
                 embeddings: np.ndarray, coords: np.ndarray, stretch: np.ndarray,
                 indexes: dict[str, VectorIndex], encoder: Encoder | None = None,
                 device: str | None = None) -> None:
        self.path = path
        self.manifest = manifest
        self._items = items
        self._embeddings = embeddings
        self._coords = coords
        self._stretch = stretch
        self._indexes = indexes
        self._encoder = encoder
        self._device = device
        self._memory_map = True
        self._live: dict[str, np.ndarray] = {}  # kind -> live ids; cleared on every commit
        self._hits: dict[str, search.HitColumns] = {}  # kind -> columns of hits; likewise
        self.read_only = False  # set by open(); a read-only collection is never written to

    @classmethod
    def _load(cls: type[S], folder: Path, device: str | None, memory_map: bool = True) -> S:
        manifest, items, arrays, indexes = read_folder(folder, KINDS, memory_map=memory_map)
        coll = cls(folder, manifest, items, arrays["embeddings"], arrays["coords"].astype(
            np.float32), arrays["stretch"].astype(np.float32), indexes, None, device)
        coll._memory_map = memory_map
        return coll

    @property
    def model_name(self) -> str:
        """Name of the model that encoded the collection."""
        return str(self.manifest["model"]["name"])

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.manifest["dim"])

    @property
    def encoder(self) -> Encoder:
        """The collection's encoder, loaded (and fingerprint-checked) on first use."""
        if self._encoder is None:
            encoder = load_encoder(self.model_name, self._device)
            self._encoder = check_model(encoder, self.manifest, self.path)
        return self._encoder

    @property
    def items(self) -> pd.DataFrame:
        """One row per item, row position == id (a copy: edit through add/remove)."""
        return self._items.copy()

    @property
    def coords(self) -> np.ndarray:
        """``(N, 2)`` float32 map positions (NaN for failed and removed items); read-only."""
        view = self._coords.view()
        view.flags.writeable = False
        return view

    @property
    def stretch(self) -> np.ndarray:
        """``(N,)`` placement stretch: 0 for items laid out by the fit, NaN where unplaced."""
        view = self._stretch.view()
        view.flags.writeable = False
        return view

    def _remove(self, ids: np.ndarray) -> None:
        self._items.loc[ids, "deleted"] = True
        for index in self._indexes.values():
            present = ids[np.isin(ids, index.ids)]
            if len(present):
                index.mark_deleted(present)
        self._coords[ids] = np.nan
        self._stretch[ids] = np.nan

    def _commit(self, roles: set[str], appended: np.ndarray | None = None) -> None:
        """Write the changed roles as a new generation and switch the manifest to it.

        ``appended``: embedding rows of new items, written after the stored ones (never
        concatenated in memory: the stored ones may be a 10 GB memory map).
        """
        if self.read_only:
            raise CollectionError(f"collection {self.path} is read-only (opened with "
                                  "read_only=True, or the folder cannot be written)")
        self._live.clear()
        self._hits.clear()
        try:
            stored = _commit.write_generation(
                self.path, self.manifest, roles, items=self._items,
                embeddings=self._embeddings if appended is None else [self._embeddings, appended],
                coords=self._coords, stretch=self._stretch, indexes=self._indexes)
            self._embeddings = stored if self._memory_map else np.array(stored)
        except BaseException:
            # Memory already holds the change that did not land: fall back to what is on disk.
            with contextlib.suppress(CollectionError):
                fresh = type(self)._load(self.path, self._device, self._memory_map)
                vars(self).update({k: v for k, v in vars(fresh).items() if k != "_encoder"})
            raise

    def _live_ids(self, kind: str) -> np.ndarray:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind not in self._live:
            items = self._items
            mask = (items["kind"] == kind) & ~items["deleted"] & items["error"].isna()
            self._live[kind] = items["id"].to_numpy()[mask.to_numpy()]
            self._live[kind].flags.writeable = False
        return self._live[kind]

    def _index(self, kind: str) -> VectorIndex:
        if kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {kind!r}")
        if kind not in self._indexes:
            hint = " (add some with add_texts)" if kind == "text" else ""
            raise CollectionError(f"collection {self.path} has no {kind} items{hint}")
        return self._indexes[kind]

    def _new_index(self) -> VectorIndex:
        from mclip_explorer.collection.index import VectorIndex

        return VectorIndex(self.dim)

    def _vector_of_id(self, item_id: int) -> np.ndarray:
        return search.vector_of_id(self._items, self._embeddings, item_id)

    def _cache(self) -> building.EmbeddingCache:
        return building.EmbeddingCache(self.path / store.CACHE_DIR, self.manifest["model"][
            "fingerprint"], self.dim)

    def __repr__(self) -> str:
        counts = self.manifest["counts"]
        return (f"Collection({str(self.path)!r}, model={self.model_name!r}, "
                f"images={counts.get('images')}, texts={counts.get('texts')}, "
                f"live={counts.get('live')})")

    def __len__(self) -> int:
        return len(self._items)

