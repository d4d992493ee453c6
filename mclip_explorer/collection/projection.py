"""The 2-D map of a collection: UMAP on the hnswlib kNN graph, PCA as preview and fallback.

Arrays in, arrays out. :func:`fit_map` lays out the embeddings once; :func:`place` puts new points
(queries, added items) into that fixed map from their nearest neighbours' positions, with no refit
and no pickled model, and says per point how much to trust the position (``stretch``).
"""

from __future__ import annotations

import contextlib
import importlib.metadata
import sys
import threading
import time
import warnings
from collections.abc import Iterator
from typing import Any, Literal

import numpy as np

Method = Literal["auto", "umap", "pca"]

# Below this many items "auto" uses PCA: UMAP on a few hundred points is mostly noise from its
# random initialisation and costs a 15 s numba compile for a map the eye reads just as well.
PCA_MAX = 500
MAP_NEIGHBORS = 15  # the first map's UMAP neighbours, read from the image index's kNN graph
PLACE_K = 10  # neighbours that place a new point on the map
SCALE_SAMPLE = 2000  # map items sampled to measure the map's typical 2-D kNN radius
_PCA_CHUNK = 65536
# A stage that takes long (importing umap-learn: about 20-30 s cold) still shows time passing.
PROGRESS_TICK_SECONDS = 1.0
_umap_fitted_in_process = False  # numba compiles UMAP's kernels on the first fit per process


def pca_preview(vectors: np.ndarray, rows: np.ndarray | None = None) -> np.ndarray:
    """Project onto the first two principal components: an instant, deterministic map.

    ``vectors[rows]`` is read a chunk at a time (three passes), so memory stays at a ``dim x
    dim`` covariance, one float32 chunk and the output: a memory-mapped store of any size is
    never copied whole.

    Args:
        vectors: ``(N, dim)`` float embeddings (finite), e.g. a float16 memory map.
        rows: The rows to project (default: all).

    Returns:
        ``(len(rows), 2)`` float32 coordinates; component signs are fixed so that reruns agree.
    """
    if rows is None:
        _check_shape(vectors)
    n, dim = (len(vectors) if rows is None else len(rows)), vectors.shape[1]

    def block(start: int) -> np.ndarray:
        picked = slice(start, start + _PCA_CHUNK) if rows is None else \
            rows[start:start + _PCA_CHUNK]
        return _check_vectors(vectors[picked], first=start if rows is None else rows[start:])

    if n == 0:
        return np.empty((0, 2), dtype=np.float32)
    total = np.zeros(dim, dtype=np.float64)
    for start in range(0, n, _PCA_CHUNK):
        total += block(start).sum(axis=0, dtype=np.float64)
    mean = total / n
    cov = np.zeros((dim, dim), dtype=np.float64)
    for start in range(0, n, _PCA_CHUNK):
        centred = block(start).astype(np.float64) - mean
        cov += centred.T @ centred
    _, vecs = np.linalg.eigh(cov)
    comps = vecs[:, ::-1][:, :2] if dim >= 2 else np.pad(vecs, ((0, 0), (0, 1)))
    # eigh's sign is arbitrary: make each component's largest loading positive.
    signs = np.sign(comps[np.abs(comps).argmax(axis=0), [0, 1]])
    comps = (comps * np.where(signs == 0, 1.0, signs)).astype(np.float32)
    out = np.empty((n, 2), dtype=np.float32)
    mean32 = mean.astype(np.float32)
    for start in range(0, n, _PCA_CHUNK):
        out[start:start + _PCA_CHUNK] = (block(start) - mean32) @ comps
    return out


def fit_map(
    vectors: np.ndarray,
    *,
    knn: tuple[np.ndarray, np.ndarray] | None = None,
    ids: np.ndarray | None = None,
    method: Method = "auto",
    random_state: int = 0,
    n_neighbors: int = 15,
    min_dist: float = 0.1,
    progress: bool = True,
    pca_max: int = PCA_MAX,
    rows: np.ndarray | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Lay out embeddings in 2-D.

    Args:
        vectors: ``(N, dim)`` unit embeddings, the items to map.
        knn: ``(neighbour ids, similarities)``, ``(N, k)`` with ``k >= n_neighbors`` and each
            item first, as :meth:`VectorIndex.knn_graph` returns; reused by UMAP so it makes
            no second kNN pass. Without it, a temporary hnswlib index computes the graph.
        ids: The id of each row of ``vectors``, when the neighbour ids in ``knn`` are ids
            rather than row positions.
        method: ``"umap"``, ``"pca"`` or ``"auto"`` (PCA below ``pca_max`` items).
        random_state: UMAP seed; the same seed and graph give the same map.
        n_neighbors: UMAP neighbourhood size.
        min_dist: UMAP minimum distance between laid-out points.
        progress: Show the stages (including UMAP's one-off numba compile) as a progress bar.
        pca_max: Threshold of ``"auto"``.
        rows: Map only these rows of ``vectors`` (default: all). PCA reads them a chunk at a
            time, so ``vectors`` may be a memory-mapped store of any size; UMAP copies them.

    Returns:
        ``(coords, params)``: ``(N, 2)`` float32 and a JSON-able dict for the manifest (method,
        its parameters, library version, seconds, and ``scale``, the map's typical kNN radius
        that :func:`place` uses).
    """
    _check_shape(vectors)
    n = len(vectors) if rows is None else len(rows)
    if method not in ("auto", "umap", "pca"):
        raise ValueError(f"method must be 'auto', 'umap' or 'pca', got {method!r}")
    if method == "auto":
        method = "pca" if n < pca_max else "umap"
    started = time.perf_counter()
    if method == "pca" or n < 3:
        coords = pca_preview(vectors, rows)
        params: dict[str, Any] = {"method": "pca", "n": n}
    else:
        x = _check_vectors(vectors if rows is None else vectors[rows])
        if not 2 <= n_neighbors < n:
            raise ValueError(f"n_neighbors must be in [2, {n - 1}] for {n} items, "
                             f"got {n_neighbors}")
        coords, params = _fit_umap(x, knn, ids, random_state=random_state,
                                   n_neighbors=n_neighbors, min_dist=min_dist, progress=progress)
    params["seconds"] = round(time.perf_counter() - started, 3)
    params["scale"], params["scale_k"] = map_scale(coords), 10
    return coords, params


def _fit_umap(x: np.ndarray, knn: tuple[np.ndarray, np.ndarray] | None, ids: np.ndarray | None,
              *, random_state: int, n_neighbors: int, min_dist: float,
              progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    global _umap_fitted_in_process
    n = len(x)
    cold = not _umap_fitted_in_process
    compile_note = " (first fit in this process: numba compiles for 15-50 s)" if cold else ""
    with _stages(progress, total=3) as stage:
        if knn is None:
            stage("kNN graph (hnswlib)")
            knn_ids, knn_sims, ids = _own_knn_graph(x, n_neighbors)
        else:
            stage("kNN graph (given)")
            knn_ids, knn_sims = knn
        indices, dists = _knn_to_umap(knn_ids, knn_sims, ids, n, n_neighbors)
        # The first import in a new environment compiles numba code for about 20 s.
        stage("importing umap-learn" + ("" if "umap" in sys.modules else " (numba compiles "
                                        "on the first import: up to 30 s)"))
        import umap

        stage(f"UMAP layout of {n} items{compile_note}")
        reducer = umap.UMAP(
            n_neighbors=n_neighbors, min_dist=min_dist, metric="cosine",
            random_state=random_state, n_jobs=1, precomputed_knn=(indices, dists),
        )
        with warnings.catch_warnings():
            # No NNDescent index is wanted: new points are placed by place(), not transform().
            warnings.filterwarnings("ignore", message=".*knn_search_index.*")
            warnings.filterwarnings("ignore", message=".*n_jobs value.*")
            coords = reducer.fit_transform(x)
    _umap_fitted_in_process = True
    params = {
        "method": "umap", "n": n, "metric": "cosine", "n_neighbors": n_neighbors,
        "min_dist": float(min_dist), "random_state": random_state,
        "knn": "hnswlib", "cold_compile": cold, "umap-learn": _version("umap-learn"),
    }
    return np.ascontiguousarray(coords, dtype=np.float32), params


def _own_knn_graph(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    from mclip_explorer.collection.building import index_vectors
    from mclip_explorer.collection.index import VectorIndex

    index = VectorIndex(x.shape[1])
    row_ids = np.arange(len(x), dtype=np.int64)
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    # Unit rows go in untouched: renormalising twice changes the last bit of the similarities,
    # and UMAP's layout is chaotic enough that this alone gives a different map.
    unit = np.allclose(norms, 1.0, atol=1e-3)
    unit_x = x if unit else x / np.where(norms == 0, 1, norms)
    # One thread below the parallel threshold: a multi-threaded hnswlib graph depends on thread
    # timing, and UMAP turns any difference in the neighbours into a different map.
    index_vectors(index, row_ids, unit_x)
    knn_ids, knn_sims = index.knn_graph(k, vectors_by_id=unit_x)
    return knn_ids, knn_sims, row_ids


def _knn_to_umap(knn_ids: np.ndarray, knn_sims: np.ndarray, ids: np.ndarray | None, n: int,
                 k: int) -> tuple[np.ndarray, np.ndarray]:
    """Neighbour ids and similarities -> UMAP's row positions and cosine distances."""
    knn_ids, knn_sims = np.asarray(knn_ids), np.asarray(knn_sims)
    if knn_ids.shape != knn_sims.shape or knn_ids.ndim != 2 or knn_ids.shape[0] != n:
        raise ValueError(f"knn must be two ({n}, k) arrays, got {knn_ids.shape} and "
                         f"{knn_sims.shape}")
    if knn_ids.shape[1] < k:
        raise ValueError(f"knn has {knn_ids.shape[1]} neighbours per item, n_neighbors={k} "
                         "needs at least that many")
    knn_ids, knn_sims = knn_ids[:, :k].astype(np.int64), knn_sims[:, :k]
    if ids is None:
        positions = knn_ids
        valid = (knn_ids >= 0) & (knn_ids < n)
    else:
        ids = np.asarray(ids, dtype=np.int64)
        if ids.shape != (n,):
            raise ValueError(f"ids must have shape ({n},), got {ids.shape}")
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        where = np.minimum(np.searchsorted(sorted_ids, knn_ids), n - 1)
        valid = sorted_ids[where] == knn_ids
        positions = order[where]
    valid &= np.isfinite(knn_sims)
    if not valid.all():
        row = int(np.flatnonzero(~valid.all(axis=1))[0])
        raise ValueError(f"knn row {row} has padding or neighbours outside the mapped items "
                         "among its first n_neighbors entries")
    if not (positions[:, 0] == np.arange(n)).all():
        raise ValueError("knn rows must start with the item itself (as knn_graph returns)")
    dists = np.clip(1.0 - knn_sims, 0.0, 2.0).astype(np.float32)
    dists[:, 0] = 0.0
    return np.ascontiguousarray(positions, dtype=np.int32), dists


def map_scale(coords: np.ndarray, k: int = 10, *, sample: int = SCALE_SAMPLE,
              seed: int = 0) -> float:
    """The map's typical kNN radius: median RMS 2-D distance of an item to its k nearest items.

    Computed on a seeded sample of items against all of them (a k-d tree), so it is cheap at 1M.
    Returns NaN for a map with fewer than two placed points.
    """
    from scipy.spatial import cKDTree

    pts = np.asarray(coords, dtype=np.float64)
    pts = pts[np.isfinite(pts).all(axis=1)]
    if len(pts) < 2:
        return float("nan")
    k = min(k, len(pts) - 1)
    rng = np.random.default_rng(seed)
    probe = pts[rng.choice(len(pts), min(sample, len(pts)), replace=False)]
    dist, _ = cKDTree(pts).query(probe, k=k + 1)  # first hit is the item itself
    rms = np.sqrt(np.mean(dist[:, 1:] ** 2, axis=1))
    positive = rms[rms > 0]
    return float(np.median(positive)) if len(positive) else 0.0


def place(
    neighbor_ids: np.ndarray,
    neighbor_sims: np.ndarray,
    coords_by_id: np.ndarray,
    *,
    scale: float | None = None,
    power: float = 2.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Put new points into a fixed map from their nearest neighbours' map positions.

    The position is the inverse-distance-weighted mean of the neighbours' 2-D positions with
    weights ``1 / max(1 - sim, 1e-6) ** power`` (cosine distance), so a point equal to an item
    lands on it. ``stretch`` is the RMS 2-D distance of the (unweighted) neighbours from that
    position, divided by ``scale``, the map's typical kNN radius (:func:`map_scale`): about 1
    where the point's true neighbours sit together on the map as an item's map neighbours do;
    well above 1 (3 and more) where they are scattered, i.e. the map tears this neighbourhood
    apart and the position is a compromise. Padding (id -1, NaN similarity) and neighbours with
    no map position (NaN coordinates: failed or removed items) are ignored.

    Args:
        neighbor_ids: ``(n, k)`` ids of each point's nearest items (hnswlib query output).
        neighbor_sims: ``(n, k)`` their cosine similarities.
        coords_by_id: ``(N, 2)`` map positions, row = item id.
        scale: The map's kNN radius (``params["scale"]`` of :func:`fit_map`); computed from
            ``coords_by_id`` when omitted, which costs a k-d tree over the map.
        power: Inverse-distance exponent.

    Returns:
        ``(xy, stretch)``: ``(n, 2)`` and ``(n,)`` float32; NaN for points with no usable
        neighbour.
    """
    ids = np.asarray(neighbor_ids)
    sims = np.asarray(neighbor_sims, dtype=np.float32)
    if ids.ndim == 1:
        ids, sims = ids[None, :], sims[None, :]
    if ids.shape != sims.shape or ids.ndim != 2:
        raise ValueError(f"neighbor_ids and neighbor_sims must be two (n, k) arrays, got "
                         f"{np.shape(neighbor_ids)} and {np.shape(neighbor_sims)}")
    if ids.size and not np.issubdtype(ids.dtype, np.integer):
        raise ValueError(f"neighbor_ids must be integers, got {ids.dtype}")
    coords = np.asarray(coords_by_id, dtype=np.float32)
    if coords.ndim != 2 or coords.shape[1] != 2:
        raise ValueError(f"coords_by_id must have shape (N, 2), got {coords.shape}")
    ids = ids.astype(np.int64)
    if ids.size and ids.max() >= len(coords):
        raise ValueError(f"neighbour id {int(ids.max())} has no map position "
                         f"(coords_by_id has {len(coords)} rows)")
    safe = np.clip(ids, 0, max(len(coords) - 1, 0))
    pos = coords[safe] if len(coords) else np.full((*ids.shape, 2), np.nan, np.float32)
    valid = (ids >= 0) & np.isfinite(sims) & np.isfinite(pos).all(axis=2)
    dist = np.maximum(1.0 - np.where(valid, sims, 0.0), 1e-6)
    weight = np.where(valid, dist ** -power, 0.0).astype(np.float64)
    total = weight.sum(axis=1)
    has = total > 0
    pos0 = np.where(valid[..., None], pos, 0.0).astype(np.float64)
    xy = np.full((len(ids), 2), np.nan, dtype=np.float64)
    xy[has] = (weight[has, :, None] * pos0[has]).sum(axis=1) / total[has, None]
    count = valid.sum(axis=1)
    sq = ((pos0 - xy[:, None, :]) ** 2).sum(axis=2)
    spread = np.full(len(ids), np.nan)
    spread[has] = np.sqrt(np.where(valid[has], sq[has], 0.0).sum(axis=1) / count[has])
    if scale is None:
        scale = map_scale(coords, k=max(ids.shape[1], 1))
    stretch = spread / scale if scale and np.isfinite(scale) else np.full(len(ids), np.nan)
    return xy.astype(np.float32), stretch.astype(np.float32)


def _check_shape(vectors: np.ndarray) -> None:
    if vectors.ndim != 2 or not np.issubdtype(vectors.dtype, np.floating):
        raise ValueError(f"vectors must be a 2-D float array, got shape {vectors.shape} "
                         f"and dtype {vectors.dtype}")


def _check_vectors(vectors: np.ndarray, first: int | np.ndarray = 0) -> np.ndarray:
    """The rows as finite float32.

    ``first``: the row number of the first row (or of each row) for the error message.
    """
    x = np.asarray(vectors)
    _check_shape(x)
    x = np.ascontiguousarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        at = int(np.flatnonzero(~np.isfinite(x).all(axis=1))[0])
        row = at + first if isinstance(first, int) else int(first[at])
        raise ValueError(f"vectors row {row} is not finite (drop failed items before mapping)")
    return x


@contextlib.contextmanager
def _stages(enabled: bool, total: int) -> Iterator[Any]:
    """A stage-per-step progress bar (tqdm.auto: a widget in notebooks)."""
    from tqdm.auto import tqdm

    bar = tqdm(total=total, desc="map", disable=not enabled, bar_format="{desc} [{elapsed}]")
    steps = 0
    stop = threading.Event()

    def tick() -> None:
        # tqdm redraws only when told; this redraw keeps [elapsed] moving during one long stage.
        # It touches nothing but the bar (no NumPy), so it cannot contend for the BLAS pool.
        while not stop.wait(PROGRESS_TICK_SECONDS):
            bar.refresh()

    ticker = threading.Thread(target=tick, name="map-progress", daemon=True)
    if enabled:
        ticker.start()

    def stage(label: str) -> None:
        nonlocal steps
        if steps:
            bar.update(1)
        steps += 1
        bar.set_description_str(f"map: {label}")

    try:
        yield stage
        bar.update(total - bar.n)
        bar.set_description_str("map: done")
    finally:
        stop.set()
        if ticker.is_alive():
            ticker.join()
        bar.close()


def _version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
