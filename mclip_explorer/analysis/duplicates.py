"""Near-duplicate groups, with a suggested keeper per group.

Two items are near-duplicates when their cosine similarity reaches ``threshold``; groups are the
connected components of that relation over each item's nearest neighbours (so a chain of
re-encodings ends up in one group even when its two ends are a little further apart).

Keeper rule (the copy to keep when de-duplicating): the largest image in pixels (width x
height); then a lossless file (PNG, TIFF, BMP, PPM/PGM) over a lossy one (JPEG, WebP, GIF...),
since a re-encoding only loses; then the shortest path (the original rather than
``backup/copy of ...``); then the lowest id (the item that entered the collection first). File
size is deliberately not a criterion: noise and JPEG artefacts make a worse copy bigger.
Missing metadata sorts last.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import (
    as_ids,
    as_unit,
    check_k,
    check_kind,
    item_vectors,
    self_neighbours,
    top_k,
)

KEEPER_COLUMNS = ("width", "height", "bytes", "path")
LOSSLESS = (".png", ".tif", ".tiff", ".bmp", ".ppm", ".pgm")


def near_duplicates(
    coll: Any, threshold: float = 0.95, *, k: int = 10, kind: str = "image"
) -> pd.DataFrame:
    """Find groups of near-duplicate items and suggest which one of each group to keep.

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        threshold: Cosine similarity at or above which two items are duplicates.
        k: Neighbours examined per item; a group larger than ``k + 1`` is still found whole
            through chains of neighbours.
        kind: ``"image"`` (default) or ``"text"``.

    Returns:
        One row per item that has a duplicate: ``group`` (0, 1, ... by decreasing size),
        ``id``, ``keeper`` (bool, one per group), ``similarity`` (cosine to the keeper), and
        ``path``, ``width``, ``height``, ``bytes`` from ``coll.items`` when present.
        ``frame.groupby("group")["id"].apply(list)`` lists the groups.
    """
    check_kind(kind)
    ids, vectors = item_vectors(coll, kind)
    items = coll.items
    meta = items.loc[ids, [c for c in KEEPER_COLUMNS if c in items.columns]]
    k = check_k(k)
    neighbours = self_neighbours(coll, kind, ids, vectors, k)
    return duplicates_from_vectors(
        ids, vectors, threshold, k=k, metadata=meta, neighbours=neighbours
    )


def duplicates_from_vectors(
    ids: Any,
    vectors: Any,
    threshold: float = 0.95,
    *,
    k: int = 10,
    metadata: pd.DataFrame | None = None,
    neighbours: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """The array-level core of :func:`near_duplicates`.

    Args:
        ids: ``(n,)`` item ids.
        vectors: ``(n, dim)`` embeddings.
        threshold: Duplicate cosine threshold, in ``(0, 1]``.
        k: Neighbours per item.
        metadata: Optional frame indexed by id with any of ``width``, ``height``, ``bytes``,
            ``path``, used by the keeper rule (module docstring).
        neighbours: Optional precomputed ``(positions, scores)`` of each row's nearest other
            rows (position -1 for none); default exact search.

    Returns:
        The frame described in :func:`near_duplicates`.
    """
    if not isinstance(threshold, (int, float)) or not 0 < threshold <= 1:
        raise ValueError(f"threshold must be a cosine in (0, 1], got {threshold!r}")
    k = check_k(k)
    unit = as_unit(vectors)
    ids = as_ids(ids, len(unit))
    if neighbours is None:
        neighbours = top_k(unit, unit, k, exclude=np.arange(len(unit)))
    positions, scores = neighbours
    roots = _components(positions, scores >= threshold - 1e-6)
    sizes = np.bincount(roots, minlength=len(unit))
    members = np.flatnonzero(sizes[roots] > 1)
    columns = ["group", "id", "keeper", "similarity", *KEEPER_COLUMNS]
    if len(members) == 0:
        return pd.DataFrame({c: pd.Series(dtype=object) for c in columns})
    frame = pd.DataFrame({"root": roots[members], "position": members, "id": ids[members]})
    meta = metadata if metadata is not None else pd.DataFrame(index=ids)
    for column in KEEPER_COLUMNS:
        frame[column] = meta[column].reindex(frame["id"]).to_numpy() if column in meta else None
    frame["area"] = pd.to_numeric(frame["width"], errors="coerce") * pd.to_numeric(
        frame["height"], errors="coerce"
    )
    frame["path_length"] = frame["path"].map(
        lambda p: len(str(p)) if isinstance(p, str) else np.inf
    )
    frame["lossless"] = frame["path"].map(
        lambda p: isinstance(p, str) and p.lower().endswith(LOSSLESS)
    )
    frame["size"] = sizes[frame["root"]]
    # Keeper first within each group (see the module docstring for the rule).
    frame = frame.sort_values(
        ["size", "root", "area", "lossless", "path_length", "id"],
        ascending=[False, True, False, False, True, True],
        na_position="last",
    )
    frame["group"] = frame.groupby("root", sort=False).ngroup()
    frame["keeper"] = ~frame.duplicated("root")
    keeper_position = frame.groupby("root")["position"].transform("first").to_numpy()
    frame["similarity"] = np.einsum("ij,ij->i", unit[frame["position"]], unit[keeper_position])
    return frame[columns].reset_index(drop=True)


def _components(positions: np.ndarray, linked: np.ndarray) -> np.ndarray:
    """Each row's group under the "similar enough" relation, named by its smallest member.

    ``positions[i, j]`` is a neighbour of row ``i`` (-1 for none), ``linked[i, j]`` whether the
    pair is close enough; chains of such pairs form one group (undirected).
    """
    from scipy.sparse import coo_matrix
    from scipy.sparse.csgraph import connected_components

    n = len(positions)
    rows, cols = np.nonzero(linked & (positions >= 0))
    graph = coo_matrix((np.ones(len(rows), dtype=np.int8), (rows, positions[rows, cols])),
                       shape=(n, n)).tocsr()
    _, labels = connected_components(graph, directed=False)
    # Components are numbered in order of first appearance, so the first index of each label is
    # its smallest member: the same name for a group whatever order it was found in.
    _, first = np.unique(labels, return_index=True)
    return np.asarray(first[labels], dtype=np.int64)
