"""Loading what a :class:`Collection` is made of: its folder's files, and its encoder.

Every file is checked against the manifest (size, checksum, row counts, ids, shapes) as it is
read, so a damaged collection fails on open with a :class:`CollectionError` naming the file or
the manifest field, rather than on a later query. A damaged index file is the exception: it is
derived data, rebuilt in memory from the (verified) embeddings with a :class:`DamageWarning`;
the next commit writes it anew. Opening never writes to the folder.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.collection import _commit, building, store
from mclip_explorer.errors import CollectionError, DamageWarning

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
    damaged = _commit.verify_files(folder, manifest)
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
                              f"manifest says {manifest['counts']['items']} (field "
                              "'counts.items')")
    items["path"] = store.absolute_paths(items["path"], folder)
    items = building.normalise_items(items)  # same dtypes as a collection fresh in memory
    _check_counts(manifest, items, folder)
    arrays = {}
    for role, shape in (("embeddings", (n, dim)), ("coords", (n, 2)), ("stretch", (n,))):
        arrays[role] = store.load_npy(folder / files[role]["name"], what=role,
                                      mmap=memory_map and role == "embeddings")
        if arrays[role].shape != shape:
            raise CollectionError(f"damaged collection {folder}: {role} has shape "
                                  f"{arrays[role].shape}, expected {shape} (fields 'dim', "
                                  "'counts.items')")
    indexes = {}
    for kind in kinds:
        entry = files.get(f"index_{kind}")
        params = manifest["index"].get(kind)
        if not entry:
            if _live(items, kind).any():  # the index was dropped from the manifest
                damaged[f"index_{kind}"] = f"field 'files.index_{kind}' names no file"
                entry = {"name": f"index_{kind}"}
                params = params or VectorIndex(dim).params
            else:
                continue
        if not params:
            raise CollectionError(f"damaged {folder / store.MANIFEST}: field 'index.{kind}' is "
                                  f"missing for file {entry['name']}")
        if params["dim"] != dim:
            raise CollectionError(f"damaged {folder / store.MANIFEST}: field 'index.{kind}.dim' "
                                  f"is {params['dim']}, field 'dim' is {dim}")
        if f"index_{kind}" in damaged:
            warnings.warn(DamageWarning(
                f"index file {folder / entry['name']} is damaged ({damaged[f'index_{kind}']}); "
                f"rebuilt the {kind} index in memory from the stored embeddings (the next "
                "change to the collection writes it anew)"), stacklevel=4)
            indexes[kind] = rebuild_index(items, arrays["embeddings"], kind, params)
            continue
        indexes[kind] = VectorIndex.load(folder / entry["name"], params, field=f"index.{kind}")
    return manifest, items, arrays, indexes


def rebuild_index(items: pd.DataFrame, embeddings: np.ndarray, kind: str,
                  params: dict[str, Any]) -> VectorIndex:
    """A fresh index of the live items of ``kind``, with the manifest's parameters."""
    from mclip_explorer.collection.index import VectorIndex
    ids = items["id"].to_numpy()[_live(items, kind)]
    index = VectorIndex(int(params["dim"]), M=int(params["M"]),
                        ef_construction=int(params["ef_construction"]), ef=params["ef"],
                        random_seed=int(params["random_seed"]))
    # Rows are read by id a chunk at a time (the store may be a float16 memory map); the index
    # renormalises each row as it adds it.
    return building.index_vectors(index, ids, embeddings)


def _live(items: pd.DataFrame, kind: str) -> np.ndarray:
    return ((items["kind"] == kind) & ~items["deleted"] & items["error"].isna()).to_numpy()


def _check_counts(manifest: dict[str, Any], items: pd.DataFrame, folder: Path) -> None:
    """The manifest's counts must describe the items table (a hand edit would mislead)."""
    deleted, failed = items["deleted"].to_numpy(bool), items["error"].notna().to_numpy()
    actual = {"images": int((items["kind"] == "image").sum()),
              "texts": int((items["kind"] == "text").sum()),
              "failed": int(failed.sum()), "deleted": int(deleted.sum()),
              "live": int((~deleted & ~failed).sum())}
    for key, value in actual.items():
        if manifest["counts"][key] != value:
            raise CollectionError(f"damaged {folder / store.MANIFEST}: field 'counts.{key}' is "
                                  f"{manifest['counts'][key]}, the items table has {value}")


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
