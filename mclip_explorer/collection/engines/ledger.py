"""The shard ledger: which shards of a sharded source are finished, and the rows they gave.

A shard is *finished* once every record it gave has its embedding (or its failure) in the
content-hash cache; its rows are then written, atomically, to
``cache/<fingerprint>-p<v>/shards/<digest>.parquet``, where the digest covers the shard's URL,
size and change stamp and the reading options. A rerun reads finished shards from the ledger
without opening them, and streams (and encodes) only the others. Both engines write and read the
same ledger, and the collection is always assembled from it, so a resumed build, a rerun and the
other engine all give the same items in the same order.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.collection import store
from mclip_explorer.collection.building import EmbeddingCache
from mclip_explorer.collection.sources.shards import ShardedSource, shard_digest

if TYPE_CHECKING:
    import pandas as pd

LEDGER_DIR = "shards"
_INT_COLUMNS = ("member_offset", "row")


@dataclass
class ShardPlan:
    """One shard of a build: where its ledger lives and whether it is finished.

    Attributes:
        url: The shard.
        path: Its ledger file.
        done: Whether the ledger exists and every content key in it is cached.
    """

    url: str
    path: Path
    done: bool


def plan(cache: EmbeddingCache, source: ShardedSource) -> list[ShardPlan]:
    """The shards of ``source`` in order, each marked finished or not."""
    options = source.image_column or ""
    plans = []
    for url in source.shards:
        digest = shard_digest(source.kind, url, options, source.storage_options)
        path = cache.folder / LEDGER_DIR / f"{digest}.parquet"
        rows = read(path)
        done = rows is not None and not cache.missing(list(rows["sha256"].dropna())).any()
        plans.append(ShardPlan(url, path, done))
    return plans


def finished_keys(plans: Iterable[ShardPlan]) -> set[str]:
    """Content keys referenced by finished shards (the rest of the cache is partial work)."""
    keys: set[str] = set()
    for item in plans:
        rows = read(item.path) if item.done else None
        if rows is not None:
            keys.update(rows["sha256"].dropna())
    return keys


def write(item: ShardPlan, rows: list[dict[str, Any]]) -> None:
    """Record a finished shard's rows (in shard order), atomically."""
    import pandas as pd

    ordered: list[dict[str, Any]] = sorted(rows, key=_seq)
    frame = pd.DataFrame(ordered)
    frame = frame.drop(columns=["total"], errors="ignore")
    for column in frame.columns:
        if frame[column].isna().all():
            frame[column] = pd.Series([None] * len(frame), dtype=object)
    store.save_parquet(item.path, frame)
    item.done = True


def _seq(row: dict[str, Any]) -> int:
    return int(row["seq"])


def read(path: Path) -> pd.DataFrame | None:
    """A ledger file's rows, or None when it is missing or damaged (the shard is redone)."""
    import pandas as pd

    if not path.is_file():
        return None
    try:
        return pd.read_parquet(path)
    except Exception:  # noqa: BLE001 - any damage just means "not finished"
        return None


def assemble(plans: list[ShardPlan], cache: EmbeddingCache, folder: Path,
             dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """The items and vectors of all shards, from their ledgers and the cache, in shard order.

    The vectors are a scratch memory map in ``folder`` (see :func:`.store.scratch_rows`).
    """
    import pandas as pd

    frames = []
    for item in plans:
        rows = read(item.path)
        if rows is None:
            raise RuntimeError(f"shard {item.url} has no ledger after encoding")
        frames.append(rows)
    frame = pd.concat(frames, ignore_index=True).drop(columns=["seq"])
    keys = [k if isinstance(k, str) else None for k in frame["sha256"]]
    vectors = store.scratch_rows(folder, len(keys), cache.dim, dtype)
    reasons = cache.lookup_into(keys, vectors)
    read_errors = frame["error"].tolist()
    frame["error"] = [e if isinstance(e, str) and e else r for e, r in
                      zip(read_errors, reasons, strict=True)]
    frame["kind"] = "image"
    frame["path"] = None
    captions = frame["caption"] if "caption" in frame.columns else pd.Series([None] * len(frame))
    frame["title"] = [c if isinstance(c, str) and c.strip() else k for c, k in
                      zip(captions, frame["key"], strict=True)]
    for column in _INT_COLUMNS:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column]).astype("Int64")
    return frame, vectors
