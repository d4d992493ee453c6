"""One query through several models at once: their galleries side by side.

A thin ipywidgets view over collections of the same images encoded by different models (for
example :attr:`ModelComparison.collections <mclip_explorer.analysis.ModelComparison>`). Titles
and captions are shown as plain text labels, never as HTML.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

DEFAULT_K = 6


class CompareView:
    """A query box over one gallery column per model.

    Attributes:
        collections: Model name -> collection, in display order.
        k: Hits per model.
        results: Model name -> the last query's hits (:meth:`Collection.search`'s frame).
        widget: The ipywidgets ``VBox`` to display.
    """

    def __init__(self, collections: Mapping[str, Any], *, k: int = DEFAULT_K,
                 thumb_size: int = 96) -> None:
        import ipywidgets as w

        if len(collections) < 1:
            raise ValueError("compare_view needs at least one collection")
        self.collections = dict(collections)
        self.k = k
        self.thumb_size = thumb_size
        self.results: dict[str, pd.DataFrame] = {}
        self.query = w.Text(placeholder="a query in any language", continuous_update=False)
        self.lang = w.Text(placeholder="language (blank: detect)", layout=w.Layout(width="12em"))
        self.status = w.Label()
        self.columns = w.HBox()
        self.query.observe(lambda change: self.search(change["new"]), names="value")
        self.widget = w.VBox([w.HBox([self.query, self.lang]), self.status, self.columns])

    def search(self, text: str) -> dict[str, pd.DataFrame]:
        """Run ``text`` through every model and redraw the galleries; returns the hits."""
        if not text.strip():
            return {}
        lang = self.lang.value.strip() or None
        self.results = {name: coll.search(text, k=self.k, lang=lang)
                        for name, coll in self.collections.items()}
        self.columns.children = [self._column(name, hits) for name, hits in self.results.items()]
        self.status.value = f"“{text}” through {len(self.results)} models"
        return self.results

    def _column(self, name: str, hits: pd.DataFrame) -> Any:
        import ipywidgets as w

        coll = self.collections[name]
        sigmoid = "probability" in hits.columns
        head = [w.Label(name, style={"font_weight": "bold"})]
        if "query_lang" in hits.columns and len(hits):
            head.append(w.Label(f"read as {hits['query_lang'].iloc[0]}"))
        cards = []
        for row in hits.itertuples(index=False):
            score = f"{row.probability:.1%}" if sigmoid else f"{row.score:.3f}"
            title = str(getattr(row, "title", "") or "")
            item_id: Any = row.id
            image = w.Image(value=coll.thumbnail(int(item_id), self.thumb_size), format="webp",
                            width=self.thumb_size)
            cards.append(w.VBox([image, w.Label(f"#{row.rank} {score}"), w.Label(title)]))
        return w.VBox([*head, *cards], layout=w.Layout(margin="0 12px 0 0"))


def compare_view(collections: Mapping[str, Any] | Any, query: str = "", *,
                 k: int = DEFAULT_K) -> CompareView:
    """A side-by-side view of several models' answers to one query.

    Args:
        collections: Model name -> collection, or a
            :class:`~mclip_explorer.analysis.ModelComparison`.
        query: A first query to run (optional).
        k: Hits per model.

    Returns:
        A :class:`CompareView`; display ``view.widget``.
    """
    found = getattr(collections, "collections", collections)
    view = CompareView(found, k=k)
    if query:
        view.query.value = query  # runs the search through the observer
    return view
