"""Wire formats of the explorer widget: typed binary buffers in, typed binary buffers out.

Arrays cross to the browser as raw little-endian buffers (``memoryview``), never as JSON number
lists or base64; the front end reads them as TypedArrays without a copy. Everything the front end
sends back is parsed here and checked before the kernel acts on it.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.collection import columns
from mclip_explorer.errors import MclipExplorerError

MAX_CATEGORIES = 16  # colours a legend can tell apart; the rest are pooled into "other"
NUMERIC_BINS = 8
MAX_IDS = 50_000_000
OTHER = "other"
MISSING = "(none)"


class WireError(MclipExplorerError, ValueError):
    """A message from the front end that is malformed or names items that do not exist."""


def to_buffer(array: np.ndarray, dtype: str) -> memoryview:
    """A C-contiguous little-endian ``memoryview`` of ``array`` cast to ``dtype``."""
    out = np.ascontiguousarray(array, dtype=np.dtype(dtype).newbyteorder("<"))
    return memoryview(out.data).cast("B") if out.size else memoryview(b"")  # (0, 2) cannot cast


def _ids_to_json(ids: np.ndarray | None, _widget: object = None) -> memoryview:
    return to_buffer(np.asarray([] if ids is None else ids), "uint32")


def _ids_from_json(data: Any, _widget: object = None) -> np.ndarray:
    return ids_from_buffer(data)


# Attach with ``.tag(sync=True, **IDS_SERIALIZATION)`` to an id-array trait.
IDS_SERIALIZATION = {"to_json": _ids_to_json, "from_json": _ids_from_json}


def ids_from_buffer(data: Any) -> np.ndarray:
    """Parse a uint32 buffer from the front end into an int64 id array."""
    if data is None:
        return np.empty(0, dtype=np.int64)
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise WireError(f"ids must arrive as a binary uint32 buffer, got {type(data).__name__}")
    raw = memoryview(data).cast("B")
    if raw.nbytes % 4:
        raise WireError(f"an id buffer of {raw.nbytes} bytes is not a whole number of uint32")
    if raw.nbytes // 4 > MAX_IDS:
        raise WireError(f"too many ids in one message ({raw.nbytes // 4})")
    return np.frombuffer(raw, dtype="<u4").astype(np.int64)


def check_ids(ids: Any, items: pd.DataFrame, *, kind: str | None = None) -> np.ndarray:
    """Validate ids against a collection's items: in range, not deleted, optionally of one kind.

    Args:
        ids: Integers (a sequence, array, or a DataFrame with an ``id`` column).
        items: ``Collection.items``.
        kind: If given, every id must be an item of this kind (``"image"`` or ``"text"``).

    Returns:
        The ids as a unique-preserving int64 array in the given order.

    Raises:
        WireError: Naming the first offending id and why.
    """
    if isinstance(ids, pd.DataFrame):
        if "id" not in ids.columns:
            raise WireError("a DataFrame of items needs an 'id' column")
        ids = ids["id"].to_numpy()
    array = np.asarray(ids if ids is not None else [])
    if (array.size and not np.issubdtype(array.dtype, np.integer)
            and (array.dtype == object or not np.all(np.mod(array, 1) == 0))):
        raise WireError(f"item ids must be integers, got {array.dtype} values")
    array = array.astype(np.int64).ravel()
    bad = array[(array < 0) | (array >= len(items))]
    if bad.size:
        raise WireError(f"no item with id {int(bad[0])} (the collection has {len(items)} items)")
    if "deleted" in items.columns and array.size:
        gone = array[items["deleted"].to_numpy(dtype=bool)[array]]
        if gone.size:
            raise WireError(f"item {int(gone[0])} was removed from the collection")
    if kind is not None and array.size:
        wrong = array[items["kind"].to_numpy()[array] != kind]
        if wrong.size:
            raise WireError(f"item {int(wrong[0])} is not an {kind} item")
    _, first = np.unique(array, return_index=True)
    return array[np.sort(first)]


def encode_column(values: pd.Series) -> tuple[np.ndarray, list[str]]:
    """Encode a metadata column as small-integer category codes plus their legend labels.

    Few distinct values become one category each (the most frequent first, the rest pooled into
    "other"); a numeric column with many values is cut into quantile bins so the legend stays
    short. Missing values get their own "(none)" category.

    Returns:
        ``(codes uint8, labels)`` with ``labels[codes[i]]`` the legend entry of row ``i``.
    """
    present = values.notna().to_numpy()
    numeric = pd.api.types.is_numeric_dtype(values) and not pd.api.types.is_bool_dtype(values)
    if numeric and values[present].nunique() > MAX_CATEGORIES:
        return _bin_numeric(values.astype(float), present)
    text = _as_text(values, present)
    counts = text.value_counts(dropna=True)
    if isinstance(values.dtype, pd.CategoricalDtype) and len(counts) <= MAX_CATEGORIES:
        # A categorical's order means something (zero-shot classes as given): keep it.
        counts = counts.reindex([c for c in map(str, values.cat.categories) if c in counts.index])
    keep = list(counts.index[: MAX_CATEGORIES - 1 if len(counts) > MAX_CATEGORIES else None])
    labels = [str(v) for v in keep]
    # Vectorised (no per-row Python: a 10M-point map recolours in seconds, not minutes).
    if isinstance(text.dtype, pd.CategoricalDtype):
        # One lookup per row through a table of the categories (missing: category code -1).
        where = {label: i for i, label in enumerate(keep)}
        table = np.array([-2, *(where.get(c, -1) for c in text.cat.categories)], np.int16)
        codes = table[text.cat.codes.to_numpy().astype(np.intp) + 1]
    else:
        # Values outside `keep` become missing first (code -1): pandas 4 refuses them as values.
        codes = pd.Categorical(text.where(text.isin(keep)), categories=keep).codes.astype(
            np.int16)
        codes[~present] = -2
    if (codes == -1).any():
        labels.append(OTHER)
        codes[codes == -1] = len(labels) - 1
    if (codes == -2).any():
        labels.append(MISSING)
        codes[codes == -2] = len(labels) - 1
    return codes.astype(np.uint8), labels


def _as_text(values: pd.Series, present: np.ndarray) -> pd.Series:
    if isinstance(values.dtype, pd.CategoricalDtype):
        names = [str(c) for c in values.cat.categories]
        if len(set(names)) == len(names):  # relabel the categories, not every row
            return values.cat.rename_categories(names)
    return values.astype("string").where(present, None)


def _bin_numeric(values: pd.Series, present: np.ndarray) -> tuple[np.ndarray, list[str]]:
    edges = np.unique(np.nanquantile(values[present], np.linspace(0, 1, NUMERIC_BINS + 1)))
    inner = np.clip(np.searchsorted(edges, values.to_numpy(), side="right") - 1, 0, len(edges) - 2)
    labels = [f"{_fmt(lo)} to {_fmt(hi)}" for lo, hi in itertools.pairwise(edges)]
    codes = inner.astype(np.uint8)
    if not present.all():
        labels.append(MISSING)
        codes[~present] = len(labels) - 1
    return codes, labels


def _fmt(value: float) -> str:
    return f"{value:.3g}"


def colour_columns(items: pd.DataFrame) -> list[str]:
    """Columns worth colouring the map by: kind, language, size and every user metadata column."""
    return [c for c in items.columns if c in columns.FACET_COLUMNS or c not in columns.COLUMNS]


def text_field(content: dict[str, Any], key: str, *, max_length: int = 2000) -> str:
    """A string field of a front-end message, checked for type and length."""
    value = content.get(key)
    if not isinstance(value, str):
        raise WireError(f"message field {key!r} must be a string, got {type(value).__name__}")
    if len(value) > max_length:
        raise WireError(f"message field {key!r} is longer than {max_length} characters")
    return value


def int_field(content: dict[str, Any], key: str, lo: int, hi: int, default: int) -> int:
    """An integer field of a front-end message within ``[lo, hi]`` (``default`` if absent)."""
    value = content.get(key, default)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise WireError(f"message field {key!r} must be an integer in [{lo}, {hi}], got {value!r}")
    return value


def as_strings(values: Sequence[Any]) -> list[str]:
    """Display strings for a column (``""`` for missing values)."""
    return ["" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v) for v in values]

