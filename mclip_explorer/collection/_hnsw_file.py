"""The saved hnswlib index file: complete-file checks, and checks against the manifest.

hnswlib trusts the file it loads: a wrong ``dim`` or a truncated file reads garbage or crashes
the process. So the header and the sizes of an hnswlib 0.8 file are checked here against the
manifest's parameters before hnswlib reads a byte of it (the manifest's checksum, verified first
on open, catches changed bytes). hnswlib's C++ writer ignores write errors, so a freshly written
file is walked to its last byte (:func:`check_complete`) before it may be committed.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer.errors import CollectionError

HEADER_BYTES = 96  # hnswlib 0.8 saveIndex: 6 x size_t, int, uint32, 3 x size_t, double, size_t
_READ_BYTES = 4 << 20  # level-0 bytes read per block when collecting labels


def check_complete(path: Path, *, dim: int, m: int, count: int) -> None:
    """Check that an hnswlib 0.8 file is whole: header, level-0 block and every link list.

    The upper-level link lists follow the level-0 block, each a uint32 byte count then that many
    bytes; a complete file ends exactly after the last one.

    Raises:
        CollectionError: The file is shorter or longer than its own structure says.
    """
    read_layout(path, dim=dim, m=m, count=count)
    header = np.fromfile(path, dtype=np.uint8, count=HEADER_BYTES)
    per_element = int(header[24:32].view(np.uint64)[0])
    links_unit = int(header[56:64].view(np.uint64)[0]) * 4 + 4  # maxM_ ids + count word
    size = path.stat().st_size
    start = HEADER_BYTES + count * per_element
    with path.open("rb") as handle:
        handle.seek(start)
        tail = handle.read()
    end = _walk_link_lists(tail, count, links_unit)
    if end is None:
        raise CollectionError(f"index file {path} is damaged (a link list size that is not a "
                              f"multiple of {links_unit} bytes)")
    if end != len(tail):
        raise CollectionError(f"index file {path} is incomplete ({size} bytes; its structure "
                              f"needs {start + end})")


def _walk_link_lists(tail: bytes, count: int, unit: int) -> int | None:
    """Byte length of ``count`` link-list records (uint32 size + data) at the start of ``tail``.

    Returns the end offset (past ``len(tail)`` when truncated), or None for a size that is not a
    multiple of ``unit``. Most items live on level 0 only (a zero size word), so the loop steps
    only over the records with data: about one item in M.
    """
    import bisect

    words = np.frombuffer(tail[: len(tail) // 4 * 4], dtype="<u4")
    nonzero = np.flatnonzero(words).tolist()
    word, done = 0, 0  # position in words, records passed
    while done < count:
        if word >= len(words):  # the last record's data ran past the end: truncated
            return 4 * word + 4 * (count - done)
        nxt = bisect.bisect_left(nonzero, word)
        at = nonzero[nxt] if nxt < len(nonzero) else len(words)
        zeros = at - word  # records of size 0 before the next non-zero word
        if done + zeros >= count or at >= len(words):
            word += min(zeros, count - done)
            done += min(zeros, count - done)
            if done < count:  # ran out of words: truncated
                return len(tail) + 4 * (count - done)
            break
        length = int(words[at])
        if length % unit:
            return None
        word, done = at + 1 + length // 4, done + zeros + 1
    return 4 * word


def read_params(params: dict[str, Any], space: str) -> tuple[int, int, int, int | None, int]:
    """``(dim, M, ef_construction, ef, count)`` from the manifest's index parameters.

    Raises:
        CollectionError: A parameter is missing or malformed, or the space is not ``space``.
    """
    try:
        dim, m, ef_c = (int(params[key]) for key in ("dim", "M", "ef_construction"))
        ef = None if params["ef"] is None else int(params["ef"])
        count = int(params["count"])
    except (KeyError, TypeError, ValueError) as error:
        raise CollectionError(f"index parameters in the manifest are incomplete: {error}"
                              ) from None
    if params.get("space", space) != space:
        raise CollectionError(f"index space {params.get('space')!r} is not supported "
                              f"(expected {space!r})")
    return dim, m, ef_c, ef, count


def load_hnsw(path: Path, *, space: str, dim: int, count: int) -> Any:
    """Open an index file with hnswlib (after :func:`read_layout` has checked it).

    Raises:
        CollectionError: hnswlib cannot read the file.
    """
    import hnswlib

    index = hnswlib.Index(space=space, dim=dim)
    try:
        index.load_index(str(path), max_elements=max(count, 1))
    except (RuntimeError, MemoryError) as error:
        raise CollectionError(f"index file {path} cannot be read: {error}") from None
    return index


def read_layout(path: Path, *, dim: int, m: int, count: int,
                field: str = "index") -> tuple[np.ndarray, np.ndarray]:
    """Check an hnswlib 0.8 file against the manifest; return its labels and deleted flags.

    Returns:
        ``(labels, dead)``: int64 ids and bool deleted flags, in the file's element order.

    Raises:
        CollectionError: The file is truncated or does not match ``dim``, ``m`` or ``count``.
    """
    size = path.stat().st_size
    if size < HEADER_BYTES:
        raise CollectionError(f"index file {path} is truncated ({size} bytes)")
    header = np.fromfile(path, dtype=np.uint8, count=HEADER_BYTES)
    sizes = header[:48].view(np.uint64)  # offsetLevel0, max_elements, count, per_element,
    stored, per_element, label_offset = int(sizes[2]), int(sizes[3]), int(sizes[4])
    file_m = int(header[72:80].view(np.uint64)[0])  # label_offset, offsetData
    links0 = (2 * m) * 4 + 4  # level-0 neighbour list: count word + 2M uint32 ids
    if file_m != m or per_element != links0 + 4 * dim + 8:
        found = (per_element - 8 - (2 * file_m * 4 + 4)) // 4
        raise CollectionError(f"index file {path} does not match the manifest: it holds "
                              f"dim={found}, M={file_m}; the manifest's fields '{field}.dim', "
                              f"'{field}.M' say dim={dim}, M={m}")
    if stored != count:
        raise CollectionError(f"index file {path} holds {stored} items, the manifest's field "
                              f"'{field}.count' says {count}")
    minimum = HEADER_BYTES + stored * (per_element + 4)
    if size < minimum:
        raise CollectionError(f"index file {path} is truncated ({size} of at least {minimum} "
                              "bytes)")
    labels = np.empty(stored, dtype=np.int64)
    dead = np.empty(stored, dtype=bool)
    # Read a block of elements at a time rather than memory-mapping the level-0 block: a map
    # would fault in every page of it (each element's label sits in its own page), doubling the
    # resident memory of a build or an open while hnswlib holds the same data.
    rows = max(1, _READ_BYTES // per_element)
    with path.open("rb") as handle:
        handle.seek(HEADER_BYTES)
        for start in range(0, stored, rows):
            count_here = min(rows, stored - start)
            block = np.frombuffer(handle.read(count_here * per_element), dtype=np.uint8)
            block = block.reshape(count_here, per_element)
            # Byte 2 of each element's level-0 header carries hnswlib's DELETE_MARK (0x01).
            dead[start:start + count_here] = (block[:, 2] & 1).astype(bool)
            labels[start:start + count_here] = np.ascontiguousarray(
                block[:, label_offset:label_offset + 8]).view(np.int64)[:, 0]
    return labels, dead


def hnswlib_version() -> str:
    """The installed hnswlib version, recorded in the manifest ("unknown" if not found)."""
    try:
        return importlib.metadata.version("hnswlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
