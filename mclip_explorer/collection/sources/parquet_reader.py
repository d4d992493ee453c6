"""Stream parquet files with an image-bytes column (img2dataset's ``parquet`` output) by batch.

Recognised by default: img2dataset's ``jpg`` / ``png`` / ``webp`` image column, its ``key`` and
``txt`` (caption) columns, and the Hugging Face layout (``image`` as bytes or a ``{bytes, path}``
struct). Every other scalar column becomes an item column; one whose name the collection already
uses (``width``, ``sha256``...) is kept as ``source_<name>``. Values are kept as data (text,
numbers), never evaluated.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from mclip_explorer.collection.sources.local import RESERVED
from mclip_explorer.collection.sources.shards import Record, open_shard
from mclip_explorer.errors import SourceError

IMAGE_COLUMNS = ("jpg", "png", "webp", "jpeg", "image")
CAPTION_COLUMNS = ("txt", "caption")
# Item columns of sharded items: a parquet column of the same name is renamed source_<name>.
SHARD_COLUMNS = ("shard", "key", "caption", "json", "member_offset", "row")
BATCH_ROWS = 256
_DAMAGE = (OSError, ValueError, EOFError)


def iter_parquet_records(url: str, image_column: str | None,
                         storage_options: dict[str, Any]) -> Iterator[Record]:
    """Records of one parquet file, in row order; the last one carries ``total``."""
    import pyarrow.parquet as pq

    try:
        handle = open_shard(url, storage_options)
    except (SourceError, *_DAMAGE) as exc:
        yield Record(url, None, 0, None, f"cannot open shard: {exc}", total=1)
        return
    with handle:
        try:
            file = pq.ParquetFile(handle)
            names = file.schema_arrow.names
        except _DAMAGE as exc:
            yield Record(url, None, 0, None, f"not a readable parquet file: {exc}", total=1)
            return
        # A missing image column is a setting to fix (image_column=), not damage: raise.
        column = _image_column(names, image_column, url)
        if file.metadata.num_rows == 0:
            yield Record(url, None, 0, None, "the shard holds no rows", total=1)
            return
        total = file.metadata.num_rows
        caption = next((c for c in CAPTION_COLUMNS if c in names and c != column), None)
        row = 0
        try:
            for batch in file.iter_batches(batch_size=BATCH_ROWS):
                for values in batch.to_pylist():
                    yield _record(url, row, values, column, caption,
                                  total if row == total - 1 else None)
                    row += 1
        except _DAMAGE as exc:
            yield Record(url, None, row, None, f"damaged parquet file after row {row}: {exc}",
                         total=row + 1)


def read_parquet_image(url: str, row: Any, storage_options: dict[str, Any]) -> bytes:
    """The image bytes of row ``row`` (reads only the row group holding it).

    Raises:
        SourceError: The file cannot be read or has no such row.
    """
    import pyarrow.parquet as pq

    try:
        position = int(row)
        with open_shard(url, storage_options) as handle:
            file = pq.ParquetFile(handle)
            column = _image_column(file.schema_arrow.names, None, url)
            for group in range(file.num_row_groups):
                rows = file.metadata.row_group(group).num_rows
                if position < rows:
                    value = file.read_row_group(group, columns=[column]).column(0)[position]
                    data = _bytes(value.as_py())
                    if data is None:
                        break
                    return data
                position -= rows
    except (TypeError, SourceError, *_DAMAGE) as exc:
        raise SourceError(f"cannot read row {row!r} of {url}: {exc}") from None
    raise SourceError(f"{url} has no image in row {row!r}")


def _image_column(names: list[str], wanted: str | None, url: str) -> str:
    if wanted is not None:
        if wanted not in names:
            raise SourceError(f"{url} has no column {wanted!r} (columns: {', '.join(names)})")
        return wanted
    for name in IMAGE_COLUMNS:
        if name in names:
            return name
    raise SourceError(f"{url} has none of the image columns {IMAGE_COLUMNS}; pass "
                      f"image_column= (columns: {', '.join(names)})")


def _record(url: str, row: int, values: dict[str, Any], column: str, caption: str | None,
            total: int | None) -> Record:
    key = values.get("key")
    meta: dict[str, Any] = {"caption": None if caption is None else _text(values[caption]),
                            "json": None, "member_offset": None, "row": row}
    for name, value in values.items():
        if name in (column, caption, "key") or not _scalar(value):
            continue
        clash = name in RESERVED or name in SHARD_COLUMNS or name == "title"
        meta[f"source_{name}" if clash else name] = value
    image = _bytes(values.get(column))
    error = None if image else f"no image bytes in column {column!r}"
    return Record(url, str(row) if key is None else str(key), row, image, error, meta, total)


def _bytes(value: Any) -> bytes | None:
    if isinstance(value, dict):  # the Hugging Face Image layout {bytes, path}
        value = value.get("bytes")
    return bytes(value) if isinstance(value, (bytes, bytearray)) and value else None


def _text(value: Any) -> str | None:
    if value is None:
        return None
    return value.decode("utf-8", errors="replace") if isinstance(value, bytes) else str(value)


def _scalar(value: Any) -> bool:
    return value is None or isinstance(value, (str, int, float, bool))
