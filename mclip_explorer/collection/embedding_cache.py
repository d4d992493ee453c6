"""The content-keyed embedding cache of a collection: shards of vectors and decode failures.

Every embedding is cached under the SHA-256 of the item's content, in a folder named by the
model fingerprint and :data:`PREPROCESS_VERSION`; each shard is written atomically, and a shard
damaged from outside is dropped and re-encoded.

Vectors stay on disk: memory holds only a sorted key index (about 72 bytes per cached item), and
a lookup reads one shard at a time into the caller's array, which may be memory-mapped, so a
10M-item build never holds its vectors in RAM (see docs/scaling-memory.md).
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
import zipfile
import zlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer._files import atomic_write
from mclip_explorer.collection import store
from mclip_explorer.errors import DamageWarning

# Bump when the decode path (images.load_image) changes in a way that alters pixels.
PREPROCESS_VERSION = 1
KEY_DTYPE = "S64"  # SHA-256 hex digests (text keys too)
_ROW_BITS = 32  # a location is shard number << 32 | row
_READ_CHUNK = 1 << 20


class KeyIndex:
    """Sorted runs of ``(key, location)``: vectorised lookups, amortised O(n log n) inserts.

    A new run is merged with the last one while that one is no larger (a binary counter), so
    there are at most log2(n) runs and every key is re-sorted at most log2(n) times.
    """

    def __init__(self) -> None:
        self._runs: list[tuple[np.ndarray, np.ndarray]] = []

    def __len__(self) -> int:
        return sum(len(keys) for keys, _ in self._runs)

    def add(self, keys: np.ndarray, locations: np.ndarray) -> None:
        """Insert keys (``S64``) with their int64 locations."""
        if not len(keys):
            return
        run_keys, run_locations = keys, locations
        while self._runs and len(self._runs[-1][0]) <= len(run_keys):
            last_keys, last_locations = self._runs.pop()
            run_keys = np.concatenate([last_keys, run_keys])
            run_locations = np.concatenate([last_locations, run_locations])
        order = np.argsort(run_keys, kind="stable")
        self._runs.append((run_keys[order], run_locations[order]))

    def find(self, keys: np.ndarray) -> np.ndarray:
        """The location of each key, -1 where it is not indexed (newest run wins)."""
        found = np.full(len(keys), -1, dtype=np.int64)
        for run_keys, run_locations in reversed(self._runs):
            at = np.minimum(np.searchsorted(run_keys, keys), len(run_keys) - 1)
            hit = (found < 0) & (run_keys[at] == keys)
            found[hit] = run_locations[at[hit]]
        return found

    def keys(self) -> np.ndarray:
        """Every indexed key (``S64``), in no particular order."""
        return np.concatenate([k for k, _ in self._runs]) if self._runs else \
            np.empty(0, KEY_DTYPE)

    def drop(self, shard: int) -> None:
        """Forget every key stored in ``shard``."""
        self._runs = [(k[keep], loc[keep]) for k, loc in self._runs
                      if (keep := (loc >> _ROW_BITS) != shard).any()]


def as_keys(keys: Sequence[str | None]) -> np.ndarray:
    """Cache keys as a fixed-width byte array (``None`` becomes ``b""``, never a cached key)."""
    return np.array([k or "" for k in keys], dtype=KEY_DTYPE)


class EmbeddingCache:
    """Embeddings (and decode failures) by content key for one model fingerprint.

    Args:
        root: The collection's ``cache/`` folder.
        fingerprint: The encoder's fingerprint.
        dim: Embedding size (a shard of another size is rejected as damaged).
    """

    def __init__(self, root: Path, fingerprint: str, dim: int) -> None:
        self.folder = root / f"{fingerprint}-p{PREPROCESS_VERSION}"
        self.dim = dim
        self.errors: dict[str, str] = {}  # failures are few: reasons stay in memory
        self._shards: list[Path] = []
        self._index = KeyIndex()
        self._load()

    def _load(self) -> None:
        store.remove_stale_temps(self.folder, older_than=3600)
        keys, locations = [], []
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                shard_keys, errors = self._read_shard(shard)
            except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile,
                    zlib.error) as exc:
                # Shards are written atomically and verified, so this is outside damage.
                self._drop(shard, exc)
                continue
            number = len(self._shards)
            self._shards.append(shard)
            good = errors == ""
            keys.append(shard_keys[good])
            locations.append((number << _ROW_BITS) | np.flatnonzero(good).astype(np.int64))
            for key, error in zip(shard_keys[~good].astype(str), errors[~good], strict=True):
                self.errors[key] = error
        if keys:
            self._index.add(np.concatenate(keys), np.concatenate(locations))

    def _read_shard(self, shard: Path) -> tuple[np.ndarray, np.ndarray]:
        """Keys and failure reasons of a shard, after checking its vectors without keeping them.

        The vectors member is streamed through its CRC check and its header is read for the
        shape: damage is found now, while it can still be re-encoded, in constant memory.
        """
        with zipfile.ZipFile(shard) as archive:
            with archive.open("keys.npy") as member:
                keys = np.lib.format.read_array(member, allow_pickle=False).astype(KEY_DTYPE)
            with archive.open("errors.npy") as member:
                errors = np.lib.format.read_array(member, allow_pickle=False).astype(str)
            with archive.open("vectors.npy") as member:
                header = (np.lib.format.read_array_header_1_0
                          if np.lib.format.read_magic(member) == (1, 0)
                          else np.lib.format.read_array_header_2_0)
                shape, _, dtype = header(member)
                while member.read(_READ_CHUNK):  # zipfile raises on a bad CRC at the end
                    pass
        if shape != (len(keys), self.dim) or len(errors) != len(keys) or dtype.kind != "f":
            raise ValueError(f"arrays of shapes {shape}, {errors.shape} for {len(keys)} keys")
        return keys, errors

    @staticmethod
    def _drop(shard: Path, exc: BaseException,
              then: str = "are treated as missing and re-encoded") -> None:
        """Report a damaged shard and forget it: its items count as not encoded."""
        warnings.warn(DamageWarning(
            f"damaged embedding cache shard {shard} ({type(exc).__name__}: {exc}); its items "
            f"{then}"), stacklevel=4)
        with contextlib.suppress(OSError):  # a read-only cache just keeps the damaged file
            shard.unlink(missing_ok=True)

    def __len__(self) -> int:
        return len(self._index) + len(self.errors)

    def missing(self, keys: Sequence[str | None]) -> np.ndarray:
        """A boolean mask: which keys are neither cached vectors nor cached failures."""
        absent: np.ndarray = self._index.find(as_keys(keys)) < 0
        if self.errors:
            absent &= np.array([k not in self.errors for k in keys], dtype=bool)
        return absent

    def keys(self) -> set[str]:
        """Every cached key, vectors and failures."""
        return set(self._index.keys().astype(str)) | set(self.errors)

    def add_shard(self, keys: list[str], vectors: np.ndarray, errors: list[str]) -> None:
        """Persist one shard atomically and make it visible to lookups."""
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
        path = self.folder / f"shard-{digest}.npz"
        stored_keys = np.asarray(keys, dtype=KEY_DTYPE)
        stored_errors = np.asarray(errors, dtype=str)

        def write(handle: Any) -> None:
            np.savez(handle, keys=stored_keys, vectors=vectors.astype(np.float32),
                     errors=stored_errors)

        atomic_write(path, write)
        number = len(self._shards)
        self._shards.append(path)
        good = stored_errors == ""
        self._index.add(stored_keys[good],
                        (number << _ROW_BITS) | np.flatnonzero(good).astype(np.int64))
        for key, error in zip(keys, errors, strict=True):
            if error:
                self.errors[key] = error

    def lookup(self, keys: Sequence[str | None]) -> tuple[np.ndarray, list[str | None]]:
        """``(n, dim)`` float32 (NaN rows for failures) and the failure reason of each key."""
        out = np.empty((len(keys), self.dim), dtype=np.float32)
        return out, self.lookup_into(keys, out)

    def lookup_into(self, keys: Sequence[str | None], out: np.ndarray) -> list[str | None]:
        """Fill ``out`` (row per key, any float dtype, may be a memory map) shard by shard.

        Rows of keys without a vector become NaN. Returns the failure reason of each key:
        None when it has a vector, the cached decode failure, ``"not encoded"``, or
        ``"unreadable"`` for a missing key.
        """
        found = self._index.find(as_keys(keys))
        shard_of, row_of = found >> _ROW_BITS, found & ((1 << _ROW_BITS) - 1)
        order = np.argsort(shard_of, kind="stable")
        bounds = np.flatnonzero(np.diff(shard_of[order])) + 1
        for group in np.split(order, bounds):
            if not len(group) or shard_of[group[0]] < 0:
                out[group] = np.nan
                continue
            number = int(shard_of[group[0]])
            try:
                with np.load(self._shards[number], allow_pickle=False) as data:
                    vectors = data["vectors"]
            except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile,
                    zlib.error) as exc:  # damaged after it was checked on load
                self._drop(self._shards[number], exc, "are marked 'not encoded' in this build; "
                           "building again re-encodes them")
                self._index.drop(number)
                out[group] = np.nan
                found[group] = -1
                continue
            out[group] = vectors[row_of[group]]
        return [None if at >= 0 else
                (self.errors.get(key, "not encoded") if key else "unreadable")
                for key, at in zip(keys, found.tolist(), strict=True)]
