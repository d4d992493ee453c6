"""Embedding Atlas input: one parquet table it opens as is.

Columns (Embedding Atlas ``packages/docs/data-formats.md``): ``projection_x``/``projection_y``
(the map), ``neighbors`` = struct ``{"ids": list<int64>, "distances": list<float32>}`` sorted by
distance, whose ids are **zero-based row indices** of this table (no ``row_id`` option needed),
``text``, and ``image`` = struct ``{"bytes", "path"}`` (Hugging Face's image layout) holding a JPEG
thumbnail, plus ``id`` (the collection's id) and the items' metadata columns. Open it with::

    embedding-atlas data.parquet --x projection_x --y projection_y --neighbors neighbors \
        --text text --image image --disable-projection
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer._files import atomic_write

if TYPE_CHECKING:
    import pandas as pd
    import pyarrow as pa  # type: ignore[import-untyped]

X, Y, NEIGHBORS, TEXT, IMAGE = "projection_x", "projection_y", "neighbors", "text", "image"


def atlas_table(frame: pd.DataFrame, coords: np.ndarray, neighbor_rows: np.ndarray,
                neighbor_distances: np.ndarray,
                images: Sequence[bytes | None] | None = None) -> pa.Table:
    """Build the table.

    Args:
        frame: One row per exported item (``id``, ``text`` and metadata columns).
        coords: ``(m, 2)`` map positions of those rows.
        neighbor_rows: ``(m, k)`` row indices of each row's nearest rows, best first; ``-1``
            marks a missing neighbour (dropped from that row's list).
        neighbor_distances: ``(m, k)`` cosine distances (``1 - similarity``) of those rows.
        images: Encoded JPEG/PNG bytes per row (None where there is no picture), or None.
    """
    import pyarrow as pa

    m = len(frame)
    if coords.shape != (m, 2) or neighbor_rows.shape != neighbor_distances.shape or (
            len(neighbor_rows) != m):
        raise ValueError("frame, coords and neighbours must describe the same rows")
    columns: dict[str, Any] = {}
    for name in frame.columns:
        if name not in (X, Y, NEIGHBORS, IMAGE):
            columns[name] = _column(frame[name])
    columns[X] = pa.array(coords[:, 0].astype(np.float32))
    columns[Y] = pa.array(coords[:, 1].astype(np.float32))
    columns[NEIGHBORS] = neighbor_lists(neighbor_rows, neighbor_distances)
    if images is not None:
        columns[IMAGE] = pa.array(
            [None if b is None else {"bytes": b, "path": None} for b in images],
            type=pa.struct([("bytes", pa.binary()), ("path", pa.string())]))
    return pa.table(columns)


def neighbor_lists(rows: np.ndarray, distances: np.ndarray) -> pa.StructArray:
    """``{"ids", "distances"}`` lists per row, built column-wise (no Python loop per row)."""
    import pyarrow as pa

    keep = rows >= 0  # missing neighbours (-1) are left out of that row's lists
    offsets = pa.array(np.concatenate([[0], np.cumsum(keep.sum(axis=1))]).astype(np.int32))
    ids = pa.ListArray.from_arrays(offsets, pa.array(rows[keep].astype(np.int64)))
    dist = pa.ListArray.from_arrays(offsets, pa.array(distances[keep].astype(np.float32)))
    return pa.StructArray.from_arrays([ids, dist], names=["ids", "distances"])


def _column(series: pd.Series) -> Any:
    import pyarrow as pa

    try:
        return pa.array(series, from_pandas=True)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        # Mixed Python objects in a metadata column: their text is what a viewer shows anyway.
        return pa.array([None if v is None else str(v) for v in series], type=pa.string())


def write_table(path: Path, table: pa.Table) -> None:
    """Write the table as one parquet file at ``path``, atomically and verified."""
    import pyarrow.parquet as pq  # type: ignore[import-untyped]

    atomic_write(path, lambda handle: pq.write_table(table, handle))
