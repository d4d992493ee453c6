"""Argument checks shared by the index: ids, counts and unit vectors, with clear errors."""

from __future__ import annotations

import math

import numpy as np

NORM_TOLERANCE = 1e-2  # float16-stored embeddings come back with |norm - 1| around 1e-3


def check_unit_vectors(vectors: np.ndarray, dim: int, what: str) -> np.ndarray:
    """``(n, dim)`` contiguous float32 unit rows (a ``(dim,)`` vector becomes one row).

    Raises:
        ValueError: Wrong shape or dtype, or a row that is not finite and of unit length.
    """
    arr = np.asarray(vectors)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != dim:
        raise ValueError(f"{what} must have shape (n, {dim}), got {np.shape(vectors)}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise ValueError(f"{what} must be floating point, got {arr.dtype}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    norms = np.linalg.norm(arr, axis=1)
    bad = ~np.isfinite(norms) | (np.abs(norms - 1.0) > NORM_TOLERANCE)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        raise ValueError(f"{what} must be finite unit vectors (L2-normalised); row {row} has "
                         f"norm {norms[row]:.4g} ({int(bad.sum())} bad rows)")
    # Within tolerance, renormalise so that scores stay in [-1, 1].
    return np.asarray(arr / norms[:, None], dtype=np.float32)


def auto_ef(count: int) -> int:
    """Default search breadth for an index of ``count`` items.

    Chosen by measurement (``bench/collection.py``, CLIP-like clustered 512-d vectors, M=16,
    ef_construction=200): recall@10 >= 0.98 needs ef 64 up to about 20k items (0.99-1.0),
    128 at 100k (0.995; 64 gives 0.955) and 512 at 1M (0.99; 128 gives 0.89, 256 0.97).
    ``128 * (count / 100k) ** 0.6`` passes through those points; it is clipped to [64, 512].
    """
    return int(min(512, max(64, math.ceil(128 * (max(count, 1) / 100_000) ** 0.6))))


def as_ids(ids: np.ndarray, what: str) -> np.ndarray:
    """``ids`` as a 1-d int64 array of non-negative values, or a ValueError naming ``what``."""
    arr = np.atleast_1d(np.asarray(ids))
    if arr.ndim != 1:
        raise ValueError(f"{what} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        raise ValueError(f"{what} must be integers, got {arr.dtype}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and arr.min() < 0:
        raise ValueError(f"{what} must be non-negative, got {int(arr.min())}")
    return arr


def check_k(k: int, what: str = "k") -> int:
    """``k`` as a positive int, or a ValueError naming ``what``."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"{what} must be a positive integer, got {k!r}")
    return int(k)


def check_graph_params(dim: int, m: int, ef_construction: int, ef: int | None) -> None:
    """Refuse index parameters hnswlib would misread: non-integers, zero, ``M < 2``."""
    for name, value in (("dim", dim), ("M", m), ("ef_construction", ef_construction),
                        ("ef", 1 if ef is None else ef)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ValueError(f"{name} must be a positive integer, got {value!r}")
    if m < 2:
        raise ValueError(f"M must be at least 2, got {m}")
