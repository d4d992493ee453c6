"""Precomputed embeddings from tables: the record every reader returns, parquet and DataFrames.

Accepted here: a parquet file with an embedding column, a pandas DataFrame with one, a ``.npy``
file with a parquet of the same stem beside it (or a ``(npy, parquet)`` pair), and a folder of
such pairs. clip-retrieval's folders are read by :mod:`.clip_retrieval`;
:func:`mclip_explorer.interop.sources.read_embeddings` picks the reader. Nothing is unpickled:
arrays load with ``allow_pickle=False``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mclip_explorer.errors import SourceError

if TYPE_CHECKING:
    import pandas as pd

# Names tried, in order, when no embedding column is named.
EMBEDDING_COLUMNS = ("embedding", "image_embedding", "img_emb", "clip_embedding", "vector",
                     "emb", "embeddings")


@dataclass
class Embeddings:
    """Vectors made elsewhere, with one metadata row per vector.

    Attributes:
        images: ``(n, dim)`` floating-point image embeddings as stored (float16 stays float16;
            a memory map for ``.npy`` files, so nothing is copied before it is needed).
        metadata: ``n`` rows, aligned with ``images`` (may have no columns).
        texts: ``(n, dim)`` text embeddings aligned with ``images`` (clip-retrieval's
            ``text_emb``), or None.
        fmt: Short name of the source format, for the manifest.
        files: The files read, in id order.
        root: Folder against which relative image paths are resolved, if any.
    """

    images: np.ndarray
    metadata: pd.DataFrame
    texts: np.ndarray | None = None
    fmt: str = ""
    files: list[str] = field(default_factory=list)
    root: Path | None = None

    @property
    def dim(self) -> int:
        """Embedding size."""
        return int(self.images.shape[1])

    def check(self, what: str) -> Embeddings:
        """Validate shapes and dtypes; return self.

        Raises:
            SourceError: Not a 2-D floating array, rows that disagree with the metadata, or text
                embeddings of another shape.
        """
        arr = self.images
        if arr.ndim != 2 or arr.shape[1] < 1:
            raise SourceError(f"{what}: embeddings must be a 2-D (n, dim) array, got shape "
                              f"{arr.shape}")
        if not np.issubdtype(arr.dtype, np.floating):
            raise SourceError(f"{what}: embeddings must be floating point, got {arr.dtype}")
        if len(arr) == 0:
            raise SourceError(f"{what}: holds no embeddings")
        if len(self.metadata) != len(arr):
            raise SourceError(f"{what}: {len(arr)} embeddings but {len(self.metadata)} metadata "
                              "rows")
        if self.texts is not None and self.texts.shape != arr.shape:
            raise SourceError(f"{what}: text embeddings have shape {self.texts.shape}, the image "
                              f"embeddings {arr.shape}")
        return self


def load_matrix(path: Path) -> np.ndarray:
    """Memory-map one ``.npy`` matrix (never unpickling); a bad file is a SourceError."""
    try:
        matrix: np.ndarray = np.load(path, mmap_mode="r", allow_pickle=False)
    except FileNotFoundError:
        raise SourceError(f"embeddings file not found: {path}") from None
    except (ValueError, OSError, EOFError) as exc:
        raise SourceError(f"cannot read embeddings file {path}: {exc}") from None
    return matrix


def read_table(path: Path) -> pd.DataFrame:
    """Read one parquet file; a bad file is a SourceError."""
    import pandas as pd

    try:
        return pd.read_parquet(path)
    except FileNotFoundError:
        raise SourceError(f"metadata file not found: {path}") from None
    except Exception as exc:  # noqa: BLE001 - pyarrow raises several types for bad files
        raise SourceError(f"cannot read parquet file {path}: {exc}") from None


def concat(arrays: list[np.ndarray], what: str) -> np.ndarray:
    """Concatenate matrices of one width (a single one is returned as is, still mapped)."""
    widths = {a.shape[1] if a.ndim == 2 else -1 for a in arrays}
    if len(widths) != 1 or -1 in widths:
        raise SourceError(f"{what}: files of different embedding sizes or shapes "
                          f"{sorted({a.shape for a in arrays})}")
    return arrays[0] if len(arrays) == 1 else np.concatenate(arrays)


def pairs(files: list[tuple[Path, Path]], fmt: str, root: Path) -> Embeddings:
    """``.npy`` matrices with their parquet metadata (absent: no columns), in the given order."""
    import pandas as pd

    matrices, tables = [], []
    for npy, parquet in files:
        matrix = load_matrix(npy)
        matrices.append(matrix)
        tables.append(read_table(parquet) if parquet.exists()
                      else pd.DataFrame(index=range(len(matrix))))
    frame = pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()
    names = [str(p) for pair in files for p in pair if p.exists()]
    return Embeddings(concat(matrices, str(root)), frame, None, fmt, names, root).check(str(root))


def parquet_embeddings(path: Path, column: str | None) -> Embeddings:
    """A parquet file whose ``column`` holds one list of floats per row."""
    frame = read_table(path)
    result = frame_embeddings(frame, column, what=str(path))
    result.fmt, result.files, result.root = "parquet", [str(path)], path.parent
    return result


def frame_embeddings(frame: pd.DataFrame, column: str | None, *, what: str) -> Embeddings:
    """A DataFrame whose ``column`` holds one vector (list or array) per row."""
    name = column or next((c for c in EMBEDDING_COLUMNS if c in frame.columns), None)
    if name is None or name not in frame.columns:
        wanted = repr(column) if column else f"one of {list(EMBEDDING_COLUMNS)}"
        raise SourceError(f"{what}: no embedding column {wanted}; columns are "
                          f"{list(frame.columns)} (pass column=...)")
    values = frame[name].to_numpy()
    lengths = {len(v) if v is not None and hasattr(v, "__len__") else -1 for v in values}
    if -1 in lengths or len(lengths) != 1:
        raise SourceError(f"{what}: column {name!r} must hold one vector of the same length "
                          f"per row (found lengths {sorted(lengths)[:5]})")
    try:
        matrix = np.stack([np.asarray(v) for v in values]) if len(values) else np.empty((0, 0))
    except (TypeError, ValueError) as exc:
        raise SourceError(f"{what}: column {name!r} is not numeric vectors: {exc}") from None
    if not np.issubdtype(matrix.dtype, np.floating):
        raise SourceError(f"{what}: column {name!r} holds {matrix.dtype} values, not floats")
    metadata = frame.drop(columns=[name]).reset_index(drop=True)
    return Embeddings(matrix, metadata, None, "dataframe", []).check(what)
