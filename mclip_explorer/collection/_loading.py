"""Loading what a :class:`Collection` is made of: its folder's files, and its encoder.

Every file is checked against the manifest (row counts, ids, shapes) as it is read, so a damaged
collection fails on open with a :class:`CollectionError` rather than on a later query.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.collection import building, store
from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.collection.index import VectorIndex
    from mclip_explorer.models.base import Encoder


def read_folder(folder: Path, kinds: Sequence[str], *, memory_map: bool = True) -> tuple[
        dict[str, Any], pd.DataFrame, dict[str, np.ndarray], dict[str, VectorIndex]]:
    """Read a collection folder's current generation, checked against its manifest.

    Args:
        folder: The collection folder (absolute).
        kinds: Item kinds whose index files to load when the manifest names one.
        memory_map: Memory-map the embeddings (read on use) rather than load them.

    Returns:
        ``(manifest, items, arrays, indexes)``: ``arrays`` maps ``"embeddings"``, ``"coords"``
        and ``"stretch"`` to the stored arrays; ``indexes`` maps kind to its index.

    Raises:
        CollectionError: Missing, damaged or incompatible files.
    """
    import pandas as pd

    from mclip_explorer.collection.index import VectorIndex

    manifest = store.read_manifest(folder)
    files, dim = manifest["files"], manifest["dim"]
    try:
        items = pd.read_parquet(folder / files["items"]["name"])
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise CollectionError(f"damaged items table in {folder}: {exc}") from None
    missing = [c for c in store.COLUMNS if c not in items.columns]
    if missing:
        raise CollectionError(f"damaged items table in {folder}: missing columns {missing}")
    n = len(items)
    if n != manifest["counts"]["items"] or not np.array_equal(items["id"], np.arange(n)):
        raise CollectionError(f"damaged collection {folder}: items table has {n} rows, the "
                              f"manifest says {manifest['counts']['items']}")
    items["path"] = store.absolute_paths(items["path"], folder)
    items = building.normalise_items(items)  # same dtypes as a collection fresh in memory
    arrays = {}
    for role, shape in (("embeddings", (n, dim)), ("coords", (n, 2)), ("stretch", (n,))):
        arrays[role] = store.load_npy(folder / files[role]["name"], what=role,
                                      mmap=memory_map and role == "embeddings")
        if arrays[role].shape != shape:
            raise CollectionError(f"damaged collection {folder}: {role} has shape "
                                  f"{arrays[role].shape}, expected {shape}")
    indexes = {}
    for kind in kinds:
        entry = files.get(f"index_{kind}")
        if entry:
            indexes[kind] = VectorIndex.load(folder / entry["name"], manifest["index"][kind])
    return manifest, items, arrays, indexes


def load_encoder(model: str | Encoder, device: str | None) -> Encoder:
    """An Encoder as given, or the registry model of that name loaded on ``device``.

    Raises:
        TypeError: ``model`` is neither a name nor an Encoder.
    """
    from mclip_explorer.models import Encoder, load_model

    if isinstance(model, Encoder):
        return model
    if not isinstance(model, (str, Path)):
        raise TypeError(f"model must be a model name or an Encoder, got {type(model).__name__}")
    return load_model(str(model), device=device)
