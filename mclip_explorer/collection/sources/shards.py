"""Sharded sources: WebDataset tar shards and parquet files with image bytes, local or fsspec URLs.

A sharded source is only *described* here (:class:`ShardedSource`: the kind, the ordered shard
URLs and the reading options); its samples are streamed shard by shard by
:func:`iter_records`, so memory stays bounded by one batch, never by the dataset. Both engines
(``local`` and ``ray``) read through :func:`iter_records`, so they see exactly the same items.

Accepted forms (strings may be local paths or fsspec URLs: ``s3://``, ``gs://``, ``hf://``,
``file://``, ``memory://``...):

* a brace pattern ``shards/{00000..01023}.tar`` (numeric ranges keep their zero padding; comma
  lists ``{a,b}`` work too), a glob ``shards/*.tar``, one ``.tar`` file, a list of them, or a
  folder holding ``.tar`` files (and no loose images);
* the same with ``.parquet`` files;
* :func:`webdataset` / :func:`parquet` to say it explicitly or to pass options (the parquet image
  column, fsspec ``storage_options``).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mclip_explorer.errors import SourceError

KINDS = {".tar": "webdataset", ".tgz": "webdataset", ".tar.gz": "webdataset",
         ".parquet": "parquet"}
_BRACE = re.compile(r"\{([^{}]*)\}")
_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)$")
_GLOB = re.compile(r"[*?\[]")
MAX_SHARDS_FROM_BRACES = 1_000_000


@dataclass(frozen=True)
class ShardedSource:
    """An ordered list of shards of one kind, plus how to read them.

    Attributes:
        kind: ``"webdataset"`` or ``"parquet"``.
        shards: Shard URLs (or absolute local paths), in item order.
        image_column: Parquet only: the column of encoded image bytes (None: recognise
            img2dataset's ``jpg``/``png``/``webp`` or an ``image`` column).
        storage_options: fsspec options (credentials, endpoints) for every shard.
    """

    kind: str
    shards: tuple[str, ...]
    image_column: str | None = None
    storage_options: dict[str, Any] = field(default_factory=dict)

    @property
    def description(self) -> str:
        """A short human name for messages."""
        first = self.shards[0] if self.shards else "?"
        return f"{self.kind} source of {len(self.shards)} shard(s) ({first}, ...)"


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


def webdataset(shards: str | Sequence[str], **storage_options: Any) -> ShardedSource:
    """A WebDataset source: tar shards as a brace pattern, glob, folder, file or list.

    Args:
        shards: See the module docstring.
        **storage_options: fsspec options for the filesystem of the URLs.
    """
    return ShardedSource("webdataset", tuple(_expand(shards, ("webdataset",), storage_options)),
                         None, storage_options)


def parquet(files: str | Sequence[str], *, image_column: str | None = None,
            **storage_options: Any) -> ShardedSource:
    """A parquet source: files with a column of encoded image bytes (img2dataset's layout).

    Args:
        files: Brace pattern, glob, folder, file or list of ``.parquet`` files.
        image_column: Column of image bytes (default: ``jpg``, ``png``, ``webp``, ``jpeg``,
            ``image`` (bytes or a ``{bytes, path}`` struct), the first that exists).
        **storage_options: fsspec options for the filesystem of the URLs.
    """
    return ShardedSource("parquet", tuple(_expand(files, ("parquet",), storage_options)),
                         image_column, storage_options)


def resolve_sharded(source: Any) -> ShardedSource | None:
    """The sharded source ``source`` names, or None when it is a local-files source.

    A folder holding both ``.tar`` and ``.parquet`` files is WebDataset: img2dataset writes a
    metadata ``.parquet`` (without images) beside each tar.
    """
    if isinstance(source, ShardedSource):
        return source
    if isinstance(source, (str, Path)):
        text = str(source)
        kind = kind_of(text) or (kind_of(_BRACE.sub("", text)) if _BRACE.search(text) else None)
        kind = kind or _folder_kind(text)
        if kind is None:
            if _is_url(text):
                raise SourceError(f"no .tar or .parquet shards found at {text}")
            return None
        return ShardedSource(kind, tuple(_expand(text, (kind,), {})))
    if (isinstance(source, (list, tuple)) and source
            and all(isinstance(s, (str, Path)) and kind_of(str(s)) for s in source)):
        shards = _expand([str(s) for s in source], ("webdataset", "parquet"), {})
        return ShardedSource(_one_kind(shards), tuple(shards))
    return None


def kind_of(name: str) -> str | None:
    """``"webdataset"``/``"parquet"`` from a shard's file name, else None."""
    lower = name.lower().rstrip("/")
    for suffix, kind in KINDS.items():
        if lower.endswith(suffix):
            return kind
    return None


def expand_braces(pattern: str) -> list[str]:
    """Expand ``{0..9}`` ranges (zero padding kept) and ``{a,b}`` lists, left to right."""
    match = _BRACE.search(pattern)
    if match is None:
        return [pattern]
    body, head, tail = match.group(1), pattern[:match.start()], pattern[match.end():]
    numbers = _RANGE.match(body)
    if numbers:
        lo_text, hi_text = numbers.groups()
        lo, hi = int(lo_text), int(hi_text)
        width = len(lo_text) if lo_text.startswith("0") and len(lo_text) > 1 else 0
        if abs(hi - lo) >= MAX_SHARDS_FROM_BRACES:
            raise SourceError(f"brace range {{{body}}} names more than "
                              f"{MAX_SHARDS_FROM_BRACES} shards")
        step = 1 if hi >= lo else -1
        choices = [str(n).zfill(width) for n in range(lo, hi + step, step)]
    else:
        choices = body.split(",")
    return [f"{head}{choice}{rest}" for choice in choices for rest in expand_braces(tail)]


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


def signature(url: str, storage_options: dict[str, Any]) -> str:
    """What identifies a shard's current content: URL, size and change stamp (mtime / ETag)."""
    fs, path = filesystem(url, storage_options)
    try:
        info = fs.info(path)
    except (OSError, ValueError) as exc:  # a vanished shard is read (and fails) like any other
        return f"{url}|missing|{type(exc).__name__}"
    stamp = next((str(info[k]) for k in ("mtime", "ETag", "etag", "LastModified", "updated",
                                         "created", "last_commit") if info.get(k) is not None),
                 "")
    return f"{url}|{info.get('size')}|{stamp}"


def shard_digest(kind: str, url: str, options: str, storage_options: dict[str, Any]) -> str:
    """File-name-safe id of a shard's content and reading options (for the shard ledger)."""
    text = "\x00".join((kind, options, signature(url, storage_options)))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


def iter_records(source: ShardedSource, url: str) -> Iterator[Record]:
    """Stream the records of one shard; damage becomes failed records, never an exception."""
    if source.kind == "webdataset":
        from mclip_explorer.collection.sources.tar_reader import iter_tar_records

        yield from iter_tar_records(url, source.storage_options)
    else:
        from mclip_explorer.collection.sources.parquet_reader import iter_parquet_records

        yield from iter_parquet_records(url, source.image_column, source.storage_options)


def read_item_image(row: Any, storage_options: dict[str, Any] | None = None) -> bytes:
    """The image bytes of an item that came from a shard (for thumbnails).

    Raises:
        SourceError: The shard is gone or no longer holds the item.
    """
    shard, key = row.get("shard"), row.get("key")
    options = storage_options or {}
    if kind_of(str(shard)) == "parquet":
        from mclip_explorer.collection.sources.parquet_reader import read_parquet_image

        return read_parquet_image(str(shard), row.get("row"), options)
    from mclip_explorer.collection.sources.tar_reader import read_tar_image

    return read_tar_image(str(shard), str(key), row.get("member_offset"),
                          row.get("bytes"), options)


def _expand(source: str | Sequence[str], kinds: tuple[str, ...],
            storage_options: dict[str, Any]) -> list[str]:
    patterns = [source] if isinstance(source, (str, Path)) else list(source)
    shards: list[str] = []
    for pattern in patterns:
        for name in expand_braces(str(pattern)):
            shards.extend(_list_one(name, kinds, storage_options))
    if not shards:
        raise SourceError(f"no shards found in {source!r} (looked for "
                          f"{', '.join(s for s, k in KINDS.items() if k in kinds)} files)")
    return shards


def _list_one(name: str, kinds: tuple[str, ...], storage_options: dict[str, Any]) -> list[str]:
    fs, path = filesystem(name, storage_options)
    protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
    local = protocol in ("file", "local")

    def url(p: str) -> str:
        return str(Path(p).resolve()) if local else fs.unstrip_protocol(p)

    if _GLOB.search(path) and not fs.exists(path):
        found = sorted(fs.glob(path))
        return [url(p) for p in found if kind_of(p) in kinds and fs.isfile(p)]
    if fs.isdir(path):
        found = sorted(p for p in fs.find(path) if kind_of(p) in kinds)
        return [url(p) for p in found]
    if kind_of(path) not in kinds:
        raise SourceError(f"{name!r} is not a {' or '.join(kinds)} shard")
    if local and not fs.exists(path):
        raise SourceError(f"shard not found: {path}")
    return [url(path)]  # a missing remote shard becomes a failed item when it is read


def _one_kind(shards: list[str]) -> str:
    kinds = {kind_of(s) for s in shards}
    if len(kinds) != 1:
        raise SourceError("a source mixes .tar and .parquet shards; build one, then add() the "
                          "other")
    return str(kinds.pop())


def _is_url(text: str) -> bool:
    return "://" in text


def _folder_kind(text: str) -> str | None:
    """The shard kind of a folder of shards (a local one must hold no loose images)."""
    from mclip_explorer.images import is_image_path

    if _is_url(text):
        fs, path = filesystem(text, {})
        names = fs.find(path) if fs.isdir(path) else []
    else:
        folder = Path(text).expanduser()
        if not folder.is_dir():
            return None
        names = []
        for child in folder.rglob("*"):
            if child.is_file() and is_image_path(child):
                return None
            names.append(child.name)
    kinds = {kind_of(str(name)) for name in names}
    return "webdataset" if "webdataset" in kinds else "parquet" if "parquet" in kinds else None
