"""Small WebP thumbnails of collection images, made on demand and cached in the collection folder.

The widget asks for thumbnails only by item id, so this module is the one place that turns an id
into a file read. Cached files live in ``<collection>/thumbs/<size>/<id>.webp`` and are written
atomically, so two kernels sharing a collection never see half a file.

A collection that cannot be written (a read-only folder or mount, a full disk) still gets its
thumbnails: they go to the user's cache folder (``$XDG_CACHE_HOME/mclip-explorer/thumbs/...``,
see :func:`mclip_explorer._files.user_cache_dir`), and when that fails too they are made in
memory for each request. Whether the collection folder is writable is decided without writing
to it (:func:`mclip_explorer._files.is_writable_folder`).
"""

from __future__ import annotations

import hashlib
import io
import logging
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer._files import atomic_write, is_writable_folder, user_cache_dir
from mclip_explorer.errors import MclipExplorerError, WriteError

_log = logging.getLogger(__name__)

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
    inside, user, writable = _cache_places(collection, f"{size}/{int(item_id)}.webp")
    for cached in (inside, user):
        if cached.is_file():
            try:
                return cached.read_bytes()
            except OSError:
                continue
    data = make_thumbnail(_image_source(collection, row, item_id), size)
    # Never attempt a write into a collection that is not writable (a read-only mount).
    for cached in (inside, user) if writable else (user,):
        try:
            atomic_write(cached, data)
            break
        except (WriteError, OSError) as exc:
            _log.info("thumbnail cache %s not writable (%s); trying the next place", cached, exc)
    return data


def _cache_places(collection: Any, name: str) -> tuple[Path, Path, bool]:
    """``(in the collection, in the user's cache, whether the collection is writable)``."""
    folder = Path(collection.path)
    # The collection's identity: its path and creation time (a rebuilt folder gets new ids).
    created = str(getattr(collection, "manifest", {}).get("created", ""))
    key = hashlib.sha256(f"{folder}\0{created}".encode()).hexdigest()[:16]
    user = user_cache_dir() / "thumbs" / f"{folder.name}-{key}" / name
    inside = folder / "thumbs" / name
    thumbs = folder / "thumbs"
    writable = not getattr(collection, "read_only", False) and is_writable_folder(
        thumbs if thumbs.is_dir() else folder)
    return inside, user, writable


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
