"""Generation commits and file verification: how a collection changes, and how it is trusted.

A commit writes every changed role as a file of a new generation (each one verified: size and
xxh3-128 read back after fsync, see :func:`mclip_explorer._files.atomic_write`), then replaces
``manifest.json``, and only then deletes the files of older generations. Any write error aborts
the commit before the manifest moves: the new generation's files are removed and the previous
generation stays current, complete and searchable.

On open, :func:`verify_files` checks every file the manifest names against its recorded size and
checksum (streamed, so memory stays flat on a multi-GB index), generically over the manifest's
file list.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer import _files
from mclip_explorer._files import FileRecord
from mclip_explorer.collection import store
from mclip_explorer.collection._schema import CHECKSUM_KEY, REQUIRED_ROLES, ROLES
from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    import pandas as pd


def write_generation(folder: Path, manifest: dict[str, Any], roles: set[str], *,
                     items: pd.DataFrame, embeddings: np.ndarray | list[np.ndarray],
                     coords: np.ndarray, stretch: np.ndarray,
                     indexes: dict[str, Any]) -> np.ndarray:
    """Write ``roles`` as generation files, then commit ``manifest`` (updated in place).

    ``embeddings`` may be a list of row blocks (the stored rows, then appended ones): they are
    written as one file without being concatenated in memory.

    Returns:
        ``embeddings`` in the stored precision, memory-mapped from the new file when it was
        written, so memory matches what a reopen would load.

    Raises:
        WriteError: A file could not be written; nothing changed on disk and ``manifest`` is
            as it was.
        CollectionError: Another process changed the collection since it was opened.
    """
    with store.write_lock(folder):
        _check_current(folder, int(manifest["generation"]))
        store.remove_stale_temps(folder)
        draft = json.loads(json.dumps(manifest))  # the caller's copy moves only on success
        stored = _write_files(folder, draft, roles, items=items, embeddings=embeddings,
                              coords=coords, stretch=stretch, indexes=indexes)
        manifest.clear()
        manifest.update(draft)
        return stored


def verify_files(folder: Path, manifest: dict[str, Any]) -> dict[str, str]:
    """Check every file the manifest names: present, recorded size, recorded checksum.

    Returns:
        Role -> what is wrong, for damaged *index* files (they can be rebuilt from the
        embeddings; the caller decides).

    Raises:
        CollectionError: A damaged or missing file of a required role (items, embeddings,
            coords, stretch...), naming the file.
    """
    damaged: dict[str, str] = {}
    for role, entry in manifest["files"].items():
        if entry is None:
            continue
        problem = file_problem(folder / entry["name"], entry, f"files.{role}")
        if problem is None:
            continue
        if role.startswith("index_"):
            damaged[role] = problem
        elif problem == "missing":
            raise CollectionError(f"collection file missing: {folder / entry['name']} ({role})")
        else:
            raise CollectionError(f"damaged {role} file {folder / entry['name']}: {problem}")
    return damaged


def file_problem(path: Path, entry: dict[str, Any], field: str) -> str | None:
    """What is wrong with one file against its manifest entry ``field``, or None."""
    if not path.is_file():
        return "missing"
    size = path.stat().st_size
    if size != entry["bytes"]:
        return (f"{size} bytes, the manifest's field '{field}.bytes' says {entry['bytes']} "
                "(truncated or replaced)")
    expected = entry.get(CHECKSUM_KEY)
    if expected is not None:
        try:
            _, actual = _files.checksum(path)
        except OSError as exc:
            return f"cannot be read: {_files.describe(exc)}"
        if actual != expected:
            return (f"its {CHECKSUM_KEY} checksum is {actual}, the manifest's field "
                    f"'{field}.{CHECKSUM_KEY}' says {expected} (bit rot or an outside change)")
    return None


# ---------------------------------------------------------------------------------- internals
def _check_current(folder: Path, generation: int) -> None:
    """Refuse to commit over a state this process has not seen (a lost update)."""
    try:
        on_disk = json.loads((folder / store.MANIFEST).read_text(encoding="utf-8"))["generation"]
    except (FileNotFoundError, ValueError, KeyError, TypeError):
        return  # no (readable) collection yet: a build creates or replaces it
    if on_disk != generation:
        raise CollectionError(
            f"{folder} was changed by another process since it was opened (generation "
            f"{on_disk}, this copy has {generation}); open it again and repeat the change"
        )


def _write_files(folder: Path, manifest: dict[str, Any], roles: set[str], *,
                 items: pd.DataFrame, embeddings: np.ndarray | list[np.ndarray],
                 coords: np.ndarray, stretch: np.ndarray,
                 indexes: dict[str, Any]) -> np.ndarray:
    generation = int(manifest["generation"]) + 1
    dtype = np.float16 if manifest["precision"] == "float16" else np.float32
    parts = [p.astype(dtype, copy=False)
             for p in (embeddings if isinstance(embeddings, list) else [embeddings])]
    writers: dict[str, Callable[[Path], FileRecord]] = {
        "items": lambda p: store.save_parquet(p, store.stored_items(items, folder)),
        "embeddings": lambda p: store.save_npy(p, parts),
        "coords": lambda p: store.save_npy(p, coords),
        "stretch": lambda p: store.save_npy(p, stretch),
    }
    files = dict(manifest["files"])
    written: list[Path] = []
    try:
        for role in sorted(roles):
            kind = role.removeprefix("index_")
            if role.startswith("index_") and kind not in indexes:
                files[role] = None
                continue
            name = store.generation_name(role, generation)
            written.append(folder / name)
            if role.startswith("index_"):
                record = indexes[kind].save(folder / name)
                manifest["index"][kind] = indexes[kind].params
            else:
                record = writers[role](folder / name)
            files[role] = record.entry()
            store.checkpoint(f"wrote:{name}")
        _check_carried(folder, files, roles)
        deleted, failed = items["deleted"].to_numpy(bool), items["error"].notna().to_numpy()
        manifest.update(files=files, generation=generation, counts={
            "items": len(items),
            "images": int((items["kind"] == "image").sum()),
            "texts": int((items["kind"] == "text").sum()),
            "failed": int(failed.sum()),
            "deleted": int(deleted.sum()),
            "live": int((~deleted & ~failed).sum()),
        }, updated=store.now())
        store.checkpoint("commit")
        store.save_json(folder / store.MANIFEST, manifest)
    except BaseException:
        for path in written:  # never named by a manifest: the old generation is still current
            path.unlink(missing_ok=True)
        raise
    store.checkpoint("committed")
    _remove_old(folder, files)
    if files.get("embeddings") and "embeddings" in roles:
        return store.load_npy(folder / files["embeddings"]["name"], what="embeddings", mmap=True)
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _check_carried(folder: Path, files: dict[str, Any], roles: set[str]) -> None:
    """Files kept from older generations must still be there, whole, before they are named."""
    for role, entry in files.items():
        if entry is None or role in roles:
            continue
        path = folder / entry["name"]
        if not path.is_file() or path.stat().st_size != entry["bytes"]:
            raise CollectionError(f"collection file {path} ({role}) is missing or changed; "
                                  "nothing was committed")
    for role in REQUIRED_ROLES:
        if not files.get(role):
            raise CollectionError(f"internal error: a commit without a {role} file")


def _remove_old(folder: Path, files: dict[str, Any]) -> None:
    """Delete generation files the committed manifest no longer names."""
    keep = {entry["name"] for entry in files.values() if entry}
    for role, suffix in ROLES.items():
        stem = role.replace("_", "-")
        for old in folder.glob(f"{stem}.*{suffix}"):
            if old.name not in keep:
                # Windows refuses to delete a file that is still memory-mapped (the embeddings
                # of an open collection): it goes at a later commit.
                with contextlib.suppress(PermissionError):
                    old.unlink(missing_ok=True)
