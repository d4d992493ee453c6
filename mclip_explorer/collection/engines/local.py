"""The local engine: encode in this process, shard by shard, flushing every ``shard_size`` items."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from mclip_explorer.collection import building, store
from mclip_explorer.collection.engines import ledger
from mclip_explorer.collection.engines.records import process_records
from mclip_explorer.collection.sources.local import SourceItems
from mclip_explorer.collection.sources.shards import ShardedSource, iter_records

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from mclip_explorer.models.base import Encoder

LOG = logging.getLogger("mclip_explorer.engines")
T = TypeVar("T")


def encode(folder: Path, source: SourceItems | ShardedSource, encoder: Encoder, *,
           batch_size: int | None, num_workers: int | None, shard_size: int,
           progress: bool, dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """See :func:`mclip_explorer.collection.engines.encode`."""
    if isinstance(source, SourceItems):
        return building.encode_source(folder, source, encoder, batch_size, num_workers,
                                      shard_size, progress, dtype=dtype)
    cache = building.EmbeddingCache(folder / store.CACHE_DIR, encoder.fingerprint, encoder.dim)
    plans = ledger.plan(cache, source)
    todo = [item for item in plans if not item.done]
    bar = building.progress_bar(len(todo), "shards", "shard", progress)
    encoded = 0
    for number, item in enumerate(todo, start=1):
        rows = []
        for chunk in batched(iter_records(source, item.url), shard_size):
            done = process_records(chunk, encoder, cache.missing,
                                   batch_size=batch_size or 32, num_workers=num_workers)
            if done.keys:
                cache.add_shard(done.keys, done.vectors, done.reasons)
            encoded += len(done.keys)
            rows.extend(done.rows)
            store.checkpoint(f"records:{number}")
        ledger.write(item, rows)
        store.checkpoint(f"ledger:{number}")
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    LOG.info("local engine: %d shard(s) read, %d finished before; %d image(s) encoded",
             len(todo), len(plans) - len(todo), encoded)
    return ledger.assemble(plans, cache, folder, dtype)


def batched(values: Iterable[T], size: int) -> Iterator[list[T]]:
    """Consecutive lists of ``size`` values (the last may be shorter)."""
    iterator = iter(values)
    while chunk := list(islice(iterator, size)):
        yield chunk
