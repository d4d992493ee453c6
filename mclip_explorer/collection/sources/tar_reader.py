"""Stream WebDataset tar shards sample by sample, turning any damage into failed records.

A sample is the run of consecutive tar members sharing a ``__key__`` (the member name up to the
first dot of its base name, as in the WebDataset specification and img2dataset's output). Its
first image member (``.jpg``, ``.png``, ``.webp``...) is the item's image, ``.txt`` its caption and
``.json`` its metadata; both are kept as text, never parsed into code or markup. The tar is read
as a stream (``r|*``, gzip included), so one sample is in memory at a time.
"""

from __future__ import annotations

import re
import tarfile
import zlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from mclip_explorer.collection.sources.shards import Record, open_shard
from mclip_explorer.errors import SourceError
from mclip_explorer.images import IMAGE_EXTENSIONS

if TYPE_CHECKING:
    from typing_extensions import Self

_KEY = re.compile(r"^((?:.*/|)[^./][^.]*)\.([^/]*)$")
IMAGE_SUFFIXES = tuple(sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS))
MAX_MEMBER_BYTES = 256 * 2**20  # a bigger "image" member is refused, not read into memory
_DAMAGE = (tarfile.TarError, OSError, EOFError, zlib.error, ValueError)


def iter_tar_records(url: str, storage_options: dict[str, Any]) -> Iterator[Record]:
    """Records of one tar shard, in archive order; the last one carries ``total``."""
    previous: Record | None = None
    count = 0
    for count, record in enumerate(_samples(url, storage_options,  # noqa: B007 - count is used
                                            url.lower().endswith(".tar")), start=1):
        if previous is not None:
            yield previous
        previous = record
    if previous is None:
        previous = Record(url, None, 0, None, "the shard holds no samples")
        count = 1
    yield Record(previous.shard, previous.key, previous.seq, previous.image, previous.error,
                 previous.meta, total=count)


def read_tar_image(url: str, key: str, offset: Any, size: Any,
                   storage_options: dict[str, Any]) -> bytes:
    """The image bytes of sample ``key``: one ranged read when its offset is known, else a scan.

    Raises:
        SourceError: The shard cannot be read or no longer holds the sample's image.
    """
    try:
        with open_shard(url, storage_options) as handle:
            if _known(offset) and _known(size):
                handle.seek(int(offset))
                return bytes(handle.read(int(size)))
    except _DAMAGE as exc:
        raise SourceError(f"cannot read {key!r} from shard {url}: {exc}") from None
    for record in _samples(url, storage_options, False):
        if record.key == key and record.image is not None:
            return record.image
    raise SourceError(f"shard {url} no longer holds an image for key {key!r}")


def _samples(url: str, storage_options: dict[str, Any], plain: bool) -> Iterator[Record]:
    seq = 0
    try:
        handle = open_shard(url, storage_options)
    except (SourceError, *_DAMAGE) as exc:
        yield Record(url, None, 0, None, f"cannot open shard: {exc}")
        return
    with handle:
        try:
            stream = tarfile.open(fileobj=handle, mode="r|*",  # noqa: SIM115 - closed with handle
                                  tarinfo=_EndAwareInfo)
        except _DAMAGE as exc:
            yield Record(url, None, 0, None, f"not a readable tar archive: {exc}")
            return
        key: str | None = None
        members: dict[str, tuple[bytes | None, int | None]] = {}
        seen: set[str] = set()
        try:
            for info in stream:
                match = _KEY.match(info.name)
                if not info.isreg() or match is None or info.name.rsplit("/", 1)[-1][:1] == ".":
                    continue
                name, suffix = match.group(1), match.group(2).lower()
                if name != key:
                    if key is not None:
                        yield _record(url, key, seq, members, seen, plain)
                        seq += 1
                    key, members = name, {}
                if info.size > MAX_MEMBER_BYTES:
                    members[suffix] = (None, None)
                    continue
                reader = stream.extractfile(info)
                data = reader.read() if reader is not None else b""
                if len(data) != info.size:
                    raise tarfile.ReadError("unexpected end of data")
                members[suffix] = (data, info.offset_data)
        except _DAMAGE as exc:
            reason = f"damaged tar (truncated or corrupt member): {exc}"
            yield Record(url, key, seq, None, reason, _text_meta(members))
            return
        end = getattr(stream, _END, None)
        if end != _CLEAN:
            # tarfile ends quietly at a bad or cut header; the last sample may be incomplete.
            reason = f"damaged tar (truncated or corrupt header near byte {stream.offset}): {end}"
            yield Record(url, key, seq, None, reason, _text_meta(members))
        elif key is not None:
            yield _record(url, key, seq, members, seen, plain)


_END, _CLEAN = "_mclip_end", "end of archive"


class _EndAwareInfo(tarfile.TarInfo):
    """Records on the archive why reading stopped: only a zero block is a proper end."""

    @classmethod
    def fromtarfile(cls, archive: tarfile.TarFile) -> Self:
        try:
            return super().fromtarfile(archive)
        except tarfile.EOFHeaderError:  # type: ignore[attr-defined]  # not in typeshed
            setattr(archive, _END, _CLEAN)
            raise
        except tarfile.HeaderError as exc:
            setattr(archive, _END, str(exc) or type(exc).__name__)
            raise


def _record(url: str, key: str, seq: int, members: dict[str, tuple[bytes | None, int | None]],
            seen: set[str], plain: bool) -> Record:
    meta = _text_meta(members)
    if key in seen:
        return Record(url, key, seq, None, "the key appears twice in the shard (its members "
                      "are not contiguous)", meta)
    seen.add(key)
    image = next((s for s in members if s in IMAGE_SUFFIXES), None)
    if image is None:
        names = ", ".join(sorted(members)) or "none"
        return Record(url, key, seq, None, f"the sample has no image member (members: {names})",
                      meta)
    data, offset = members[image]
    if data is None:
        return Record(url, key, seq, None, f"image member larger than {MAX_MEMBER_BYTES} bytes",
                      meta)
    meta["member_offset"] = offset if plain else None
    return Record(url, key, seq, data, None, meta)


def _text_meta(members: dict[str, tuple[bytes | None, int | None]]) -> dict[str, Any]:
    """``caption`` (.txt) and ``json`` (.json) as text; undecodable bytes are replaced."""
    meta: dict[str, Any] = {"caption": None, "json": None, "member_offset": None}
    for suffix, column in (("txt", "caption"), ("json", "json")):
        data = members.get(suffix, (None, None))[0]
        if data is not None:
            meta[column] = data.decode("utf-8", errors="replace")
    return meta


def _known(value: Any) -> bool:
    try:
        return value is not None and int(value) >= 0
    except (TypeError, ValueError):
        return False
