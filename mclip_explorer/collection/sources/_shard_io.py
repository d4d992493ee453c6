"""What the shard readers share with :mod:`.shards`: the record type and opening a shard.

Kept apart so that the readers (``tar_reader``, ``parquet_reader``), which :mod:`.shards` calls,
do not import :mod:`.shards` back (an import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mclip_explorer.errors import SourceError


@dataclass(frozen=True)
class Record:
    """One sample read from a shard, before hashing and encoding.

    Attributes:
        shard: The shard URL.
        key: The sample's ``__key__`` (tar) or key column / row number (parquet); None when the
            whole shard is unreadable.
        seq: Position of the record in its shard's stream.
        image: Encoded image bytes, or None when there are none.
        error: Why the sample cannot be used (damaged tar, missing image...), or None.
        meta: Item columns taken from the sample (``caption``, ``json``, ``member_offset``,
            ``row`` and parquet metadata columns); values are str, int, float, bool or None.
        total: Set on the last record of a shard: how many records the shard gave.
    """

    shard: str
    key: str | None
    seq: int
    image: bytes | None
    error: str | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    total: int | None = None


def filesystem(url: str, storage_options: dict[str, Any]) -> tuple[Any, str]:
    """The fsspec filesystem and in-filesystem path of a URL or local path."""
    import fsspec

    try:
        fs, path = fsspec.core.url_to_fs(url, **storage_options)
    except (ImportError, ValueError) as exc:
        raise SourceError(f"cannot open {url!r}: {exc}") from None
    return fs, path


def open_shard(url: str, storage_options: dict[str, Any]) -> Any:
    """Open a shard for binary reading (seekable where the filesystem allows)."""
    fs, path = filesystem(url, storage_options)
    return fs.open(path, "rb")
