"""``Collection.from_embeddings``: a collection from vectors made elsewhere, without re-encoding.

The readers live in :mod:`mclip_explorer.interop`; this module checks that the query model can
answer in the space of those vectors, turns the rows into collection items and hands them to the
same index-and-map path as :meth:`Collection.build`. The manifest's ``model`` is the encoder that
answers queries (and encodes later additions); ``vectors`` records what made the stored vectors.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from mclip_explorer.collection import store
from mclip_explorer.collection._loading import load_encoder
from mclip_explorer.collection.layout import MAP_SAMPLE
from mclip_explorer.collection.sources.local import RESERVED
from mclip_explorer.errors import ModelMismatchError
from mclip_explorer.interop.embeddings import Embeddings
from mclip_explorer.interop.sources import read_embeddings

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.models.base import Encoder

C = TypeVar("C")
C_co = TypeVar("C_co", covariant=True)


class Assembles(Protocol[C_co]):
    """The collection class as this module uses it (``Collection`` provides it; mypy checks).

    A protocol rather than the class: ``core`` calls this module, so naming ``core`` here would
    close an import cycle.
    """

    def _assemble(self, folder: Path, frame: pd.DataFrame, vectors: np.ndarray,
                  encoder: Encoder, *, device: str | None, precision: str, map_method: str,
                  progress: bool, map_sample: int = ...,
                  extra: dict[str, Any] | None = None) -> C_co: ...

CHUNK = 65536  # rows normalised at a time: float32 copies stay small at any N
PATH_COLUMNS = ("image_path", "path", "filepath", "file_path")
TEXT_COLUMNS = ("caption", "text", "TEXT")
URL_PREFIXES = ("http://", "https://", "s3://", "gs://", "hf://")
_BAD_VECTOR = "no usable embedding (NaN, infinite or zero vector)"


def from_embeddings(cls: Assembles[C], source: Any, *, model: str | Encoder, out: str | Path,
                    vectors_model: str | None, column: str | None, texts: bool,
                    device: str | None, progress: bool, precision: str,
                    map_method: str, map_sample: int = MAP_SAMPLE) -> C:
    """Build a collection at ``out`` from precomputed embeddings.

    Args:
        cls: The Collection class.
        source: A clip-retrieval or LAION embedding folder, a folder of ``.npy`` + parquet pairs,
            a parquet file with an embedding column, an ``(npy, parquet)`` pair or a DataFrame.
        model: The encoder whose text tower answers queries: a registry name or an Encoder. Its
            image tower must be the one that made the vectors (it encodes later additions).
        out: The collection folder.
        vectors_model: What made the vectors, if known: a registry name or an image tower such
            as ``"ViT-L-14"``; checked against ``model``'s image tower and recorded.
        column: Embedding column of a parquet file or DataFrame.
        texts: Also import clip-retrieval's caption embeddings (``text_emb``) as text items.
        device: Device for a model given by name.
        progress: Show progress bars.
        precision: Stored precision, ``"float16"`` or ``"float32"``.
        map_method: ``"auto"``, ``"umap"`` or ``"pca"``.
        map_sample: Above this many images UMAP is fitted on a seeded sample of this size
            and the other images are placed from their nearest sampled images.

    Raises:
        ModelMismatchError: The vectors' size differs from the model's, or ``vectors_model``
            names another image tower than ``model``'s.
        SourceError: The source is missing or malformed.
    """
    if precision not in ("float16", "float32"):
        raise ValueError(f"precision must be 'float16' or 'float32', got {precision!r}")
    store.prepare_out(out, create=False)
    data = read_embeddings(source, column=column)
    what = str(source) if isinstance(source, (str, Path)) else type(source).__name__
    if isinstance(model, str):  # a registry model fails here, before its weights load
        check_pairing(model, _registry_dim(model), data.dim, vectors_model, what)
    encoder = load_encoder(model, device)
    check_pairing(encoder.name, encoder.dim, data.dim, vectors_model, what)
    folder = store.prepare_out(out)
    frame, vectors = items_of(data, texts=texts, folder=folder,
                              dtype=np.float16 if precision == "float16" else np.float32)
    record = {"made_by": vectors_model or "not given", "queries_by": encoder.name,
              "format": data.fmt, "rows": len(data.images), "files": len(data.files),
              "source": str(Path(source).expanduser().resolve()) if isinstance(
                  source, (str, Path)) else type(source).__name__}
    del data  # unmaps the source files: the build reads the normalised copy from here on
    return cls._assemble(folder, frame, vectors, encoder, device=device, precision=precision,
                         map_method=map_method, progress=progress, map_sample=map_sample,
                         extra={"vectors": record})


def check_pairing(model: str, model_dim: int | None, dim: int, vectors_model: str | None,
                  what: str) -> None:
    """Refuse a query model that cannot answer in the space of the vectors.

    Args:
        model: Name of the query model.
        model_dim: Its embedding size (None: unknown yet, not checked).
        dim: Size of the imported vectors.
        vectors_model: What made the vectors, if given.
        what: The source, for the message.

    Raises:
        ModelMismatchError: Another size, or another image tower than ``vectors_model``.
    """
    made = f" made by {vectors_model!r}" if vectors_model else ""
    if model_dim is not None and model_dim != dim:
        raise ModelMismatchError(
            f"{what} holds {dim}-d embeddings{made}, but model {model!r} answers queries with "
            f"{model_dim}-d vectors; pick the model whose text tower was trained against the "
            "image tower that made them")
    if vectors_model is None or _same_tower(model, vectors_model):
        return
    raise ModelMismatchError(
        f"{what} holds embeddings{made}, but model {model!r} pairs its text tower with "
        f"{_tower(model) or 'another image tower'}; its queries would not land in the space "
        "of these vectors")


def _registry_dim(name: str) -> int | None:
    from mclip_explorer.models.registry import REGISTRY

    spec = REGISTRY.get(name)
    return None if spec is None else spec.dim


def _tower(name: str) -> str | None:
    from mclip_explorer.models.registry import REGISTRY

    spec = REGISTRY.get(name)
    return None if spec is None else spec.image_tower


def _canonical(name: str) -> str:
    return name.lower().replace("/", "-").replace("_", "-").removesuffix("-quickgelu")


def _same_tower(model: str, vectors_model: str) -> bool:
    """Whether ``vectors_model`` (a registry name or an image tower) is ``model``'s image tower.

    A bare architecture (``"ViT-L/14"``, ``"ViT-L-14 (openai)"``) matches by architecture only:
    which pretrained weights made the vectors is the user's statement, recorded as given.
    """
    from mclip_explorer.models.registry import REGISTRY

    if _canonical(model) == _canonical(vectors_model):
        return True
    spec, other = REGISTRY.get(model), REGISTRY.get(vectors_model)
    if spec is None:
        return False
    if other is not None:
        return (other.image_repo, other.image_arch) == (spec.image_repo, spec.image_arch)
    wanted = _canonical(vectors_model.split(" ")[0])
    return wanted in {_canonical(spec.image_repo), _canonical(spec.image_arch or spec.image_repo)}


def items_of(data: Embeddings, *, texts: bool, folder: Path,
             dtype: Any = "float32") -> tuple[pd.DataFrame, np.ndarray]:
    """Item rows and unit vectors (NaN rows for unusable vectors) of imported data.

    The vectors (``dtype``) are a scratch memory map in ``folder`` (see
    :func:`.store.scratch_rows`), filled a chunk at a time: a memory-mapped source is never
    copied into memory whole.
    """
    import pandas as pd

    meta = data.metadata.reset_index(drop=True)
    n = len(meta)
    text_column = next((c for c in TEXT_COLUMNS if c in meta.columns), None)
    path_column = next((c for c in PATH_COLUMNS if c in meta.columns), None)
    keep = np.zeros(0, np.int64)  # the caption vectors imported as text items
    if texts and data.texts is not None and text_column is not None:
        usable = ~_unit_rows_into(data.texts, None, None)  # a first pass: only the check
        keep = np.flatnonzero(usable & meta[text_column].notna().to_numpy())
    vectors = store.scratch_rows(folder, n + len(keep), data.dim, dtype)
    bad = _unit_rows_into(data.images, None, vectors[:n])
    if len(keep) and data.texts is not None:
        _unit_rows_into(data.texts, keep, vectors[n:])
    captions = ([None if pd.isna(v) else str(v) for v in meta[text_column]] if text_column
                else [None] * n)
    frame = pd.DataFrame({
        "kind": "image",
        "path": [_local_file(v, data.root) for v in meta[path_column]] if path_column
        else [None] * n,
        "text": captions,
        "error": [_BAD_VECTOR if b else None for b in bad],
    })
    rest = meta.drop(columns=[c for c in (text_column,) if c]).rename(
        columns={c: f"{c}_source" for c in meta.columns if c in RESERVED})
    if path_column == "path":
        rest = rest.rename(columns={"path_source": "image_path"})
    for name in rest.columns:  # integers stay integers beside the text rows' missing values
        if pd.api.types.is_integer_dtype(rest[name]) and not pd.api.types.is_bool_dtype(
                rest[name]):
            rest[name] = rest[name].astype("Int64")
    frame = pd.concat([frame, rest.reset_index(drop=True)], axis=1)
    parts = [frame]
    if len(keep):
        parts.append(pd.DataFrame({
            "kind": "text", "path": None, "text": [captions[i] for i in keep], "error": None,
            "image_id": pd.array(keep, dtype="Int64")}))
    table = pd.concat(parts, ignore_index=True) if len(parts) > 1 else frame
    return table, vectors


def _unit_rows_into(matrix: np.ndarray, rows: np.ndarray | None,
                    out: np.ndarray | None) -> np.ndarray:
    """Write ``matrix[rows]`` (None: all rows) L2-normalised into ``out``, a chunk at a time.

    Returns:
        Which rows were unusable (NaN, infinite or zero); they are written as NaN. With
        ``out=None`` only this is computed.
    """
    count = len(matrix) if rows is None else len(rows)
    bad = np.zeros(count, dtype=bool)
    for start in range(0, count, CHUNK):
        picked = slice(start, start + CHUNK) if rows is None else rows[start:start + CHUNK]
        block = np.array(matrix[picked], dtype=np.float32)
        norms = np.linalg.norm(block, axis=1)
        wrong = ~np.isfinite(norms) | (norms == 0)
        bad[start:start + CHUNK] = wrong
        if out is not None:
            block /= np.where(wrong, 1.0, norms)[:, None]
            block[wrong] = np.nan
            out[start:start + CHUNK] = block
    return bad


def _local_file(value: Any, root: Path | None) -> str | None:
    """An existing local file named by ``value`` (absolute, or relative to the source), else None.

    URLs are never fetched and WebDataset keys name no file: those items get the placeholder.
    """
    if not isinstance(value, str) or not value or value.startswith(URL_PREFIXES):
        return None
    if value.startswith("file://"):  # a local URL is a path
        from urllib.parse import unquote, urlparse

        value = unquote(urlparse(value).path)
    candidate = Path(value).expanduser()
    tries = [candidate] if candidate.is_absolute() else (
        [root / candidate, root.parent / candidate] if root is not None else [])
    for path in tries:
        try:
            if path.is_file():
                return str(path.resolve())
        except OSError:  # a name too long for the file system is no file either
            continue
    return None
