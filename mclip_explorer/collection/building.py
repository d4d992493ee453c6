"""Content-addressed, sharded, resumable encoding of a collection's items.

Every embedding is cached under the SHA-256 of the item's content, in a folder named by the
model fingerprint and :data:`PREPROCESS_VERSION`, so a renamed or moved file is never encoded
twice and a rebuild after adding 10 files encodes exactly those 10. Work is flushed in shards of
``shard_size`` items, each written atomically; a build killed at any moment redoes at most the
shard it was in.
"""

from __future__ import annotations

import hashlib
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer._files import atomic_write
from mclip_explorer.collection import columns, store
from mclip_explorer.collection.embedding_cache import PREPROCESS_VERSION as PREPROCESS_VERSION
from mclip_explorer.collection.embedding_cache import EmbeddingCache as EmbeddingCache
from mclip_explorer.models.base import Encoder

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.collection.index import VectorIndex

SHARD_SIZE = 256
INDEX_CHUNK = 65_536  # rows gathered (as float32) per hnswlib add: 128 MB at dim 512
PARALLEL_INDEX_MIN = 100_000  # from this many items the index is built on all cores
_TEXT_PREFIX = b"mclip-explorer text\x00"


@dataclass
class Hashed:
    """Content facts of each item, aligned with the input order.

    Attributes:
        sha256: Hex digest of the content, or None where the content could not be read.
        size: Bytes of the encoded file (None for unreadable items).
        width: Pixel width from the image header (None if the header is unreadable).
        height: Pixel height from the image header.
        errors: Position -> reason for items that could not even be read.
        data: Position -> encoded bytes of in-memory items (written to ``media/``).
        remembered: Files read and added to the ``known`` facts.
    """

    sha256: list[str | None]
    size: list[int | None]
    width: list[int | None]
    height: list[int | None]
    errors: dict[int, str] = field(default_factory=dict)
    data: dict[int, bytes] = field(default_factory=dict)
    remembered: int = 0


# path -> (bytes, mtime_ns, sha256, width, height) of a file hashed before.
FileFacts = dict[str, tuple[int, int, str, int | None, int | None]]
FILE_FACTS = "files.parquet"


def hash_payloads(payloads: Sequence[Any], *, progress: bool = False,
                  known: FileFacts | None = None) -> Hashed:
    """Read every item once: content hash, byte size and header size, never a full decode.

    Args:
        payloads: Paths (str), encoded bytes or PIL images.
        progress: Show a progress bar.
        known: Facts of files hashed before; a file whose size and mtime are unchanged is not
            read again (as git does). Updated in place with every file read.
    """
    out = Hashed([], [], [], [])
    bar = progress_bar(len(payloads), "hashing", "file", progress)
    for position, payload in enumerate(payloads):
        facts = _unchanged(payload, known)
        if facts is not None:
            out.sha256.append(facts[2])
            out.size.append(facts[0])
            out.width.append(facts[3])
            out.height.append(facts[4])
            if bar is not None:
                bar.update(1)
            continue
        data, error = _read(payload)
        if error is not None or data is None:
            out.sha256.append(None)
            out.size.append(None)
            out.width.append(None)
            out.height.append(None)
            out.errors[position] = error or "unreadable"
        else:
            out.sha256.append(hashlib.sha256(data).hexdigest())
            out.size.append(len(data))
            width, height = _header_size(data)
            out.width.append(width)
            out.height.append(height)
            if not isinstance(payload, str):
                out.data[position] = data
            elif known is not None:
                _remember(payload, out, known)
        if bar is not None:
            bar.update(1)
    if bar is not None:
        bar.close()
    return out


def _unchanged(payload: Any, known: FileFacts | None) -> tuple[Any, ...] | None:
    if not known or not isinstance(payload, str) or payload not in known:
        return None
    try:
        stat = Path(payload).stat()
    except OSError:
        return None
    facts = known[payload]
    return facts if (stat.st_size, stat.st_mtime_ns) == facts[:2] else None


def _remember(path: str, hashed: Hashed, known: FileFacts) -> None:
    try:
        mtime = Path(path).stat().st_mtime_ns
    except OSError:
        return
    sha, size = hashed.sha256[-1], hashed.size[-1]
    if sha is not None and size is not None:
        known[path] = (size, mtime, sha, hashed.width[-1], hashed.height[-1])
        hashed.remembered += 1


def load_file_facts(cache_root: Path) -> FileFacts:
    """Facts of the files earlier builds hashed (empty when there are none or they are damaged)."""
    import pandas as pd

    path = cache_root / FILE_FACTS
    try:
        frame = pd.read_parquet(path)
        rows = zip(frame["path"], frame["bytes"], frame["mtime_ns"], frame["sha256"],
                   frame["width"], frame["height"], strict=True)
        return {p: (int(b), int(m), str(s), _int_or_none(w), _int_or_none(h))
                for p, b, m, s, w, h in rows}
    except Exception:  # noqa: BLE001 - a lost facts file only costs a re-read of the files
        return {}


def save_file_facts(cache_root: Path, known: FileFacts) -> None:
    """Write the file facts atomically."""
    import pandas as pd

    fields = ("bytes", "mtime_ns", "sha256", "width", "height")
    frame = pd.DataFrame.from_dict(known, orient="index", columns=list(fields))
    frame.index.name = "path"
    frame = frame.reset_index()
    for column in ("width", "height"):
        frame[column] = frame[column].astype("Int64")
    store.save_parquet(cache_root / FILE_FACTS, frame)


def _int_or_none(value: Any) -> int | None:
    import pandas as pd

    return None if pd.isna(value) else int(value)


def text_key(text: str) -> str:
    """Cache key of a text item (prefixed so it can never equal an image file's hash)."""
    return hashlib.sha256(_TEXT_PREFIX + text.encode("utf-8")).hexdigest()


def _read(payload: Any) -> tuple[bytes | None, str | None]:
    if isinstance(payload, str):
        path = Path(payload)
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None, "file not found"
        except IsADirectoryError:
            return None, "is a folder, not an image file"
        except OSError as exc:
            return None, f"cannot read file: {exc.strerror or exc}"
        return (data, None) if data else (None, "empty file (0 bytes)")
    if isinstance(payload, bytes):
        return (payload, None) if payload else (None, "empty bytes")
    # A PIL image: PNG bytes make a stable, lossless content key and a file for thumbnails.
    buffer = io.BytesIO()
    payload.save(buffer, format="PNG")
    return buffer.getvalue(), None


def _header_size(data: bytes) -> tuple[int | None, int | None]:
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            return int(image.size[0]), int(image.size[1])
    except Exception:  # noqa: BLE001 - any header failure just means "size unknown"
        return None, None


def media_name(sha256: str, data: bytes) -> str:
    """File name under ``media/`` for an in-memory image, with its real format's extension."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            ext = (image.format or "png").lower()
    except Exception:  # noqa: BLE001 - undecodable bytes are still kept, as .bin
        ext = "bin"
    return f"{sha256}.{'jpg' if ext == 'jpeg' else ext}"


def encode_images(
    encoder: Encoder,
    cache: EmbeddingCache,
    keys: Sequence[str | None],
    payloads: Sequence[Any],
    *,
    batch_size: int = 32,
    num_workers: int | None = None,
    shard_size: int = SHARD_SIZE,
    progress: bool = False,
) -> int:
    """Encode every item whose key is not cached yet, one atomically written shard at a time.

    Returns:
        How many items were sent to the encoder (0 when everything was cached).
    """
    todo: dict[str, Any] = {}
    for key, payload, absent in zip(keys, payloads, cache.missing(keys), strict=True):
        if key is not None and absent and key not in todo:
            todo[key] = payload  # the first of several identical files stands for all
    if not todo:
        return 0
    pending = list(todo.items())
    bar = progress_bar(len(pending), "encoding", "img", progress)
    try:
        for number, start in enumerate(range(0, len(pending), shard_size), start=1):
            chunk = pending[start:start + shard_size]
            vectors, reasons = encode_batch(encoder, [payload for _, payload in chunk],
                                            batch_size=batch_size, num_workers=num_workers,
                                            on_batch=None if bar is None else bar.update)
            store.checkpoint(f"shard-encoded:{number}")
            cache.add_shard([key for key, _ in chunk], vectors, reasons)
            store.checkpoint(f"shard:{number}")
    finally:
        if bar is not None:
            bar.close()
    return len(pending)


def encode_batch(encoder: Encoder, payloads: Sequence[Any], *, batch_size: int = 32,
                 num_workers: int | None = None,
                 on_batch: Callable[[int], object] | None = None) -> tuple[np.ndarray, list[str]]:
    """Encode images: the one encoding step of every engine (local loop and Ray actors).

    Returns:
        ``(n, dim)`` float32 (NaN rows for failures) and each item's failure reason ("" = ok).
    """
    vectors = np.full((len(payloads), encoder.dim), np.nan, dtype=np.float32)
    reasons = [""] * len(payloads)
    for batch in encoder.iter_image_batches(list(payloads), batch_size=batch_size,
                                            num_workers=num_workers, errors="report"):
        vectors[batch.indices] = batch.embeddings
        for position, reason in batch.failures.items():
            reasons[position] = reason
        if on_batch is not None:
            on_batch(len(batch.indices) + len(batch.failures))
    for row in np.flatnonzero(np.isnan(vectors[:, 0])):
        reasons[row] = reasons[row] or "the encoder returned no embedding"
    return vectors, reasons


def encode_texts(encoder: Encoder, cache: EmbeddingCache, texts: Sequence[str], *,
                 batch_size: int = 32, progress: bool = False) -> list[str]:
    """Encode texts not cached yet with the text tower; return their cache keys."""
    keys = [text_key(text) for text in texts]
    todo = {key: text for key, text, absent in zip(keys, texts, cache.missing(keys), strict=True)
            if absent}
    if todo:
        vectors = encoder.encode_text(list(todo.values()), batch_size=batch_size,
                                      progress=progress)
        cache.add_shard(list(todo), vectors, [""] * len(todo))
    return keys


def encode_source(folder: Path, items: Any, encoder: Encoder, batch_size: int | None,
                  num_workers: int | None, shard_size: int, progress: bool,
                  encode: Callable[..., int] | None = None,
                  dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """Hash, encode (cache misses only) and look up a source; returns its rows and vectors.

    The vectors (``dtype``, NaN rows for failures) are a scratch memory map in the collection
    folder (see :func:`.store.scratch_rows`), not an array in memory. ``encode`` replaces
    :func:`encode_images` (same arguments): the Ray engine's hook.
    """
    cache_root = folder / store.CACHE_DIR
    known = load_file_facts(cache_root)
    hashed = hash_payloads(items.payloads, progress=progress, known=known)
    if hashed.remembered:
        save_file_facts(cache_root, known)
    store.checkpoint("hashed")
    frame = items.frame.copy()
    paths = list(frame["path"])
    for position, data in hashed.data.items():  # in-memory images get a file for thumbnails
        name = media_name(str(hashed.sha256[position]), data)
        target = folder / store.MEDIA_DIR / name
        if not target.exists():
            atomic_write(target, data)
        paths[position] = str(target)
    cache = EmbeddingCache(folder / store.CACHE_DIR, encoder.fingerprint, encoder.dim)
    payloads = [str(p) if isinstance(p, str) else p for p in items.payloads]
    (encode or encode_images)(encoder, cache, hashed.sha256, payloads,
                              batch_size=batch_size or 32, num_workers=num_workers,
                              shard_size=shard_size, progress=progress)
    vectors = store.scratch_rows(folder, len(hashed.sha256), encoder.dim, dtype)
    reasons = cache.lookup_into(hashed.sha256, vectors)
    for position, reason in hashed.errors.items():
        reasons[position] = reason
    frame["path"] = paths
    frame["kind"] = "image"
    frame["bytes"], frame["width"], frame["height"] = hashed.size, hashed.width, hashed.height
    frame["sha256"] = hashed.sha256
    frame["error"] = reasons
    return frame, vectors


def normalise_items(frame: pd.DataFrame) -> pd.DataFrame:
    """Put the contract columns first, with stable dtypes; metadata columns follow."""
    frame = frame.copy()
    for column in columns.COLUMNS:
        if column not in frame.columns:
            frame[column] = False if column == "deleted" else None
    frame["deleted"] = frame["deleted"].astype(bool)
    for column in columns.COUNT_COLUMNS:
        frame[column] = frame[column].astype("Int64")
    for column in columns.STRING_COLUMNS:
        frame[column] = frame[column].astype(object).where(frame[column].notna(), None)
    order = [*columns.COLUMNS, *columns.metadata_columns(frame.columns)]
    return frame[order].reset_index(drop=True)


def index_vectors(index: VectorIndex, ids: np.ndarray, vectors_by_id: np.ndarray, *,
                  progress: bool = False, chunk: int = INDEX_CHUNK,
                  parallel_min: int = PARALLEL_INDEX_MIN) -> VectorIndex:
    """Add the rows ``ids`` of ``vectors_by_id`` (row = id) to an index, chunk by chunk.

    Only one chunk at a time is gathered and converted to float32, so a memory-mapped float16
    store stays paged. Below ``parallel_min`` items hnswlib adds on one thread, in input order:
    the graph then depends only on the data, so a resumed build ends identical to an
    uninterrupted one. From ``parallel_min`` on it uses the index's ``num_threads`` (all cores
    by default): the graph then depends on thread timing, searches agree up to the index's
    recall, and a 1M build is not held to half speed.
    """
    bar = progress_bar(len(ids), "indexing", "vec", progress)
    index.reserve(len(ids))
    threads = index.num_threads
    if len(ids) < parallel_min:
        index.num_threads = 1
    try:
        for start in range(0, len(ids), chunk):
            part = ids[start:start + chunk]
            index.add(part, vectors_by_id[part])
            if bar is not None:
                bar.update(len(part))
    finally:
        index.num_threads = threads
        if bar is not None:
            bar.close()
    return index


def progress_bar(total: int, description: str, unit: str, enabled: bool) -> Any:
    """A tqdm bar (a widget in notebooks), or ``None`` when disabled or there is nothing to do."""
    if not enabled or total == 0:
        return None
    from tqdm.auto import tqdm

    return tqdm(total=total, desc=description, unit=unit, dynamic_ncols=True)
