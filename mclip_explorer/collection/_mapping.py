"""The first map of a new collection: UMAP (or PCA) on the image index's own kNN graph.

Later additions are placed on this map from their nearest images (:meth:`Collection.place`),
never refitted, so a collection's map only changes when it is built again.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    from mclip_explorer.collection.index import VectorIndex

MAP_NEIGHBORS = 15


def first_map(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, n: int, method: str,
              progress: bool) -> tuple[np.ndarray, np.ndarray, dict[str, Any] | None]:
    """Lay out the live images of a new collection of ``n`` items.

    Args:
        index: The image index, holding ``ids``.
        vectors: ``(len(ids), dim)`` embeddings of ``ids``.
        ids: The live, successfully encoded image ids (possibly none).
        n: Items in the collection (rows of the result).
        method: ``"auto"``, ``"umap"`` or ``"pca"``.
        progress: Show the fit's progress.

    Returns:
        ``(coords, stretch, params)``: float32 ``(n, 2)`` positions, NaN for items off the map;
        float32 ``(n,)`` stretch, 0 on the map and NaN off it; the projection parameters for
        the manifest, or ``None`` when there was nothing to fit.
    """
    coords = np.full((n, 2), np.nan, dtype=np.float32)
    params = None
    if len(ids):
        coords[ids], params = _fit(index, vectors, ids, method, progress)
    stretch = np.where(np.isnan(coords[:, 0]), np.nan, 0.0).astype(np.float32)
    return coords, stretch, params


def _fit(index: VectorIndex, vectors: np.ndarray, ids: np.ndarray, method: str,
         progress: bool) -> tuple[np.ndarray, dict[str, Any]]:
    from mclip_explorer.collection.projection import fit_map

    knn = index.knn_graph(min(MAP_NEIGHBORS + 1, len(ids))) if len(ids) > MAP_NEIGHBORS else None
    coords, params = fit_map(vectors, knn=knn, ids=ids, method=method,  # type: ignore[arg-type]
                             random_state=0, n_neighbors=MAP_NEIGHBORS, progress=progress)
    return coords, params
