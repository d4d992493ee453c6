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
    with path.open("rb") as handle:
        handle.seek(HEADER_BYTES + count * per_element)
        tail = handle.read()
    pos = 0
    for _ in range(count):
        if pos + 4 > len(tail):
            break
        length = int.from_bytes(tail[pos:pos + 4], "little")
        if length % links_unit:
            raise CollectionError(f"index file {path} is damaged (a link list of {length} "
                                  "bytes)")
        pos += 4 + length
    else:
        if pos == len(tail):
            return
    raise CollectionError(f"index file {path} is incomplete ({size} bytes; its structure "
                          f"needs {HEADER_BYTES + count * per_element + pos})")


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
    level0 = np.memmap(path, dtype=np.uint8, mode="r", offset=HEADER_BYTES,
                       shape=(stored, per_element))
    # Byte 2 of each element's level-0 header carries hnswlib's DELETE_MARK (0x01).
    dead = (np.asarray(level0[:, 2]) & 1).astype(bool)
    labels = np.ascontiguousarray(level0[:, label_offset:label_offset + 8]).view(np.int64)[:, 0]
    del level0
    return labels.copy(), dead


def hnswlib_version() -> str:
    """The installed hnswlib version, recorded in the manifest ("unknown" if not found)."""
    try:
        return importlib.metadata.version("hnswlib")
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
