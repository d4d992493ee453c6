"""FiftyOne: a dataset with the embeddings and the map as a visualization run (optional extra).

Needs ``pip install "mclip-explorer[fiftyone]"`` and a MongoDB that FiftyOne can start (its
``fiftyone-db`` package downloads one when it is installed). Samples reference image files by
path; items whose image is not a local file point at a placeholder picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

if TYPE_CHECKING:
    import pandas as pd

EMBEDDING_FIELD = "mclip_embedding"
POINTS_FIELD = "mclip_xy"
BRAIN_KEY = "mclip_map"


def _modules() -> tuple[Any, Any]:
    try:
        import fiftyone as fo  # type: ignore[import-not-found]
        import fiftyone.brain as fob  # type: ignore[import-not-found]
    except ImportError as exc:
        raise ImportError("the 'fiftyone' export needs FiftyOne: pip install "
                          "'mclip-explorer[fiftyone]'") from exc
    return fo, fob


def build_dataset(name: str, filepaths: Sequence[str], embeddings: np.ndarray, points: np.ndarray,
                  metadata: pd.DataFrame) -> Any:
    """Create a FiftyOne dataset: one sample per row, embeddings in a field, the map as a run.

    Args:
        name: Dataset name (must be new).
        filepaths: Image file per row.
        embeddings: ``(n, dim)`` float32 vectors.
        points: ``(n, 2)`` map positions.
        metadata: ``n`` rows of metadata fields (names starting with ``_`` are skipped).
    """
    fo, fob = _modules()
    dataset = fo.Dataset(name)
    columns = [c for c in metadata.columns if not str(c).startswith("_")]
    samples = []
    for row, path in enumerate(filepaths):
        fields = {str(c): _plain(metadata[c].iat[row]) for c in columns}
        samples.append(fo.Sample(filepath=str(path), **fields))
    dataset.add_samples(samples)
    dataset.set_values(EMBEDDING_FIELD, [v.tolist() for v in np.asarray(embeddings, np.float32)])
    fob.compute_visualization(dataset, embeddings=EMBEDDING_FIELD,
                              points=np.asarray(points, np.float32), brain_key=BRAIN_KEY,
                              points_field=POINTS_FIELD, create_index=True)
    return dataset


def export_dataset(folder: Path, filepaths: Sequence[str], embeddings: np.ndarray,
                   points: np.ndarray, metadata: pd.DataFrame, *, name: str) -> Any:
    """:func:`build_dataset`, then export it with its runs as a FiftyOneDataset to ``folder``."""
    fo, _ = _modules()
    dataset = build_dataset(name, filepaths, embeddings, points, metadata)
    dataset.export(export_dir=str(folder), dataset_type=fo.types.FiftyOneDataset,
                   export_media=False)
    return dataset


def _plain(value: Any) -> Any:
    """A value FiftyOne can store (NumPy scalars to Python, missing values to None)."""
    if isinstance(value, np.generic):
        value = value.item()
    try:
        import pandas as pd

        if not isinstance(value, (list, tuple, np.ndarray)) and pd.isna(value):
            return None
    except (TypeError, ValueError):
        pass
    return value
