"""Language lanes: one query in several languages, and how far their results agree.

A perfectly multilingual model puts "a red car", "ein rotes Auto" and "赤い車" on one point; a
real one puts them near each other, and each language gets a somewhat different top-k. Each
language is a lane: its query point on the map, its top-k, its overlap with every other lane and
how well its whole ranking agrees with a reference language.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import (
    as_ids,
    as_unit,
    check_k,
    encode_texts,
    item_vectors,
    top_k,
)


@dataclass(frozen=True)
class LanguageLanes:
    """The lanes of one multilingual query.

    Attributes:
        queries: One row per language: ``lang``, ``text``, ``x``, ``y`` (the query's place on the
            collection map; NaN when computed from arrays alone) and ``stretch``.
        hits: ``lang``, ``rank`` (1-based), ``id``, ``score``: each language's top-k.
        overlap: Language x language Jaccard overlap of the top-k sets (diagonal 1).
        rank_corr: Spearman correlation, per language, between its scores over *all* images and
            the reference language's scores (1 for the reference itself).
        reference: The reference language.
        vectors: ``(n_lang, dim)`` unit query vectors, rows in the order of ``queries``.
    """

    queries: pd.DataFrame
    hits: pd.DataFrame
    overlap: pd.DataFrame
    rank_corr: pd.Series
    reference: str
    vectors: np.ndarray

    def top_ids(self) -> dict[str, list[int]]:
        """Language -> its top-k ids, best first (what a lanes view draws side by side)."""
        groups = self.hits.groupby("lang", sort=False)
        return {str(lang): group["id"].tolist() for lang, group in groups}


def language_lanes(
    coll: Any, text_by_lang: Mapping[str, str], k: int = 10, *, reference: str | None = None
) -> LanguageLanes:
    """Run one query per language against a collection's images and compare the results.

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        text_by_lang: Language code -> the query in that language, e.g.
            ``{"en": "a red car", "de": "ein rotes Auto", "ja": "赤い車"}``.
        k: Top-k per language.
        reference: The language every ranking is correlated with (default ``"en"`` when given,
            else the first language).

    Returns:
        A :class:`LanguageLanes`; its queries carry their position on the collection's map.
    """
    langs, texts = _check_queries(text_by_lang)
    ids, vectors = item_vectors(coll, "image")
    queries = encode_texts(coll, texts)
    lanes = lanes_from_vectors(queries, langs, ids, vectors, k, reference=reference, texts=texts)
    xy, stretch = coll.place(queries)
    placed = lanes.queries.assign(
        x=np.asarray(xy)[:, 0],
        y=np.asarray(xy)[:, 1],
        stretch=np.asarray(stretch, dtype=np.float32),
    )
    return LanguageLanes(
        placed, lanes.hits, lanes.overlap, lanes.rank_corr, lanes.reference, lanes.vectors
    )


def lanes_from_vectors(
    query_vectors: Any,
    langs: list[str],
    ids: Any,
    vectors: Any,
    k: int = 10,
    *,
    reference: str | None = None,
    texts: list[str] | None = None,
) -> LanguageLanes:
    """The array-level core of :func:`language_lanes`.

    Args:
        query_vectors: ``(n_lang, dim)`` query embeddings, one per language.
        langs: The language of each query row (unique).
        ids: ``(n,)`` ids of ``vectors``.
        vectors: ``(n, dim)`` embeddings searched (the collection's images).
        k: Top-k per language.
        reference: Reference language for the rank correlation (default ``"en"`` or the first).
        texts: Query texts, kept in ``queries`` for display.

    Returns:
        A :class:`LanguageLanes` (query positions NaN).
    """
    k = check_k(k)
    queries = as_unit(query_vectors, "query_vectors")
    base = as_unit(vectors, "vectors")
    ids = as_ids(ids, len(base))
    if len(langs) != len(queries) or len(set(langs)) != len(langs):
        raise ValueError(f"need one unique language per query row, got {langs!r}")
    if len(base) == 0:
        raise ValueError("there are no images to search")
    reference = _pick_reference(langs, reference)
    positions, scores = top_k(queries, base, k)
    hits = pd.DataFrame(
        {
            "lang": np.repeat(langs, positions.shape[1]),
            "rank": np.tile(np.arange(1, positions.shape[1] + 1), len(langs)),
            "id": ids[positions].ravel(),
            "score": scores.ravel(),
        }
    )
    sets = [set(row.tolist()) for row in positions]
    overlap = np.array([[len(a & b) / len(a | b) for b in sets] for a in sets])
    from scipy.stats import rankdata  # scipy arrives with umap-learn; keep it off import

    # Average ranks, so tied scores (duplicate images) do not look like disagreement.
    ranks = rankdata(-(queries @ base.T), axis=1)
    ref = langs.index(reference)
    corr = [_pearson(ranks[i], ranks[ref]) for i in range(len(langs))]
    return LanguageLanes(
        queries=pd.DataFrame(
            {
                "lang": langs,
                "text": texts if texts is not None else [None] * len(langs),
                "x": np.nan,
                "y": np.nan,
                "stretch": np.nan,
            }
        ),
        hits=hits,
        overlap=pd.DataFrame(overlap, index=pd.Index(langs, name="lang"), columns=langs),
        rank_corr=pd.Series(corr, index=pd.Index(langs, name="lang"), name="spearman"),
        reference=reference,
        vectors=queries,
    )


def _check_queries(text_by_lang: Mapping[str, str]) -> tuple[list[str], list[str]]:
    if not isinstance(text_by_lang, Mapping) or not text_by_lang:
        raise ValueError("text_by_lang must be a non-empty mapping of language code -> query text")
    for lang, text in text_by_lang.items():
        if not isinstance(text, str) or not text.strip():
            raise ValueError(f"the query for language {lang!r} must be a non-empty string")
    return [str(lang) for lang in text_by_lang], list(text_by_lang.values())


def _pick_reference(langs: list[str], reference: str | None) -> str:
    if reference is None:
        return "en" if "en" in langs else langs[0]
    if reference not in langs:
        raise ValueError(f"reference language {reference!r} is not among the queries {langs}")
    return reference


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two rank vectors, i.e. Spearman's rho (NaN below two items)."""
    if len(a) < 2:
        return float("nan")
    a = a - a.mean()
    b = b - b.mean()
    denominator = float(np.sqrt((a @ a) * (b @ b)))
    return float(a @ b / denominator) if denominator > 0 else float("nan")
