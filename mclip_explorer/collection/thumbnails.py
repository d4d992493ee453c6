"""Small WebP thumbnails of collection images, made on demand and cached in the collection folder.

The widget asks for thumbnails only by item id, so this module is the one place that turns an id
into a file read. Cached files live in ``<collection>/thumbs/<size>/<id>.webp`` and are written
atomically, so two kernels sharing a collection never see half a file.
"""

from __future__ import annotations

import io
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer.errors import MclipExplorerError

MIN_SIZE = 16
MAX_SIZE = 512
QUALITY = 80  # WebP quality: at 128 px a thumbnail is 2-6 kB and still recognisable


class ThumbnailError(MclipExplorerError, ValueError):
    """An id or size for which no thumbnail can be made; the message says why."""


def thumbnail(collection: Any, item_id: int, size: int = 128, *, items: Any = None) -> bytes:
    """Return a WebP thumbnail of one image item, at most ``size`` pixels on its longer side.

    Args:
        collection: A :class:`~mclip_explorer.collection.Collection`.
        item_id: The item's id (its row in ``collection.items``).
        size: Longest side in pixels, between 16 and 512.
        items: ``collection.items`` if the caller already holds it (it is a copy per access).

    Returns:
        The encoded WebP bytes (cached after the first call).

    Raises:
        ThumbnailError: The id is unknown, deleted, not an image or failed to decode, or the
            size is out of range.
    """
    size = check_size(size)
    items = collection.items if items is None else items
    row = item_row(items, item_id)
    if row["kind"] != "image":
        raise ThumbnailError(f"item {item_id} is a {row['kind']} item, not an image")
    cached = Path(collection.path) / "thumbs" / str(size) / f"{int(item_id)}.webp"
    if cached.is_file():
        return cached.read_bytes()
    data = make_thumbnail(_image_source(collection, row, item_id), size)
    _write_atomic(cached, data)
    return data


def make_thumbnail(source: Any, size: int) -> bytes:
    """Decode an image (path, bytes or PIL image) and encode a WebP of at most ``size`` px."""
    from PIL import Image

    from mclip_explorer.errors import BadImageError
    from mclip_explorer.images import load_image

    try:
        image = load_image(source)
    except BadImageError as exc:
        raise ThumbnailError(f"cannot make a thumbnail: {exc}") from None
    image.thumbnail((size, size), Image.Resampling.LANCZOS)
    buffer = io.BytesIO()
    image.save(buffer, format="WEBP", quality=QUALITY, method=4)
    return buffer.getvalue()


def check_size(size: object) -> int:
    """Validate a thumbnail size (an int between MIN_SIZE and MAX_SIZE)."""
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)):
        raise ThumbnailError(f"thumbnail size must be an integer, got {size!r}")
    if not MIN_SIZE <= int(size) <= MAX_SIZE:
        raise ThumbnailError(
            f"thumbnail size must be between {MIN_SIZE} and {MAX_SIZE}, got {size}")
    return int(size)


def item_row(items: Any, item_id: object) -> Any:
    """The ``items`` row of a live item id, or a ThumbnailError naming what is wrong with it."""
    if isinstance(item_id, bool) or not isinstance(item_id, (int, np.integer)):
        raise ThumbnailError(f"item id must be an integer, got {item_id!r}")
    if not 0 <= int(item_id) < len(items):
        raise ThumbnailError(f"no item with id {item_id} (the collection has {len(items)} items)")
    row = items.iloc[int(item_id)]
    if bool(row.get("deleted", False)):
        raise ThumbnailError(f"item {item_id} was removed from the collection")
    return row


def _image_source(collection: Any, row: Any, item_id: object) -> Path | bytes:
    error = row.get("error")
    if isinstance(error, str) and error:
        raise ThumbnailError(f"item {item_id} could not be decoded when it was added: {error}")
    path = row.get("path")
    if not isinstance(path, str) and isinstance(row.get("shard"), str):
        from mclip_explorer.collection.sources.shards import read_item_image
        from mclip_explorer.errors import SourceError

        try:  # an item of a WebDataset / parquet shard: read just its image
            return read_item_image(row)
        except SourceError as exc:
            raise ThumbnailError(f"item {item_id}: {exc}") from None
    if not isinstance(path, str) or not path:
        raise ThumbnailError(f"item {item_id} has no image file")
    source = Path(path)
    if not source.is_absolute():
        # Paths in a collection are stored relative to the collection folder when inside it.
        source = Path(collection.path) / source
    return source


def _write_atomic(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        Path(tmp).replace(target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
