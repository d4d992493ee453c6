"""The on-disk collection format: names, writing, reading the manifest (see ``docs/format.md``).

A collection is a folder. ``manifest.json`` is the single commit point: it names the generation
files (``items.<g>.parquet``, ``embeddings.<g>.npy``...) that make up the current state, with
their sizes and checksums. An update writes a complete, verified new generation beside the old
one and then replaces the manifest atomically (:mod:`._commit`), so a crash or a failed write at
any moment leaves either the old or the new state, never a mix. The manifest's schema lives in
:mod:`._schema`; every file goes through :func:`mclip_explorer._files.atomic_write`.
Nothing here unpickles: arrays load with ``allow_pickle=False``, tables are Parquet.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer import _files
from mclip_explorer._files import KILL_ENV as KILL_ENV
from mclip_explorer._files import FileRecord
from mclip_explorer._files import checkpoint as checkpoint
from mclip_explorer.collection._schema import FORMAT_NAME as FORMAT_NAME
from mclip_explorer.collection._schema import FORMAT_VERSION as FORMAT_VERSION
from mclip_explorer.collection._schema import REQUIRED_ROLES as REQUIRED_ROLES
from mclip_explorer.collection._schema import ROLES as ROLES
from mclip_explorer.collection._schema import validate
from mclip_explorer.collection.columns import COLUMNS as COLUMNS
from mclip_explorer.errors import CollectionError, WriteError

if TYPE_CHECKING:
    import pandas as pd

MANIFEST = "manifest.json"
LOCK = ".lock"
CACHE_DIR = "cache"
MEDIA_DIR = "media"



def now() -> str:
    """UTC timestamp in ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------------------------ writing
def save_bytes(path: Path, data: bytes) -> FileRecord:
    """Atomically write bytes (verified; see :func:`mclip_explorer._files.atomic_write`)."""
    return _files.atomic_write(path, data)


def save_npy(path: Path, array: np.ndarray | Sequence[np.ndarray],
             chunk: int = 65_536) -> FileRecord:
    """Atomically write an array, or the row-wise concatenation of arrays, as ``.npy``, verified.

    The bytes are those of ``np.save(np.concatenate(parts))``, written ``chunk`` rows at a time,
    so memory-mapped parts are streamed instead of copied into memory. Object arrays are refused.
    """
    parts = [array] if isinstance(array, np.ndarray) else list(array)
    dtype = parts[0].dtype
    if dtype.hasobject or any(p.dtype != dtype or p.shape[1:] != parts[0].shape[1:]
                              for p in parts):
        raise TypeError(f"refusing to write an object array or mixed arrays to {path.name}")
    header = {"descr": np.lib.format.dtype_to_descr(dtype), "fortran_order": False,
              "shape": (sum(len(p) for p in parts), *parts[0].shape[1:])}

    def write(handle: Any) -> None:
        np.lib.format.write_array_header_1_0(handle, header)
        for part in parts:
            for start in range(0, len(part), chunk):
                handle.write(np.ascontiguousarray(part[start:start + chunk]))

    return _files.atomic_write(path, write)


def scratch_rows(folder: Path, rows: int, dim: int, dtype: Any) -> np.ndarray:
    """A zero-filled ``(rows, dim)`` array backed by an unnamed file in ``folder``.

    Large intermediate arrays (the vectors a build looks up) live there instead of in memory:
    the OS writes their pages out under pressure, and the file has no name, so it is gone when
    the array is (a killed build leaves nothing behind).
    """
    if rows == 0 or dim == 0:
        return np.zeros((rows, dim), dtype=dtype)
    size = rows * dim * np.dtype(dtype).itemsize
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder) as handle:
            # Reserve the blocks now: a write into a sparse map on a full disk is a SIGBUS
            # that kills the process, where this is an error that names the cause.
            if hasattr(os, "posix_fallocate"):
                os.posix_fallocate(handle.fileno(), 0, size)
            mapped = np.memmap(handle, dtype=dtype, mode="w+", shape=(rows, dim))
    except OSError as exc:
        raise WriteError(f"no room for the build's scratch copy of the vectors ({size:,} bytes) "
                         f"in {folder}: {_files.describe(exc)}") from exc
    return mapped.view(np.ndarray)


def save_json(path: Path, data: dict[str, Any]) -> FileRecord:
    """Atomically write pretty-printed JSON, verified."""
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    return _files.atomic_write(path, text.encode("utf-8"))


def save_parquet(path: Path, frame: Any) -> FileRecord:
    """Atomically write a DataFrame as Parquet (no index column), verified."""
    return _files.atomic_write(path, lambda handle: frame.to_parquet(handle, index=False))


def remove_stale_temps(folder: Path, *, older_than: float = 0.0) -> None:
    """Delete temporary files a killed writer left behind (``.<name>.*.tmp``).

    Args:
        folder: Where to look (not recursive).
        older_than: Only files untouched for this many seconds: a live writer in another
            process may be filling a newer one.
    """
    if folder.is_dir():
        limit = time.time() - older_than
        for tmp in folder.glob(".*.tmp"):
            with contextlib.suppress(FileNotFoundError):
                if tmp.stat().st_mtime <= limit:
                    tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def write_lock(folder: Path) -> Iterator[None]:
    """Hold the collection's writer lock: one process commits at a time (POSIX ``flock``).

    The kernel drops the lock when its process dies, so a killed writer never leaves it held.
    """
    try:
        import fcntl
    except ImportError:  # Windows: no advisory lock; the generation check still applies
        yield
        return
    with (folder / LOCK).open("a") as handle:
        try:
            fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise CollectionError(f"{folder} is being written by another process; try again "
                                  "when it has finished") from None
        try:
            yield
        finally:
            fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ------------------------------------------------------------------------------------ reading
def load_npy(path: Path, *, what: str, mmap: bool = False) -> np.ndarray:
    """Load an array written by :func:`save_npy`; a damaged file raises :class:`CollectionError`.

    With ``mmap`` the array is a read-only memory map: pages are read on use and the OS may drop
    them again, so a store larger than RAM still opens.
    """
    try:
        array: np.ndarray = np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
        return array
    except FileNotFoundError:
        raise CollectionError(f"collection file missing: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CollectionError(f"damaged {what} file {path}: {exc}") from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read ``manifest.json`` and validate it against the schema (:mod:`._schema`).

    The files it names are checked (size, checksum) by :func:`._commit.verify_files`.

    Raises:
        CollectionError: The folder is not a collection, the manifest is unreadable, names a
            field that is missing or wrong (the message names it), or the format is newer than
            this version reads.
    """
    if not folder.exists():
        raise CollectionError(f"collection folder not found: {folder}")
    if not folder.is_dir():
        raise CollectionError(f"not a folder: {folder}")
    path = folder / MANIFEST
    if not path.exists():
        raise CollectionError(f"not a collection (no {MANIFEST}): {folder}")
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as exc:
        raise CollectionError(f"damaged {path}: not valid JSON ({exc})") from None
    except OSError as exc:
        raise CollectionError(f"cannot read {path}: {_files.describe(exc)}") from None
    return validate(manifest, path)


def generation_name(role: str, generation: int) -> str:
    """File name of ``role`` in generation ``generation``, e.g. ``items.3.parquet``."""
    stem = role.replace("_", "-")
    return f"{stem}.{generation}{ROLES[role]}"


def prepare_out(out: str | Path, *, create: bool = True) -> Path:
    """Check (and create) a build's output folder; refuse a non-empty folder of other files."""
    folder = Path(out).expanduser().resolve()
    if folder.exists() and not folder.is_dir():
        raise CollectionError(f"out is a file, not a folder: {folder}")
    if folder.is_dir() and any(folder.iterdir()):
        ours = (folder / MANIFEST).exists() or (folder / CACHE_DIR).is_dir()
        if not ours:
            raise CollectionError(f"out folder is not empty and not a collection: {folder}")
    if create:
        folder.mkdir(parents=True, exist_ok=True)
    return folder


def stored_items(items: pd.DataFrame, folder: Path) -> pd.DataFrame:
    """Paths inside the collection folder are stored relative to it, so a copy still opens."""
    stored = items.copy()
    prefix = str(folder) + "/"
    stored["path"] = [p[len(prefix):] if isinstance(p, str) and p.startswith(prefix) else p
                      for p in stored["path"]]
    return stored


def absolute_paths(paths: pd.Series, folder: Path) -> list[str | None]:
    """Stored paths back to absolute ones (relative ones are inside the collection folder)."""
    return [None if not isinstance(p, str) else p if Path(p).is_absolute() else str(folder / p)
            for p in paths]


def new_manifest(folder: Path, model: str, fingerprint: str, dim: int, precision: str,
                 preprocess_version: int) -> dict[str, Any]:
    """A manifest with no files yet, one generation past any collection already in ``folder``."""
    generation = 0
    if (folder / MANIFEST).exists():
        try:
            generation = int(read_manifest(folder)["generation"])
        except (CollectionError, ValueError, TypeError):
            generation = 1  # a damaged old manifest is replaced, not trusted
    return {
        "format": FORMAT_NAME, "format_version": FORMAT_VERSION,
        "created": now(), "updated": now(),
        "model": {"name": model, "fingerprint": fingerprint,
                  "preprocess_version": preprocess_version},
        "dim": int(dim), "precision": precision, "generation": generation,
        "counts": {}, "index": {}, "projection": {}, "files": {},
        "paths": "absolute, or relative to the collection folder for files inside it",
        "versions": library_versions(),
    }


def library_versions() -> dict[str, str]:
    """Versions of the libraries whose behaviour is baked into a collection."""
    from importlib import metadata

    versions = {"python": sys.version.split()[0]}
    for package in ("mclip-explorer", "numpy", "pandas", "pyarrow", "hnswlib", "umap-learn",
                    "torch", "transformers", "sentence-transformers", "open_clip_torch"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            continue
    return versions
