"""The on-disk collection format: manifest, atomic writes, validation (see ``docs/format.md``).

A collection is a folder. ``manifest.json`` is the single commit point: it names the generation
files (``items.<g>.parquet``, ``embeddings.<g>.npy``...) that make up the current state, with
their sizes. An update writes a complete new generation beside the old one and then replaces the
manifest atomically, so a crash at any moment leaves either the old or the new state, never a mix.
Nothing here unpickles: arrays load with ``allow_pickle=False``, tables are Parquet.
"""

from __future__ import annotations

import contextlib
import fnmatch
import json
import os
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    import pandas as pd

FORMAT_NAME = "mclip-explorer-collection"
# 2: float16 embeddings by default, memory-mapped on open; a map may be fitted on a sample
# with the other images placed (stretch > 0 on the first map). Version 1 folders still open.
FORMAT_VERSION = 2
MANIFEST = "manifest.json"
LOCK = ".lock"
CACHE_DIR = "cache"
MEDIA_DIR = "media"
# Test hook: the build kills itself (SIGKILL) when it reaches the named checkpoint.
KILL_ENV = "MCLIP_EXPLORER_KILL_AT"

# Generation file role -> file suffix. Roles missing from a manifest are simply absent.
ROLES = {
    "items": ".parquet",
    "embeddings": ".npy",
    "coords": ".npy",
    "stretch": ".npy",
    "index_image": ".hnsw",
    "index_text": ".hnsw",
}
# Columns every items table has, in this order; user metadata columns follow.
COLUMNS = ("id", "kind", "path", "text", "lang", "title", "bytes", "width", "height", "sha256",
           "error", "deleted")
REQUIRED_ROLES = ("items", "embeddings", "coords", "stretch")
_REQUIRED_KEYS = ("format", "format_version", "model", "dim", "precision", "counts", "files",
                  "generation", "index", "projection")


def checkpoint(name: str) -> None:
    """Die here with SIGKILL if ``$MCLIP_EXPLORER_KILL_AT`` (a glob) matches this point.

    Only the resume tests set it; the points are named where they are called.
    """
    pattern = os.environ.get(KILL_ENV)
    if pattern and fnmatch.fnmatchcase(name, pattern):
        os.kill(os.getpid(), signal.SIGKILL)


def now() -> str:
    """UTC timestamp in ISO 8601, seconds precision."""
    return datetime.now(timezone.utc).replace(microsecond=0).isoformat()


# ------------------------------------------------------------------------------- atomic writes
def atomic_write(path: Path, write: Callable[[Path], object]) -> None:
    """Run ``write(tmp)`` on a temp file beside ``path``, fsync it, then rename it to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        write(tmp)
        with tmp.open("rb+") as handle:
            os.fsync(handle.fileno())
        checkpoint(f"write:{path.name}")
        tmp.replace(path)  # os.replace: atomic on POSIX and Windows
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def save_npy(path: Path, array: np.ndarray) -> None:
    """Atomically write one array as ``.npy`` (never an object array)."""
    if array.dtype == object:
        raise TypeError(f"refusing to write an object array to {path.name}")

    def write(tmp: Path) -> None:
        with tmp.open("wb") as handle:
            np.save(handle, array, allow_pickle=False)

    atomic_write(path, write)


def save_json(path: Path, data: dict[str, Any]) -> None:
    """Atomically write pretty-printed JSON."""
    text = json.dumps(data, indent=2, sort_keys=False, ensure_ascii=False) + "\n"
    atomic_write(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def save_parquet(path: Path, frame: Any) -> None:
    """Atomically write a DataFrame as Parquet (no index column)."""
    atomic_write(path, lambda tmp: frame.to_parquet(tmp, index=False))


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
        return np.load(path, allow_pickle=False, mmap_mode="r" if mmap else None)
    except FileNotFoundError:
        raise CollectionError(f"collection file missing: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise CollectionError(f"damaged {what} file {path}: {exc}") from None


def read_manifest(folder: Path) -> dict[str, Any]:
    """Read and validate ``manifest.json`` and the presence and size of every file it names.

    Raises:
        CollectionError: The folder is not a collection, the manifest is unreadable or edited
            into an inconsistent state, the format is newer than this version, or a file is
            missing or truncated.
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
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT_NAME:
        raise CollectionError(f"{path} is not an mclip-explorer collection manifest")
    missing = [key for key in _REQUIRED_KEYS if key not in manifest]
    if missing:
        raise CollectionError(f"damaged {path}: missing key(s) {', '.join(missing)}")
    version = manifest["format_version"]
    if not isinstance(version, int) or version < 1:
        raise CollectionError(f"damaged {path}: format_version must be a positive integer")
    if version > FORMAT_VERSION:
        raise CollectionError(
            f"{folder} uses collection format {version}; this mclip-explorer reads up to "
            f"{FORMAT_VERSION}. Upgrade mclip-explorer to open it."
        )
    _check_model_entry(manifest, path)
    _check_files(manifest, folder, path)
    return manifest


def _check_model_entry(manifest: dict[str, Any], path: Path) -> None:
    model = manifest["model"]
    if not isinstance(model, dict) or not all(
        isinstance(model.get(key), str) and model.get(key) for key in ("name", "fingerprint")
    ):
        raise CollectionError(f"damaged {path}: 'model' must hold a name and a fingerprint")
    dim = manifest["dim"]
    if not isinstance(dim, int) or dim < 1:
        raise CollectionError(f"damaged {path}: 'dim' must be a positive integer, got {dim!r}")
    if manifest["precision"] not in ("float16", "float32"):
        raise CollectionError(f"damaged {path}: precision must be float16 or float32")
    counts = manifest["counts"]
    if not isinstance(counts, dict) or not isinstance(counts.get("items"), int):
        raise CollectionError(f"damaged {path}: 'counts' must hold an integer 'items'")


def _check_files(manifest: dict[str, Any], folder: Path, path: Path) -> None:
    files = manifest["files"]
    if not isinstance(files, dict):
        raise CollectionError(f"damaged {path}: 'files' must be an object")
    for role in REQUIRED_ROLES:
        if not files.get(role):
            raise CollectionError(f"damaged {path}: no {role} file listed")
    for role, entry in files.items():
        if entry is None:
            continue
        if role not in ROLES or not isinstance(entry, dict):
            raise CollectionError(f"damaged {path}: bad files entry {role!r}")
        name, size = entry.get("name"), entry.get("bytes")
        # A name with a separator could point outside the collection folder.
        if not isinstance(name, str) or Path(name).name != name or name.startswith("."):
            raise CollectionError(f"damaged {path}: bad file name for {role}: {name!r}")
        target = folder / name
        if not target.is_file():
            raise CollectionError(f"collection file missing: {target} ({role})")
        actual = target.stat().st_size
        if actual != size:
            raise CollectionError(
                f"damaged collection file {target}: {actual} bytes, the manifest says {size} "
                "(truncated or replaced)"
            )


def file_entry(folder: Path, name: str) -> dict[str, Any]:
    """The manifest record of one written file."""
    return {"name": name, "bytes": (folder / name).stat().st_size}


def generation_name(role: str, generation: int) -> str:
    """File name of ``role`` in generation ``generation``, e.g. ``items.3.parquet``."""
    stem = role.replace("_", "-")
    return f"{stem}.{generation}{ROLES[role]}"


def commit(folder: Path, manifest: dict[str, Any]) -> None:
    """Make ``manifest`` current, then delete files of older generations it no longer names."""
    manifest["updated"] = now()
    checkpoint("commit")
    save_json(folder / MANIFEST, manifest)
    checkpoint("committed")
    keep = {entry["name"] for entry in manifest["files"].values() if entry}
    for role, suffix in ROLES.items():
        stem = role.replace("_", "-")
        for old in folder.glob(f"{stem}.*{suffix}"):
            if old.name not in keep:
                # Windows refuses to delete a file that is still memory-mapped (the embeddings
                # of an open collection): it goes at a later commit.
                with contextlib.suppress(PermissionError):
                    old.unlink(missing_ok=True)


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


def write_generation(folder: Path, manifest: dict[str, Any], roles: set[str], *,
                     items: pd.DataFrame, embeddings: np.ndarray, coords: np.ndarray,
                     stretch: np.ndarray, indexes: dict[str, Any]) -> np.ndarray:
    """Write ``roles`` as generation files, then commit ``manifest`` (updated in place).

    Returns:
        ``embeddings`` in the stored precision, memory-mapped from the new file when it was
        written, so memory matches what a reopen would load.
    """
    with write_lock(folder):
        _check_current(folder, int(manifest["generation"]))
        remove_stale_temps(folder)
        return _write_generation(folder, manifest, roles, items=items, embeddings=embeddings,
                                 coords=coords, stretch=stretch, indexes=indexes)


def _check_current(folder: Path, generation: int) -> None:
    """Refuse to commit over a state this process has not seen (a lost update)."""
    try:
        on_disk = json.loads((folder / MANIFEST).read_text(encoding="utf-8"))["generation"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return  # no (readable) collection yet: a build creates or replaces it
    if on_disk != generation:
        raise CollectionError(
            f"{folder} was changed by another process since it was opened (generation "
            f"{on_disk}, this copy has {generation}); open it again and repeat the change"
        )


def _write_generation(folder: Path, manifest: dict[str, Any], roles: set[str], *,
                      items: pd.DataFrame, embeddings: np.ndarray, coords: np.ndarray,
                      stretch: np.ndarray, indexes: dict[str, Any]) -> np.ndarray:
    generation = int(manifest["generation"]) + 1
    dtype = np.float16 if manifest["precision"] == "float16" else np.float32
    stored = embeddings.astype(dtype, copy=False)
    writers: dict[str, Callable[[Path], None]] = {
        "items": lambda p: save_parquet(p, stored_items(items, folder)),
        "embeddings": lambda p: save_npy(p, stored),
        "coords": lambda p: save_npy(p, coords),
        "stretch": lambda p: save_npy(p, stretch),
    }
    files = dict(manifest["files"])
    for role in sorted(roles):
        kind = role.removeprefix("index_")
        if role.startswith("index_") and kind not in indexes:
            files[role] = None
            continue
        name = generation_name(role, generation)
        if role.startswith("index_"):
            indexes[kind].save(folder / name)
            manifest["index"][kind] = indexes[kind].params
        else:
            writers[role](folder / name)
        files[role] = file_entry(folder, name)
        checkpoint(f"wrote:{name}")
    deleted, failed = items["deleted"].to_numpy(bool), items["error"].notna().to_numpy()
    manifest.update(files=files, generation=generation, counts={
        "items": len(items),
        "images": int((items["kind"] == "image").sum()),
        "texts": int((items["kind"] == "text").sum()),
        "failed": int(failed.sum()),
        "deleted": int(deleted.sum()),
        "live": int((~deleted & ~failed).sum()),
    })
    commit(folder, manifest)
    if files.get("embeddings") and "embeddings" in roles:
        return load_npy(folder / files["embeddings"]["name"], what="embeddings", mmap=True)
    return stored


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
