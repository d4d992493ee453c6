"""The content-keyed embedding cache of a collection: shards of vectors and decode failures.

Every embedding is cached under the SHA-256 of the item's content, in a folder named by the
model fingerprint and :data:`PREPROCESS_VERSION`; each shard is written atomically, and a shard
damaged from outside is dropped and re-encoded.
"""

from __future__ import annotations

import contextlib
import hashlib
import warnings
import zipfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer._files import atomic_write
from mclip_explorer.collection import store
from mclip_explorer.errors import DamageWarning

# Bump when the decode path (images.load_image) changes in a way that alters pixels.
PREPROCESS_VERSION = 1


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
        self.vectors: dict[str, np.ndarray] = {}
        self.errors: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        store.remove_stale_temps(self.folder, older_than=3600)
        for shard in sorted(self.folder.glob("shard-*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as data:
                    keys = data["keys"].astype(str)
                    vectors = data["vectors"].astype(np.float32)
                    errors = data["errors"].astype(str)
                if vectors.shape != (len(keys), self.dim) or len(errors) != len(keys):
                    raise ValueError(f"arrays of shapes {vectors.shape}, {errors.shape} for "
                                     f"{len(keys)} keys")
            except (ValueError, OSError, KeyError, EOFError, zipfile.BadZipFile) as exc:
                # Shards are written atomically and verified, so this is outside damage.
                self._drop(shard, exc)
                continue
            for key, vector, error in zip(keys, vectors, errors, strict=True):
                if error:
                    self.errors[key] = error
                else:
                    self.vectors[key] = vector

    @staticmethod
    def _drop(shard: Path, exc: BaseException) -> None:
        """Report a damaged shard and forget it: its items count as not encoded."""
        warnings.warn(DamageWarning(
            f"damaged embedding cache shard {shard} ({type(exc).__name__}: {exc}); its items "
            "are treated as missing and re-encoded"), stacklevel=4)
        with contextlib.suppress(OSError):  # a read-only cache just keeps the damaged file
            shard.unlink(missing_ok=True)

    def __contains__(self, key: str) -> bool:
        return key in self.vectors or key in self.errors

    def add_shard(self, keys: list[str], vectors: np.ndarray, errors: list[str]) -> None:
        """Persist one shard atomically and make it visible to lookups."""
        digest = hashlib.sha256("".join(keys).encode()).hexdigest()[:20]
        path = self.folder / f"shard-{digest}.npz"

        def write(handle: Any) -> None:
            np.savez(handle, keys=np.asarray(keys, dtype="S64"),
                     vectors=vectors.astype(np.float32), errors=np.asarray(errors, dtype=str))

        atomic_write(path, write)
        for key, vector, error in zip(keys, vectors, errors, strict=True):
            if error:
                self.errors[key] = error
            else:
                self.vectors[key] = vector

    def lookup(self, keys: Sequence[str | None]) -> tuple[np.ndarray, list[str | None]]:
        """``(n, dim)`` float32 (NaN rows for failures) and the failure reason of each key."""
        out = np.full((len(keys), self.dim), np.nan, dtype=np.float32)
        reasons: list[str | None] = []
        for row, key in enumerate(keys):
            if key is not None and key in self.vectors:
                out[row] = self.vectors[key]
                reasons.append(None)
            else:
                reasons.append(self.errors.get(key, "not encoded") if key else "unreadable")
        return out, reasons
