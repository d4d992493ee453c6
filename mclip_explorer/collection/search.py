"""Query parsing, metadata filters and result tables for :meth:`Collection.search`.

A query is text (``str``), an image (``pathlib.Path``, a ``str`` naming an existing image file,
encoded ``bytes`` or a PIL image), an item id (``int``) or a vector (1-D array of ``dim``). A
list of queries is one batch: texts go through the text tower together, images together.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.collection import columns
from mclip_explorer.images import is_image_path
from mclip_explorer.models.base import check_unicode, normalize

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.models.base import Encoder



def is_batch(query: Any) -> bool:
    """Whether ``query`` is a list of queries rather than one (a 2-D array is a batch too)."""
    if isinstance(query, np.ndarray):
        return query.ndim == 2
    return isinstance(query, (list, tuple))


def classify(query: Any) -> str:
    """``"text"``, ``"image"``, ``"id"`` or ``"vector"``; raises TypeError for anything else."""
    from PIL import Image

    if isinstance(query, (bool, np.bool_)):
        raise TypeError("a query cannot be a bool")
    if isinstance(query, (int, np.integer)):
        return "id"
    if isinstance(query, str):
        path = Path(query).expanduser()
        # A string is text unless it names an image file that exists ("cat.jpg" stays text
        # when there is no such file).
        if len(query) < 4096 and is_image_path(path) and path.is_file():
            return "image"
        return "text"
    if isinstance(query, (Path, bytes, bytearray, memoryview, Image.Image)):
        return "image"
    if isinstance(query, np.ndarray) and query.ndim == 1:
        return "vector"
    raise TypeError(
        f"unsupported query type {type(query).__name__}: give text, an image (path, PIL, bytes), "
        "an item id or a 1-D vector"
    )


def label(query: Any, kind: str, position: int) -> str:
    """A short printable name of a query for the ``query`` column of batch results."""
    if kind == "text":
        return str(query)
    if kind == "id":
        return f"id {int(query)}"
    if kind == "image" and isinstance(query, (str, Path)):
        return str(query)
    return f"{kind} #{position}"


def encode_queries(
    queries: list[Any],
    kinds: list[str],
    *,
    encoder: Callable[[], Encoder],
    vector_of_id: Callable[[int], np.ndarray],
    dim: int,
    lang: str | None = None,
) -> np.ndarray:
    """Encode a batch of classified queries into ``(n, dim)`` unit float32 rows.

    ``lang`` names the text queries' language for models that need it (NLLB-CLIP); ``None``
    detects it per text.
    """
    out = np.empty((len(queries), dim), dtype=np.float32)
    texts = [i for i, kind in enumerate(kinds) if kind == "text"]
    images = [i for i, kind in enumerate(kinds) if kind == "image"]
    if texts:
        for i in texts:
            check_unicode(queries[i], "the query" if len(queries) == 1 else f"query {i}")
        out[texts] = encoder().encode_text([queries[i] for i in texts], lang=lang)
    if images:
        inputs = [str(Path(queries[i]).expanduser()) if isinstance(queries[i], (str, Path))
                  else queries[i] for i in images]
        out[images] = encoder().encode_images(inputs, errors="raise")
    for i, kind in enumerate(kinds):
        if kind == "id":
            out[i] = vector_of_id(int(queries[i]))
        elif kind == "vector":
            vector = np.asarray(queries[i], dtype=np.float32)
            if vector.shape != (dim,):
                raise ValueError(f"query vector must have shape ({dim},), got {vector.shape}")
            if not np.isfinite(vector).all() or not np.any(vector):
                raise ValueError("query vector must be finite and non-zero")
            out[i] = normalize(vector[None, :])[0]
    return out


def vector_of_id(items: pd.DataFrame, embeddings: np.ndarray, item_id: int) -> np.ndarray:
    """The stored embedding of item ``item_id`` as float32 (an id query).

    Raises:
        KeyError: No such item.
        ValueError: The item was removed or failed to encode, so it has no embedding.
    """
    if not 0 <= item_id < len(items):
        raise KeyError(f"no item with id {item_id} (collection has {len(items)} items)")
    row = items.iloc[item_id]
    if row["deleted"] or isinstance(row["error"], str):
        raise ValueError(f"item {item_id} has no embedding (removed or failed)")
    return np.asarray(embeddings[item_id], dtype=np.float32)


def where_mask(items: pd.DataFrame, where: Any) -> np.ndarray:
    """Boolean mask over ``items`` rows for a ``where`` filter.

    Args:
        items: The collection's items table.
        where: ``None``; a dict ``{column: value | list of values | callable(Series) -> mask}``;
            a callable ``items -> mask``; a pandas ``DataFrame.query`` string; or a boolean
            array/Series with one entry per item.

    Raises:
        KeyError: A dict key that is not a column (the message lists the columns).
        ValueError: A mask of the wrong length or type.
    """
    import pandas as pd

    n = len(items)
    if where is None:
        return np.ones(n, dtype=bool)
    if isinstance(where, Mapping):
        mask = np.ones(n, dtype=bool)
        for column, condition in where.items():
            if column not in items.columns:
                raise KeyError(f"where: no column {column!r}; columns are "
                               f"{', '.join(map(str, items.columns))}")
            values = items[column]
            if callable(condition):
                part = condition(values)
            elif isinstance(condition, (list, tuple, set, frozenset, np.ndarray, pd.Series)):
                part = values.isin(list(condition))
            else:
                part = values == condition
            mask &= _as_mask(part, n, f"where[{column!r}]")
        return mask
    if isinstance(where, str):
        try:
            selected = items.query(where)
        except Exception as exc:  # noqa: BLE001 - pandas raises many types for a bad expression
            raise ValueError(f"where: cannot evaluate {where!r}: {exc}") from None
        return items.index.isin(selected.index)
    if callable(where):
        return _as_mask(where(items), n, "where(items)")
    return _as_mask(where, n, "where")


def _as_mask(value: Any, n: int, what: str) -> np.ndarray:
    mask = np.asarray(value)
    if mask.dtype != bool or mask.shape != (n,):
        raise ValueError(f"{what} must give one bool per item ({n}), got {mask.dtype} "
                         f"{mask.shape}")
    return mask.copy()


class HitColumns:
    """The item columns that search hits show, pulled out of the items table once.

    A collection keeps one per kind until its next commit, so a query only gathers its ``k``
    rows from plain arrays; at 100k items, building the table per query through pandas
    indexing cost several times the graph search itself (bench/search.py).
    """

    def __init__(self, items: pd.DataFrame, kind: str) -> None:
        shown = ["title"] if kind == "image" else ["text", "lang"]
        self.names = [*shown, *columns.metadata_columns(items.columns)]
        self.arrays = [_values(items[column]) for column in self.names]
        self.path = items["path"].to_numpy()


def _values(column: pd.Series) -> Any:
    """A column's backing array: a NumPy array, or the extension array of an extension dtype."""
    import pandas as pd

    values = column.array
    return values.to_numpy() if isinstance(values, pd.arrays.NumpyExtensionArray) else values


def result_frame(
    hits: HitColumns,
    coords: np.ndarray,
    ids: np.ndarray,
    scores: np.ndarray,
    labels: list[str] | None,
) -> pd.DataFrame:
    """Hits as a table: (query,) rank, id, path, score, x, y, then the items' metadata.

    Built once, from arrays (the gathered columns keep the items' dtypes; ``query`` and ``path``
    get the dtype pandas infers for them, as a frame built from a dict would).
    """
    import pandas as pd

    query_rows, rank_cols = np.nonzero(ids >= 0)
    hit_ids = ids[query_rows, rank_cols].astype(np.int64)
    names: list[str] = []
    arrays: list[Any] = []
    if labels is not None:
        names.append("query")
        arrays.append(pd.Series([labels[q] for q in query_rows], dtype=None).array)
    names += ["rank", "id", "path", "score", "x", "y", *hits.names]
    arrays += [
        (rank_cols + 1).astype(np.int64),
        hit_ids,
        pd.Series(hits.path[hit_ids]).array,
        scores[query_rows, rank_cols].astype(np.float32),
        coords[hit_ids, 0],
        coords[hit_ids, 1],
    ]
    for values in hits.arrays:
        arrays.append(values[hit_ids] if isinstance(values, np.ndarray) else values.take(hit_ids))
    # DataFrame(dict) would re-infer every column and copy; the arrays are final already.
    frame: pd.DataFrame = pd.DataFrame._from_arrays(  # type: ignore[attr-defined]
        arrays, columns=pd.Index(names), index=pd.RangeIndex(len(hit_ids)),
        verify_integrity=False)
    return frame


def add_model_scores(frame: pd.DataFrame, ids: np.ndarray, queries: list[Any], kinds: list[str],
                     encoder: Encoder, lang: str | None, kind: str) -> None:
    """Add what the model itself says about text-query hits, in place.

    * ``probability`` (SigLIP models, image hits): the model's sigmoid probability that the
      image matches the text (:meth:`Encoder.score`); ``score`` stays the cosine.
    * ``query_lang`` (models that need the language, NLLB-CLIP): the FLORES-200 code the query
      was tokenized with, detected or given as ``lang``.
    """
    query_rows = np.nonzero(ids >= 0)[0]
    text = np.array([kinds[q] == "text" for q in query_rows], dtype=bool)
    after_score = list(frame.columns).index("score") + 1
    if encoder.score_kind == "sigmoid" and kind == "image":
        probability = np.full(len(frame), np.nan, dtype=np.float32)
        probability[text] = encoder.score(frame["score"].to_numpy()[text])
        frame.insert(after_score, "probability", probability)
    if encoder.needs_language:
        positions = [i for i, k in enumerate(kinds) if k == "text"]
        found = dict(zip(positions, encoder.text_languages([queries[i] for i in positions], lang),
                         strict=True))
        frame.insert(after_score, "query_lang",
                     [found.get(int(q)) for q in query_rows])
