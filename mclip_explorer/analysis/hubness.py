"""Hubness: items that turn up in the top-k of far too many queries.

In high-dimensional spaces a few points (hubs) are nearest neighbours of a large share of all
queries while many others (anti-hubs) are never retrieved (Radovanović et al., JMLR 2010). For a
set of queries, the k-occurrence ``N_k(x)`` of an item counts the queries whose top-k holds it;
its mean is ``k * queries / items`` and its skewness measures hubness (0 for a fair space).

Hub rule: in a fair space each of ``Q`` queries would pick an item with probability ``k / n``,
so ``N_k`` would follow Binomial(Q, k/n). An item is a hub when a count as high as its own has a
probability below ``alpha / n`` under that model (Bonferroni over the ``n`` items). Unlike a
fixed "twice the mean", this stays meaningful when a handful of queries meets many items.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeAlias, Union

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import (
    as_ids,
    as_unit,
    check_k,
    check_kind,
    encode_texts,
    item_vectors,
    top_k,
)

ALL = "all"
Queries: TypeAlias = Union[pd.DataFrame, Mapping[str, Sequence[str]], Sequence[str], None]


@dataclass(frozen=True)
class Hubness:
    """k-occurrence of every searched item, overall and per query language.

    Attributes:
        occurrence: Indexed by item id; column ``all`` and one column per language, each the
            number of that language's queries whose top-k holds the item.
        summary: Indexed by ``all`` then each language: ``queries``, ``mean`` (expected
            k-occurrence), ``skew``, ``hubs`` (count) and ``anti_hubs`` (share of items never
            retrieved).
        hubs: ``lang``, ``id``, ``k_occurrence``, ``ratio`` (to the mean) and ``p_value`` (of
            so high a count in a fair space): the hubs of every column, biggest first.
        queries: The queries: ``text`` (None for vector queries) and ``lang``.
        top_ids: ``(n_queries, k)`` ids of each query's top-k.
        k: The k used.
    """

    occurrence: pd.DataFrame
    summary: pd.DataFrame
    hubs: pd.DataFrame
    queries: pd.DataFrame
    top_ids: np.ndarray
    k: int

    def queries_of(self, item_id: int) -> pd.DataFrame:
        """The queries whose top-k holds ``item_id`` (what a click on a hub highlights)."""
        if item_id not in self.occurrence.index:
            raise KeyError(f"item {item_id} was not among the searched items")
        found: pd.DataFrame = self.queries[(self.top_ids == item_id).any(axis=1)]
        return found


def hubness(
    coll: Any,
    queries: Queries = None,
    *,
    k: int = 10,
    kind: str = "image",
    alpha: float = 0.05,
) -> Hubness:
    """Measure how unevenly a set of queries retrieves the items of a collection.

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        queries: The queries: ``None`` uses the collection's own text items (with their
            ``lang``); a DataFrame with a ``text`` and optionally a ``lang`` column; a mapping
            language -> list of texts; or a plain list of texts (language ``"?"``).
        k: Top-k per query.
        kind: The items searched: ``"image"`` (default) or ``"text"``.
        alpha: Significance of the hub rule (module docstring), corrected for the item count.

    Returns:
        A :class:`Hubness`.
    """
    check_kind(kind)
    ids, vectors = item_vectors(coll, kind)
    if queries is None:
        text_ids, text_vectors = item_vectors(coll, "text")
        if len(text_ids) == 0:
            raise ValueError("the collection has no text items; pass queries=[...] explicitly")
        items = coll.items
        frame = pd.DataFrame(
            {
                "text": items["text"].to_numpy()[text_ids],
                "lang": items["lang"].fillna("?").to_numpy()[text_ids],
            }
        )
        query_vectors = text_vectors
    else:
        frame = _query_frame(queries)
        query_vectors = encode_texts(coll, frame["text"].tolist())
    return hubness_from_vectors(
        query_vectors,
        frame["lang"].tolist(),
        ids,
        vectors,
        k=k,
        alpha=alpha,
        texts=frame["text"].tolist(),
    )


def hubness_from_vectors(
    query_vectors: Any,
    langs: Sequence[str],
    ids: Any,
    vectors: Any,
    *,
    k: int = 10,
    alpha: float = 0.05,
    texts: Sequence[str | None] | None = None,
) -> Hubness:
    """The array-level core of :func:`hubness`.

    Args:
        query_vectors: ``(q, dim)`` query embeddings.
        langs: Language of each query.
        ids: ``(n,)`` ids of the searched items.
        vectors: ``(n, dim)`` embeddings of the searched items.
        k: Top-k per query.
        alpha: Significance of the hub rule, corrected for the item count.
        texts: Query texts, for display.

    Returns:
        A :class:`Hubness`.
    """
    k = check_k(k)
    if not isinstance(alpha, (int, float)) or not 0 < alpha < 1:
        raise ValueError(f"alpha must be a probability in (0, 1), got {alpha!r}")
    query_unit = as_unit(query_vectors, "query_vectors")
    base = as_unit(vectors)
    ids = as_ids(ids, len(base))
    langs = [str(lang) for lang in langs]
    if len(langs) != len(query_unit) or len(query_unit) == 0:
        raise ValueError(
            f"need one language per query and at least one query, got "
            f"{len(langs)} languages for {len(query_unit)} queries"
        )
    if len(base) == 0:
        raise ValueError("there are no items to search")
    from scipy.stats import binom  # scipy arrives with umap-learn; keep it off import

    positions, _ = top_k(query_unit, base, k)
    k_used = positions.shape[1]
    lang_array = np.asarray(langs)
    columns = {ALL: np.bincount(positions.ravel(), minlength=len(base))}
    for lang in dict.fromkeys(langs):
        columns[lang] = np.bincount(positions[lang_array == lang].ravel(), minlength=len(base))
    occurrence = pd.DataFrame(columns, index=pd.Index(ids, name="id"))
    summary_rows = []
    hub_frames = []
    for column, counts in columns.items():
        n_queries = len(langs) if column == ALL else int((lang_array == column).sum())
        mean = k_used * n_queries / len(base)
        # P(N_k >= count) in a fair space; sf(c - 1) is the tail from c upwards.
        p_value = binom.sf(counts - 1, n_queries, k_used / len(base))
        is_hub = (p_value < alpha / len(base)) & (counts > mean)
        summary_rows.append(
            {
                "lang": column,
                "queries": n_queries,
                "mean": mean,
                "skew": _skew(counts),
                "hubs": int(is_hub.sum()),
                "anti_hubs": float((counts == 0).mean()),
            }
        )
        hub_frames.append(
            pd.DataFrame(
                {
                    "lang": column,
                    "id": ids[is_hub],
                    "k_occurrence": counts[is_hub],
                    "ratio": counts[is_hub] / mean,
                    "p_value": p_value[is_hub],
                }
            ).sort_values("k_occurrence", ascending=False, kind="stable")
        )
    hubs = pd.concat(hub_frames, ignore_index=True)
    return Hubness(
        occurrence=occurrence,
        summary=pd.DataFrame(summary_rows).set_index("lang"),
        hubs=hubs,
        queries=pd.DataFrame(
            {"text": list(texts) if texts is not None else [None] * len(langs), "lang": langs}
        ),
        top_ids=ids[positions],
        k=k_used,
    )


def _skew(counts: np.ndarray) -> float:
    """Third standardised moment (NaN when every count is equal)."""
    values = counts.astype(np.float64)
    std = values.std()
    if std == 0:
        return float("nan")
    return float((((values - values.mean()) / std) ** 3).mean())


def _query_frame(queries: pd.DataFrame | Mapping[str, Sequence[str]] | Sequence[str]
                 ) -> pd.DataFrame:
    if isinstance(queries, pd.DataFrame):
        if "text" not in queries.columns:
            raise ValueError(
                f"the queries frame needs a 'text' column; it has {list(queries.columns)}"
            )
        lang = queries["lang"].fillna("?") if "lang" in queries.columns else "?"
        frame = pd.DataFrame({"text": queries["text"].to_numpy(), "lang": lang})
    elif isinstance(queries, Mapping):
        frame = pd.DataFrame(
            [
                {"text": t, "lang": str(lang)}
                for lang, texts in queries.items()
                for t in ([texts] if isinstance(texts, str) else texts)
            ]
        )
    elif isinstance(queries, str):
        raise TypeError("queries must be a list of texts, not a single string")
    else:
        frame = pd.DataFrame({"text": list(queries), "lang": "?"})
    if frame.empty:
        raise ValueError("queries is empty")
    bad = [t for t in frame["text"] if not isinstance(t, str) or not t.strip()][:3]
    if bad:
        raise ValueError(f"every query must be a non-empty string, got {bad!r}")
    return frame.reset_index(drop=True)
