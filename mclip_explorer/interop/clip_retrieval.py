"""clip-retrieval's embedding folder (also LAION's released embeddings): read and write.

Layout (clip-retrieval ``clip_inference/writer.py``)::

    img_emb/img_emb_<N>.npy          float16 (n, dim), L2-normalised
    text_emb/text_emb_<N>.npy        optional; float16 (float32 for M-CLIP text towers)
    metadata/metadata_<N>.parquet    image_path, caption, then flattened metadata columns

``<N>`` is the partition number zero-padded to ``int(log10(partition_count)) + 1`` digits. The
id of a vector is its row in the concatenation of the files **sorted by name**, as
``clip back`` (``sorted(glob("*.parquet"))``) and autofaiss' embedding reader (``list.sort()`` of
the paths) define it, so unpadded names (``_10`` before ``_2``) are read in that same order.
``image_path`` is a file path, or the WebDataset ``__key__`` of the sample. LAION's released
embedding folders use the same layout.
"""

from __future__ import annotations

import math
import re
from functools import partial
from pathlib import Path
from typing import IO, TYPE_CHECKING

import numpy as np

from mclip_explorer._files import atomic_write
from mclip_explorer.errors import SourceError
from mclip_explorer.interop.embeddings import Embeddings, concat, load_matrix, read_table

if TYPE_CHECKING:
    import pandas as pd

IMAGE_DIR, TEXT_DIR, META_DIR = "img_emb", "text_emb", "metadata"
ROWS_PER_FILE = 10**6  # clip-retrieval's default write_batch_size
_NAME = re.compile(r"^(img_emb|text_emb|metadata)_(.+)\.(npy|parquet)$")


def is_folder(path: Path) -> bool:
    """Whether ``path`` looks like a clip-retrieval embedding folder."""
    return (path / IMAGE_DIR).is_dir() and any((path / IMAGE_DIR).glob("img_emb_*.npy"))


def partition_names(count: int) -> list[str]:
    """The ``<N>`` of each of ``count`` partitions, zero-padded as clip-retrieval pads them."""
    width = int(math.log10(count)) + 1
    return [str(i).zfill(width) for i in range(count)]


def _suffixes(folder: Path, prefix: str, ext: str) -> dict[str | int, Path]:
    """Files ``<prefix>_<N>.<ext>`` by partition number (``0``, ``00`` and ``0000`` are one)."""
    found: dict[str | int, Path] = {}
    for path in folder.glob(f"{prefix}_*.{ext}"):
        match = _NAME.match(path.name)
        if match and match.group(1) == prefix:
            suffix = match.group(2)
            key: str | int = int(suffix) if suffix.isdigit() else suffix
            if key in found:
                raise SourceError(f"{folder}: {found[key].name} and {path.name} are the same "
                                  "partition")
            found[key] = path
    return found


def read_folder(folder: Path) -> Embeddings:
    """Read a clip-retrieval output folder; vectors stay memory-mapped (one file) or are joined.

    Raises:
        SourceError: No image embeddings, a metadata or text file missing for a partition, or
            row counts that disagree between the files of one partition.
    """
    import pandas as pd

    images = _suffixes(folder / IMAGE_DIR, "img_emb", "npy")
    if not images:
        raise SourceError(f"{folder}: no {IMAGE_DIR}/img_emb_<N>.npy files")
    metas = _suffixes(folder / META_DIR, "metadata", "parquet")
    texts = _suffixes(folder / TEXT_DIR, "text_emb", "npy")
    # Sorted by file name, exactly as clip-retrieval's readers order them (see module doc).
    # Metadata and text files are matched by partition number, which is what clip-retrieval's
    # pairing of the two sorted lists does when both are padded alike (LAION's releases pad the
    # metadata names differently).
    order = sorted(images, key=lambda n: images[n].name)
    missing = [images[n].name for n in order if n not in metas]
    if missing:
        raise SourceError(f"{folder}: no metadata/metadata_<N>.parquet for {missing[:3]}")
    use_text = bool(texts) and all(n in texts for n in order)
    matrices, text_matrices, tables, files = [], [], [], []
    for name in order:
        matrix = load_matrix(images[name])
        table = read_table(metas[name])
        if len(table) != len(matrix):
            raise SourceError(f"{images[name]} has {len(matrix)} rows but {metas[name].name} "
                              f"has {len(table)}")
        matrices.append(matrix)
        tables.append(table)
        files += [str(images[name]), str(metas[name])]
        if use_text:
            text = load_matrix(texts[name])
            if text.shape != matrix.shape:
                raise SourceError(f"{texts[name]} has shape {text.shape}, {images[name].name} "
                                  f"{matrix.shape}")
            text_matrices.append(text)
            files.append(str(texts[name]))
    metadata = pd.concat(tables, ignore_index=True)
    text_all = concat(text_matrices, str(folder)) if use_text else None
    return Embeddings(concat(matrices, str(folder)), metadata, text_all, "clip-retrieval", files,
                      folder).check(str(folder))


def write_folder(folder: Path, images: np.ndarray, metadata: pd.DataFrame,
                 texts: np.ndarray | None = None, *,
                 rows_per_file: int = ROWS_PER_FILE) -> list[Path]:
    """Write the layout into ``folder`` (which must exist and be empty).

    Args:
        folder: Destination folder; each file is written atomically and verified (the caller
            makes the whole folder appear at once by renaming it).
        images: ``(n, dim)`` unit image embeddings; written as float16.
        metadata: ``n`` rows; ``image_path`` and ``caption`` first when present.
        texts: Optional ``(n, dim)`` unit text embeddings aligned with ``images`` (float16).
        rows_per_file: Rows per partition (clip-retrieval's ``write_batch_size``).

    Returns:
        The files written.
    """
    if len(images) != len(metadata) or (texts is not None and texts.shape != images.shape):
        raise ValueError("images, texts and metadata must have the same number of rows")
    count = max(1, math.ceil(len(images) / rows_per_file))
    first = [c for c in ("image_path", "caption") if c in metadata.columns]
    metadata = metadata[first + [c for c in metadata.columns if c not in first]]
    written = []
    for part, name in enumerate(partition_names(count)):
        rows = slice(part * rows_per_file, (part + 1) * rows_per_file)
        targets = [(folder / IMAGE_DIR / f"img_emb_{name}.npy", images[rows])]
        if texts is not None:
            targets.append((folder / TEXT_DIR / f"text_emb_{name}.npy", texts[rows]))
        for path, block in targets:
            half = np.ascontiguousarray(block, dtype=np.float16)
            atomic_write(path, partial(_save_npy, half))
            written.append(path)
        meta_path = folder / META_DIR / f"metadata_{name}.parquet"
        table = metadata.iloc[rows].reset_index(drop=True)
        atomic_write(meta_path, partial(_save_parquet, table))
        written.append(meta_path)
    return written


def _save_npy(array: np.ndarray, handle: IO[bytes]) -> None:
    np.save(handle, array, allow_pickle=False)


def _save_parquet(table: pd.DataFrame, handle: IO[bytes]) -> None:
    table.to_parquet(handle, index=False)
