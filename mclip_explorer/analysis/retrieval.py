"""Per-language retrieval audit with parallel captions: where does the model quietly fail?

Given captions aligned to items (the same picture described in several languages), every caption
is a text->image query whose right answer is its item, and every image is an image->text query
(per language) whose right answers are its captions in that language. Recall@k per language and
direction shows a language the text tower does not really know; the failing queries say which.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import (
    _CHUNK_CELLS,
    as_unit,
    check_k,
    encode_texts,
    item_vectors,
    require_columns,
)

TEXT_TO_IMAGE = "text_to_image"
IMAGE_TO_TEXT = "image_to_text"


@dataclass(frozen=True)
class RetrievalAudit:
    """Recall per language and direction, and the rank of every query's right answer.

    Attributes:
        recall: One row per (``lang``, ``direction``): ``queries``, ``recall@K`` for each K,
            and ``mrr`` (mean reciprocal rank).
        ranks: One row per query: ``direction``, ``lang``, ``item_id`` (the right answer for
            text->image, the query image for image->text), ``text`` (the caption), ``rank``
            (1-based rank of the best right answer), ``score`` (its cosine), ``top_id`` (the
            item of the top-1 hit) and ``top_score``.
        fail_at: A query fails when its rank is above this.
    """

    recall: pd.DataFrame
    ranks: pd.DataFrame
    fail_at: int

    @property
    def failures(self) -> pd.DataFrame:
        """The queries whose right answer is not within the top ``fail_at``, worst first."""
        failed = self.ranks[self.ranks["rank"] > self.fail_at]
        return failed.sort_values(["direction", "lang", "rank"], ascending=[True, True, False])

    def confusion(
        self,
        labels: Mapping[int, Any] | pd.Series,
        *,
        direction: str = TEXT_TO_IMAGE,
        lang: str | None = None,
        normalize: bool = True,
    ) -> pd.DataFrame:
        """Cross-tabulate the label of the right answer against the label of the top-1 hit.

        Args:
            labels: Item id -> label (e.g. ``coll.items["category"]``, whose index is the id).
            direction: ``"text_to_image"`` or ``"image_to_text"``.
            lang: Restrict to one language (default: all).
            normalize: Rows sum to 1 (else counts).

        Returns:
            Rows: expected label; columns: label of the top-1 hit.
        """
        if direction not in (TEXT_TO_IMAGE, IMAGE_TO_TEXT):
            raise ValueError(
                f"direction must be {TEXT_TO_IMAGE!r} or {IMAGE_TO_TEXT!r}, got {direction!r}"
            )
        rows = self.ranks[self.ranks["direction"] == direction]
        if lang is not None:
            if lang not in set(rows["lang"]):
                raise ValueError(f"no {direction} queries in language {lang!r}")
            rows = rows[rows["lang"] == lang]
        mapping = labels if isinstance(labels, pd.Series) else pd.Series(dict(labels))
        missing = sorted(set(rows["item_id"]) - set(mapping.index))[:5]
        if missing:
            raise ValueError(f"labels has no entry for item id(s) {missing}")
        return pd.crosstab(
            pd.Series(mapping.loc[rows["item_id"]].to_numpy(), name="expected"),
            pd.Series(mapping.loc[rows["top_id"]].to_numpy(), name="top1"),
            normalize="index" if normalize else False,
        )


def retrieval_audit(
    coll: Any, captions: pd.DataFrame, *, ks: tuple[int, ...] = (1, 5, 10), fail_at: int = 5
) -> RetrievalAudit:
    """Recall@k per language and direction for captions aligned to a collection's images.

    Search is exact (not through the index), so the numbers measure the model alone.

    Args:
        coll: A :class:`~mclip_explorer.Collection`.
        captions: Columns ``item_id`` (an image id of ``coll``), ``lang`` and ``text``; an item
            may have several captions per language.
        ks: The cut-offs reported as ``recall@K``.
        fail_at: A query is listed in ``failures`` when its right answer ranks below this.

    Returns:
        A :class:`RetrievalAudit`.
    """
    frame = _check_captions(captions)
    ids, vectors = item_vectors(coll, "image")
    unknown = sorted(set(frame["item_id"]) - set(ids.tolist()))
    if unknown:
        raise ValueError(
            f"captions name item ids that are not live images of the collection: "
            f"{unknown[:10]}{' ...' if len(unknown) > 10 else ''}"
        )
    text_vectors = encode_texts(coll, frame["text"].tolist())
    return audit_from_vectors(frame, text_vectors, ids, vectors, ks=ks, fail_at=fail_at)


def audit_from_vectors(
    captions: pd.DataFrame,
    caption_vectors: Any,
    image_ids: Any,
    image_vectors: Any,
    *,
    ks: tuple[int, ...] = (1, 5, 10),
    fail_at: int = 5,
) -> RetrievalAudit:
    """The array-level core of :func:`retrieval_audit`.

    Args:
        captions: ``item_id``, ``lang``, ``text`` per caption.
        caption_vectors: ``(len(captions), dim)`` caption embeddings.
        image_ids: ``(n,)`` ids of ``image_vectors``.
        image_vectors: ``(n, dim)`` image embeddings.
        ks: Recall cut-offs.
        fail_at: Failure cut-off.

    Returns:
        A :class:`RetrievalAudit`.
    """
    frame = _check_captions(captions)
    ks = tuple(check_k(k, "ks entries") for k in ks)
    fail_at = check_k(fail_at, "fail_at")
    texts = as_unit(caption_vectors, "caption_vectors")
    images = as_unit(image_vectors, "image_vectors")
    image_ids = np.asarray(image_ids, dtype=np.int64)
    if len(texts) != len(frame):
        raise ValueError(f"{len(frame)} captions but {len(texts)} caption vectors")
    position = pd.Series(np.arange(len(image_ids)), index=image_ids)
    missing = sorted(set(frame["item_id"]) - set(image_ids.tolist()))
    if missing:
        raise ValueError(f"captions name item ids without an image vector: {missing[:10]}")
    caption_items = frame["item_id"].to_numpy(dtype=np.int64)
    rows = [_text_to_image(frame, texts, images, image_ids, position.loc[caption_items].to_numpy())]
    for lang, group in frame.groupby("lang", sort=True):
        mask = (frame["lang"] == lang).to_numpy()
        rows.append(_image_to_text(str(lang), group, texts[mask], images, position))
    ranks = pd.concat(rows, ignore_index=True)
    grouped = ranks.groupby(["lang", "direction"], sort=True)["rank"]
    recall = grouped.size().rename("queries").to_frame()
    for k in ks:
        recall[f"recall@{k}"] = grouped.apply(functools.partial(_share_within, k=k))
    recall["mrr"] = grouped.apply(lambda r: float((1.0 / r).mean()))
    return RetrievalAudit(recall.reset_index(), ranks, fail_at)


def _share_within(ranks: pd.Series, k: int) -> float:
    """Share of the queries whose match ranked within the top ``k``."""
    return float((ranks <= k).mean())


def _text_to_image(
    frame: pd.DataFrame,
    texts: np.ndarray,
    images: np.ndarray,
    image_ids: np.ndarray,
    truth: np.ndarray,
) -> pd.DataFrame:
    rank = np.empty(len(texts), dtype=np.int64)
    score = np.empty(len(texts), dtype=np.float32)
    top = np.empty(len(texts), dtype=np.int64)
    top_score = np.empty(len(texts), dtype=np.float32)
    step = max(1, _CHUNK_CELLS // max(len(images), 1))
    for start in range(0, len(texts), step):
        block = texts[start : start + step] @ images.T
        rows = np.arange(len(block))
        true = block[rows, truth[start : start + step]]
        # Strictly greater: an exact tie with the right answer (a duplicate image) is no miss.
        rank[start : start + step] = (block > true[:, None]).sum(axis=1) + 1
        score[start : start + step] = true
        best = block.argmax(axis=1)
        top[start : start + step] = image_ids[best]
        top_score[start : start + step] = block[rows, best]
    return pd.DataFrame(
        {
            "direction": TEXT_TO_IMAGE,
            "lang": frame["lang"].to_numpy(),
            "item_id": frame["item_id"].to_numpy(dtype=np.int64),
            "text": frame["text"].to_numpy(),
            "rank": rank,
            "score": score,
            "top_id": top,
            "top_score": top_score,
        }
    )


def _image_to_text(
    lang: str, group: pd.DataFrame, texts: np.ndarray, images: np.ndarray, position: pd.Series
) -> pd.DataFrame:
    owners = group["item_id"].to_numpy(dtype=np.int64)
    queries = np.unique(owners)
    first_text = group.drop_duplicates("item_id").set_index("item_id")["text"]
    rank = np.empty(len(queries), dtype=np.int64)
    score = np.empty(len(queries), dtype=np.float32)
    top = np.empty(len(queries), dtype=np.int64)
    top_score = np.empty(len(queries), dtype=np.float32)
    step = max(1, _CHUNK_CELLS // max(len(texts), 1))
    for start in range(0, len(queries), step):
        chunk = queries[start : start + step]
        block = images[position.loc[chunk].to_numpy()] @ texts.T
        right = owners[None, :] == chunk[:, None]
        true = np.where(right, block, -np.inf).max(axis=1)
        rank[start : start + step] = (np.where(right, -np.inf, block) > true[:, None]).sum(
            axis=1
        ) + 1
        score[start : start + step] = true
        best = block.argmax(axis=1)
        top[start : start + step] = owners[best]
        top_score[start : start + step] = block[np.arange(len(block)), best]
    return pd.DataFrame(
        {
            "direction": IMAGE_TO_TEXT,
            "lang": lang,
            "item_id": queries,
            "text": first_text.loc[queries].to_numpy(),
            "rank": rank,
            "score": score,
            "top_id": top,
            "top_score": top_score,
        }
    )


def _check_captions(captions: pd.DataFrame) -> pd.DataFrame:
    if not isinstance(captions, pd.DataFrame):
        raise TypeError(f"captions must be a pandas DataFrame, got {type(captions).__name__}")
    require_columns(captions, ("item_id", "lang", "text"), "captions")
    if captions.empty:
        raise ValueError("captions is empty")
    frame = captions[["item_id", "lang", "text"]].reset_index(drop=True)
    bad = frame.index[~frame["text"].map(lambda t: isinstance(t, str) and bool(t.strip()))]
    if len(bad):
        raise ValueError(f"captions rows {bad[:5].tolist()} have an empty or non-string text")
    if frame["lang"].isna().any():
        raise ValueError("captions has rows without a lang")
    if not pd.api.types.is_integer_dtype(frame["item_id"]):
        raise TypeError(
            f"captions.item_id must hold integer ids, got dtype {frame['item_id'].dtype}"
        )
    return frame
