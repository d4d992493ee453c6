"""Which reader opens a source of precomputed embeddings (see ``docs/interop.md``)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from mclip_explorer.errors import SourceError
from mclip_explorer.interop import clip_retrieval
from mclip_explorer.interop.embeddings import (
    EMBEDDING_COLUMNS,
    Embeddings,
    frame_embeddings,
    pairs,
    parquet_embeddings,
)

__all__ = ["EMBEDDING_COLUMNS", "read_embeddings"]


def read_embeddings(source: Any, *, column: str | None = None) -> Embeddings:
    """Read any accepted source of precomputed embeddings (see ``docs/interop.md``).

    Args:
        source: A clip-retrieval (or LAION) embedding folder, a folder of ``.npy`` + parquet
            pairs, a ``.parquet`` or ``.npy`` file, a ``(npy, parquet)`` pair, or a DataFrame.
        column: The embedding column of a parquet file or DataFrame (default: the first of
            :data:`EMBEDDING_COLUMNS` present).

    Raises:
        SourceError: The source is missing, of an unknown kind, or malformed.
    """
    import pandas as pd

    if isinstance(source, pd.DataFrame):
        return frame_embeddings(source, column, what="DataFrame")
    if isinstance(source, (tuple, list)) and len(source) == 2:
        npy, parquet = (Path(p).expanduser() for p in source)
        return pairs([(npy, parquet)], "npy+parquet", npy.parent)
    if not isinstance(source, (str, Path)):
        raise SourceError(f"cannot read embeddings from a {type(source).__name__}: give a "
                          "folder, a .parquet or .npy file, an (npy, parquet) pair or a DataFrame")
    path = Path(source).expanduser()
    if not path.exists():
        raise SourceError(f"embeddings source not found: {path}")
    if path.is_dir():
        if clip_retrieval.is_folder(path):
            return clip_retrieval.read_folder(path)
        found = [(npy, npy.with_suffix(".parquet")) for npy in sorted(path.glob("*.npy"))]
        if not found:
            raise SourceError(f"{path} is neither a clip-retrieval embedding folder (img_emb/, "
                              "metadata/) nor a folder of .npy + .parquet pairs")
        return pairs(found, "npy+parquet", path)
    if path.suffix == ".parquet":
        return parquet_embeddings(path, column)
    if path.suffix == ".npy":
        return pairs([(path, path.with_suffix(".parquet"))], "npy+parquet", path.parent)
    raise SourceError(f"unsupported embeddings file {path}: expected .parquet or .npy")
