"""Sources a collection is built from.

Folders, globs, lists and frames live in ``local``; for scale, WebDataset / parquet shards
(``shards``, ``webdataset``, ``parquet``) are streamed by the engines.
"""

from __future__ import annotations

from typing import Any

from mclip_explorer.collection.sources.local import read_source, text_items, title_from_name
from mclip_explorer.collection.sources.shards import ShardedSource, parquet, webdataset

__all__ = ["ShardedSource", "item_identity", "parquet", "read_source", "text_items",
           "title_from_name", "webdataset"]


def item_identity(items: Any) -> list[str | None]:
    """What makes an image item the same item across builds: its path, else shard + key."""
    paths = items["path"].tolist()
    shards = items["shard"].tolist() if "shard" in items.columns else [None] * len(paths)
    keys = items["key"].tolist() if "key" in items.columns else [None] * len(paths)
    return [p if isinstance(p, str) else (f"{s}#{k}" if isinstance(s, str) and
                                           isinstance(k, str) else None)
            for p, s, k in zip(paths, shards, keys, strict=True)]
