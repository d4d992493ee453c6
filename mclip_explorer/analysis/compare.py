"""Which model works best on my data? The same images encoded by several models, side by side.

:func:`compare_models` builds (or reopens) one collection per model over the same source, each
with its own embedding cache, so a second run encodes only new images. On captions the source
carries (any language), it measures per model and language: text->image and image->text recall,
the modality gap, hubness, and how far the models agree on each caption's top-k images.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import as_unit, check_k, item_vectors, top_k
from mclip_explorer.analysis.gap import gap_from_vectors
from mclip_explorer.analysis.hubness import hubness_from_vectors
from mclip_explorer.analysis.retrieval import TEXT_TO_IMAGE, audit_from_vectors

UNKNOWN_LANG = "?"


@dataclass(frozen=True)
class ModelComparison:
    """Side-by-side measurements of several models on one image collection.

    Attributes:
        summary: One row per model: ``dim``, ``images``, ``captions``, ``score`` (``cosine`` or
            ``sigmoid``), ``gap_norm``, ``image_text_cosine`` (mean over random pairs),
            ``hub_skew`` and ``anti_hubs`` (share of images no caption retrieves), and
            ``recall@K`` / ``mrr`` of text->image retrieval over all captions.
        recall: One row per (``model``, ``lang``, ``direction``): ``queries``, ``recall@K``,
            ``mrr`` (see :class:`~mclip_explorer.analysis.RetrievalAudit`).
        by_language: Text->image ``recall@k`` per language (rows) and model (columns): the
            table to read first.
        hubness: ``model``, ``lang``, ``queries``, ``skew``, ``hubs``, ``anti_hubs``.
        agreement: One row per (``model_a``, ``model_b``, ``lang``): ``overlap@k``, the mean
            share of a caption's top-k images both models return.
        collections: Model name -> its :class:`~mclip_explorer.Collection` (for
            :func:`mclip_explorer.widget.compare_view`).
        k: The k of hubness and agreement.
    """

    summary: pd.DataFrame
    recall: pd.DataFrame
    by_language: pd.DataFrame
    hubness: pd.DataFrame
    agreement: pd.DataFrame
    collections: dict[str, Any]
    k: int


def compare_models(
    source: Any,
    models: Sequence[Any],
    *,
    out: str | Path,
    captions: pd.DataFrame | str | None = None,
    caption_lang: str = UNKNOWN_LANG,
    k: int = 10,
    ks: tuple[int, ...] = (1, 5, 10),
    device: str | None = None,
    map_method: str = "auto",
    progress: bool = False,
) -> ModelComparison:
    """Encode ``source`` with every model and measure them side by side on its captions.

    Args:
        source: What :meth:`Collection.build` takes (folder, glob, paths, DataFrame...).
        models: Two or more registry names or :class:`~mclip_explorer.models.Encoder` objects.
        out: Folder holding one collection per model (``out/<model>``); existing ones are
            reopened and only new images are encoded.
        captions: The captions to measure on: a DataFrame with ``path`` (an image of the
            source), ``text`` and optionally ``lang``; or the name of a text column of a
            DataFrame ``source`` (e.g. ``"title"``, in language ``caption_lang``); one image
            may have several captions.
        caption_lang: Language of captions without a ``lang`` (``"?"``: unknown; models that
            need the language then detect it per caption).
        k: Top-k of hubness and agreement.
        ks: Recall cut-offs.
        device: Device for models given by name.
        map_method: Map of newly built collections (``"auto"``, ``"umap"``, ``"pca"``).
        progress: Show progress bars.

    Returns:
        A :class:`ModelComparison`.
    """
    k = check_k(k)
    if len(models) < 2:
        raise ValueError(f"compare_models needs at least two models, got {len(models)}")
    table = _caption_table(source, captions, caption_lang)
    names, runs = [], {}
    for model in models:
        coll = open_or_build(source, model, Path(out), device=device, map_method=map_method,
                             progress=progress)
        if coll.model_name in runs:
            raise ValueError(f"model {coll.model_name!r} is listed twice")
        names.append(coll.model_name)
        runs[coll.model_name] = {**_measure(coll, table, k, ks), "collection": coll}
    return _assemble(names, runs, table, k, ks)


def open_or_build(source: Any, model: Any, out: Path, *, device: str | None = None,
                  map_method: str = "auto", progress: bool = False) -> Any:
    """The collection of ``source`` under ``model`` in ``out/<model>``, reused when it exists."""
    from mclip_explorer.collection import Collection
    from mclip_explorer.errors import CollectionError
    from mclip_explorer.models.base import Encoder

    name = model.name if isinstance(model, Encoder) else str(model)
    folder = out / _folder_name(name)
    if (folder / "manifest.json").is_file():
        try:
            coll = Collection.open(folder, model=model, device=device)
        except CollectionError:
            pass  # another model's or a damaged collection: rebuilt below
        else:
            coll.add(source, progress=progress)  # only images not encoded yet
            return coll
    return Collection.build(source, model=model, out=folder, device=device, progress=progress,
                            map_method=map_method)


def _folder_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", name).strip("._") or "model"


def _caption_table(source: Any, captions: pd.DataFrame | str | None, lang: str) -> pd.DataFrame:
    """``path``, ``text``, ``lang`` per caption (empty when there are none)."""
    if captions is None:
        return pd.DataFrame({"path": [], "text": [], "lang": []}, dtype=object)
    if isinstance(captions, str):
        if not isinstance(source, pd.DataFrame) or captions not in source.columns:
            raise ValueError(f"captions={captions!r} names no column of the source; pass a "
                             "DataFrame source with that column, or a captions DataFrame")
        frame = source[["path", captions]].rename(columns={captions: "text"})
    else:
        missing = [c for c in ("path", "text") if c not in captions.columns]
        if missing:
            raise ValueError(f"captions lacks column(s) {missing}; it has {list(captions.columns)}")
        frame = captions[[c for c in ("path", "text", "lang") if c in captions.columns]]
    frame = frame.copy()
    if "lang" not in frame.columns:
        frame["lang"] = lang
    frame["lang"] = frame["lang"].fillna(lang).astype(str)
    frame["path"] = frame["path"].map(lambda p: str(Path(p).expanduser().resolve()))
    keep = frame["text"].map(lambda t: isinstance(t, str) and bool(t.strip()))
    return frame[keep].reset_index(drop=True)


def _measure(coll: Any, table: pd.DataFrame, k: int, ks: tuple[int, ...]) -> dict[str, Any]:
    """Everything one model contributes: its image vectors, caption vectors, audit, gap, hubs."""
    ids, images = item_vectors(coll, "image")
    encoder = coll.encoder
    run: dict[str, Any] = {"dim": int(coll.dim), "images": len(ids), "score": encoder.score_kind}
    paths = coll.items["path"].to_numpy()[ids]
    where = {str(Path(p).resolve()): i for i, p in zip(ids.tolist(), paths, strict=True)
             if isinstance(p, str)}
    matched = table[table["path"].isin(where)].reset_index(drop=True)
    run["captions"] = len(matched)
    if matched.empty:
        return run
    langs = [None if lang == UNKNOWN_LANG else lang for lang in matched["lang"]]
    texts = as_unit(encoder.encode_text(matched["text"].tolist(), lang=langs), "captions")
    frame = pd.DataFrame({"item_id": matched["path"].map(where).to_numpy(np.int64),
                          "lang": matched["lang"].to_numpy(), "text": matched["text"].to_numpy()})
    run["audit"] = audit_from_vectors(frame, texts, ids, images, ks=ks)
    gap = gap_from_vectors(ids, images, np.arange(len(texts)) + int(ids.max()) + 1, texts)
    run["gap"] = gap
    run["hubness"] = hubness_from_vectors(texts, frame["lang"].tolist(), ids, images, k=k,
                                          texts=frame["text"].tolist())
    positions, _ = top_k(texts, images, k)
    # Top-k as paths, so models whose collections number images differently still compare.
    run["top"] = {key: frozenset(paths[positions[row]])
                  for row, key in enumerate(zip(matched["path"], matched["text"], strict=True))}
    run["top_lang"] = dict(zip(zip(matched["path"], matched["text"], strict=True),
                               matched["lang"], strict=True))
    return run


def _assemble(names: list[str], runs: dict[str, dict[str, Any]], table: pd.DataFrame, k: int,
              ks: tuple[int, ...]) -> ModelComparison:
    summary_rows, recall_frames, hub_rows = [], [], []
    for name in names:
        run = runs[name]
        row = {"model": name, **{key: run[key] for key in ("dim", "images", "captions", "score")}}
        if "audit" in run:
            recall = run["audit"].recall
            recall_frames.append(recall.assign(model=name))
            pairs = run["gap"].cosines.set_index("pair")["mean"]
            row.update(gap_norm=run["gap"].gap_norm,
                       image_text_cosine=float(pairs.get("image-text", np.nan)))
            hub_summary = run["hubness"].summary
            row.update(hub_skew=float(hub_summary.loc["all", "skew"]),
                       anti_hubs=float(hub_summary.loc["all", "anti_hubs"]))
            ranks = run["audit"].ranks
            t2i = ranks[ranks["direction"] == TEXT_TO_IMAGE]["rank"]
            row.update({f"recall@{cut}": float((t2i <= cut).mean()) for cut in ks})
            row["mrr"] = float((1.0 / t2i).mean())
            hub_rows.append(hub_summary.reset_index(names="lang").assign(model=name))
        summary_rows.append(row)
    summary = pd.DataFrame(summary_rows).set_index("model")
    recall = (pd.concat(recall_frames, ignore_index=True) if recall_frames
              else pd.DataFrame(columns=["model", "lang", "direction", "queries"]))
    recall = recall[["model", *[c for c in recall.columns if c != "model"]]]
    by_language = pd.DataFrame()
    if recall_frames:
        t2i = recall[recall["direction"] == TEXT_TO_IMAGE]
        by_language = t2i.pivot(index="lang", columns="model", values=f"recall@{max(ks)}")
        by_language = by_language[[n for n in names if n in by_language.columns]]
        by_language.columns.name = f"text->image recall@{max(ks)}"
    hubness = (pd.concat(hub_rows, ignore_index=True) if hub_rows else pd.DataFrame())
    if hub_rows:
        hubness = hubness[["model", "lang", "queries", "skew", "hubs", "anti_hubs"]]
    return ModelComparison(summary, recall, by_language, hubness,
                           _agreement(names, runs, k), {n: runs[n]["collection"] for n in names}, k)


def _agreement(names: list[str], runs: dict[str, dict[str, Any]], k: int) -> pd.DataFrame:
    """Mean top-k overlap of every model pair on the captions both measured, per language."""
    rows = []
    for a, b in itertools.combinations(names, 2):
        top_a, top_b = runs[a].get("top", {}), runs[b].get("top", {})
        shared = [key for key in top_a if key in top_b]
        if not shared:
            continue
        overlap = pd.DataFrame({
            "lang": [runs[a]["top_lang"][key] for key in shared],
            "overlap": [len(top_a[key] & top_b[key]) / max(len(top_a[key]), 1)
                        for key in shared],
        })
        for lang, value in [("all", overlap["overlap"].mean()),
                            *overlap.groupby("lang")["overlap"].mean().items()]:
            rows.append({"model_a": a, "model_b": b, "lang": lang, f"overlap@{k}": float(value)})
    return pd.DataFrame(rows, columns=["model_a", "model_b", "lang", f"overlap@{k}"])
