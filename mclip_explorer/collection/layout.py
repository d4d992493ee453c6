"""The first map of a new collection: one fit on all images, or on a sample with the rest placed.

Up to ``sample_max`` live images, UMAP (or PCA) is fitted on all of them, on the image index's own
kNN graph. Above it, openTSNE's large-data recipe: UMAP is fitted on a seeded random sample of
``sample_max`` images, on the kNN graph of a fresh hnswlib index over that sample (passed as
``precomputed_knn``), and every other image is placed by :func:`.projection.place` from its
nearest sampled images: the same mechanism that places items added later, so a map is always
one fit plus placements. Placed images get a ``stretch`` (0 for fitted ones); see
``docs/scaling-memory.md`` for the costs.
"""

from __future__ import annotations

import time
from typing import Any, cast

import numpy as np

from mclip_explorer.collection import building
from mclip_explorer.collection.index import VectorIndex
from mclip_explorer.collection.projection import (
    MAP_NEIGHBORS,
    PLACE_K,
    Method,
    fit_map,
    place,
)

MAP_SAMPLE = 200_000  # above this many images the map is fitted on a sample of this size
PLACE_CHUNK = 65_536  # images placed per batch of queries (bounds the float32 copy)
PLACE_EF = 64  # placement needs neighbours, not the search's recall at the last rank


def samples_map(images: int, method: str, sample_max: int) -> bool:
    """Whether :func:`first_map` fits a sample and places the rest.

    It then never reads the collection's index, which may be built after the map.

    Raises:
        ValueError: ``sample_max`` is not an integer >= 2.
    """
    if isinstance(sample_max, bool) or not isinstance(sample_max, (int, np.integer)) \
            or sample_max < 2:
        raise ValueError(f"map sample size must be an integer >= 2, got {sample_max!r}")
    return method != "pca" and images > sample_max


def first_map(index: VectorIndex, embeddings: np.ndarray, ids: np.ndarray, method: str,
              progress: bool, *, sample_max: int = MAP_SAMPLE,
              seed: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Lay out the live images of a new collection.

    Args:
        index: The image index, holding ``ids`` (may still be empty when
            :func:`samples_map`).
        embeddings: ``(N, dim)`` stored embeddings of the whole collection, row = id (may be a
            float16 memory map: only the rows needed are read, a chunk at a time).
        ids: The live, successfully encoded image ids, ascending (possibly none).
        method: ``"auto"``, ``"umap"`` or ``"pca"``. PCA is never sampled (it is linear and
            streams over all rows).
        progress: Show the fit's progress.
        sample_max: Most images fitted; above it the rest are placed.
        seed: Seed of the sample and of UMAP.

    Returns:
        ``(coords, stretch, params)``: float32 ``(N, 2)`` positions, NaN for items off the map;
        float32 ``(N,)`` stretch, 0 for fitted images, the placement stretch for placed ones,
        NaN off the map; the projection parameters for the manifest, or ``None`` when there
        was nothing to fit.
    """
    sampled = samples_map(len(ids), method, sample_max)
    n = len(embeddings)
    coords = np.full((n, 2), np.nan, dtype=np.float32)
    stretch = np.full(n, np.nan, dtype=np.float32)
    if not len(ids):
        return coords, stretch, None
    if not sampled:
        # The stored embeddings, not a copy out of hnswlib (see VectorIndex.knn_graph).
        knn = index.knn_graph(MAP_NEIGHBORS + 1, vectors_by_id=embeddings) \
            if len(ids) > MAP_NEIGHBORS and method != "pca" else None
        coords[ids], params = fit_map(embeddings, rows=ids, knn=knn, ids=ids,
                                      method=cast(Method, method), random_state=seed,
                                      n_neighbors=MAP_NEIGHBORS, progress=progress)
        stretch[ids] = 0.0
        return coords, stretch, params
    params = fit_sampled(embeddings, ids, coords, stretch, sample_max=int(sample_max),
                         method=method, seed=seed, progress=progress)
    return coords, stretch, params


def fit_sampled(embeddings: np.ndarray, ids: np.ndarray, coords: np.ndarray,
                stretch: np.ndarray, *, sample_max: int, method: str, seed: int,
                progress: bool) -> dict[str, Any]:
    """Fit on a seeded sample of ``ids``, place the others; writes ``coords``/``stretch`` rows.

    Returns:
        The projection parameters: :func:`fit_map`'s for the sample, plus ``sample`` (images
        fitted), ``placed``, ``sample_seed``, ``place_k`` and the seconds of each stage.
    """
    started = time.perf_counter()
    pick = np.sort(np.random.default_rng(seed).choice(len(ids), sample_max, replace=False))
    sample_ids = ids[pick]
    sample = _unit32(embeddings[sample_ids])
    # A fresh index over the sample: its kNN graph is the sample's own (the collection's graph
    # restricted to a 2 % sample keeps almost no edges), and it answers the placements. It is
    # built on one thread whatever its size, so the map depends only on the data and the seed,
    # even where the collection's own index was built on all cores.
    sample_index = building.index_vectors(VectorIndex(sample.shape[1]),
                                          np.arange(sample_max, dtype=np.int64), sample,
                                          progress=progress, parallel_min=sample_max + 1)
    indexed = time.perf_counter()
    knn = sample_index.knn_graph(MAP_NEIGHBORS + 1, vectors_by_id=sample)
    fitted, params = fit_map(sample, knn=knn, method=cast(Method, method),
                             random_state=seed, n_neighbors=MAP_NEIGHBORS, progress=progress)
    del sample, knn
    coords[sample_ids], stretch[sample_ids] = fitted, 0.0
    fit_done = time.perf_counter()
    rest = np.delete(ids, pick)
    bar = building.progress_bar(len(rest), "map: placing", "item", progress)
    for start in range(0, len(rest), PLACE_CHUNK):
        rows = rest[start:start + PLACE_CHUNK]
        near, sims = sample_index.query(_unit32(embeddings[rows]), PLACE_K, ef=PLACE_EF)
        coords[rows], stretch[rows] = place(near, sims, fitted, scale=params["scale"])
        if bar is not None:
            bar.update(len(rows))
    if bar is not None:
        bar.close()
    done = time.perf_counter()
    params.update(sample=int(sample_max), placed=len(rest), sample_seed=seed, place_k=PLACE_K,
                  sample_index_seconds=round(indexed - started, 3),
                  fit_seconds=round(fit_done - started, 3),
                  place_seconds=round(done - fit_done, 3), seconds=round(done - started, 3))
    return params


def _unit32(rows: np.ndarray) -> np.ndarray:
    """Stored (possibly float16) unit rows as float32 unit rows, as the index holds them."""
    x = np.asarray(rows, dtype=np.float32)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norms == 0, 1, norms)

