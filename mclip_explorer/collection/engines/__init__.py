"""Engines that turn a source into items and embeddings: ``local`` (this process) and ``ray``.

Both read the same records, encode with the same function and write the same content-hash
cache and shard ledger, so the collection built from their output is the same; the index and
the map are then built by :class:`~mclip_explorer.collection.Collection` as for any source.
Ray is imported only when ``engine="ray"`` is asked for.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.collection.sources import read_source
from mclip_explorer.collection.sources.local import SourceItems
from mclip_explorer.collection.sources.shards import ShardedSource, resolve_sharded

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mclip_explorer.models.base import Encoder

ENGINES = ("local", "ray")


def resolve(source: Any) -> SourceItems | ShardedSource:
    """A sharded source description, or the items of a local-files source."""
    sharded = resolve_sharded(source)
    return sharded if sharded is not None else read_source(source)


def check_replace(folder: Path, source: SourceItems | ShardedSource, *, overwrite: bool) -> None:
    """Refuse to build over a collection of another source (see :mod:`..replacing`).

    A sharded source is the same source when it shares at least one shard with the collection.

    Raises:
        CollectionError: ``folder`` holds a collection of none of the source's files or shards
            and ``overwrite`` is false.
    """
    from mclip_explorer.collection import replacing, store
    from mclip_explorer.errors import CollectionError

    if isinstance(source, SourceItems):
        replacing.check_replace(folder, source, overwrite=overwrite)
        return
    if overwrite or not (folder / store.MANIFEST).is_file():
        return
    import pandas as pd

    try:
        manifest = store.read_manifest(folder)
        stored = pd.read_parquet(folder / manifest["files"]["items"]["name"])
    except (CollectionError, OSError, ValueError, KeyError, TypeError):
        return  # a damaged collection is left to the build, which replaces it
    old = set(stored["shard"].dropna()) if "shard" in stored.columns else set()
    if old & set(source.shards) or len(stored) == 0:
        return
    raise CollectionError(
        f"{folder} already holds a collection of {len(stored)} items, none of them from "
        f"{source.description}; building there would replace it. Pass overwrite=True "
        "(command line: --overwrite) to replace it, or choose another out folder.")


def check_engine(engine: str, address: str | None = None,
                 concurrency: int | None = None) -> str:
    """Validate the engine settings (before any slow work)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if engine == "local" and (address is not None or concurrency is not None):
        raise ValueError("address= and concurrency= apply to engine='ray' only")
    if concurrency is not None and (isinstance(concurrency, bool) or not isinstance(
            concurrency, int) or concurrency < 1):
        raise ValueError(f"concurrency must be a positive integer, got {concurrency!r}")
    return engine


def encode(folder: Path, source: SourceItems | ShardedSource, encoder: Encoder, *,
           engine: str = "local", model: Any = None, device: str | None = None,
           batch_size: int | None = None, num_workers: int | None = None,
           shard_size: int = 256, progress: bool = False, address: str | None = None,
           concurrency: int | None = None,
           dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """Items (one row per item, in source order) and their vectors (NaN rows for failures).

    Args:
        folder: The collection folder (its ``cache/`` is read and written).
        source: From :func:`resolve`.
        encoder: The collection's encoder (this process).
        engine: ``"local"`` or ``"ray"``.
        model: What Ray actors load (a registry name, or an Encoder to ship; default
            ``encoder``).
        device: Device of a model loaded by name in the actors.
        batch_size: Images per forward pass.
        num_workers: Decoding processes per encoder.
        shard_size: Records per flushed cache shard (local) or per Ray block.
        progress: Show progress.
        address: Ray cluster address (``"auto"``, ``"ray://head:10001"``...); default: the
            running cluster, else a new local one.
        concurrency: Encoder actors (default: one per GPU, else sized from free CPUs).
        dtype: Of the returned vectors: a scratch memory map in ``folder`` (the stored
            precision, so a build never holds its vectors in memory).
    """
    check_engine(engine, address, concurrency)
    if engine == "ray":
        from mclip_explorer.collection.engines import ray as ray_engine

        return ray_engine.encode(folder, source, encoder, model=model, device=device,
                                 batch_size=batch_size, num_workers=num_workers,
                                 shard_size=shard_size, progress=progress, address=address,
                                 concurrency=concurrency, dtype=dtype)
    from mclip_explorer.collection.engines import local

    return local.encode(folder, source, encoder, batch_size=batch_size, num_workers=num_workers,
                        shard_size=shard_size, progress=progress, dtype=dtype)
