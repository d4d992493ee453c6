"""The teaching and audit views of the explorer widget, drawn from :mod:`mclip_explorer.analysis`.

A mixin of :class:`~mclip_explorer.widget.ExplorerWidget`, kept apart so the widget stays small.
Every view is computed by an ``analysis`` function and only *packed* here: labels and display
strings travel as JSON, every array as a raw little-endian buffer inside a synced trait (state,
not a one-off message, so a view set before the widget is displayed still arrives):

* ``color_by_values`` / ``color_by_zero_shot``: an extra colour column (uint8 codes, like the
  metadata columns) with an optional float32 opacity per point.
* ``map_view``: ``"map"`` (the collection's map), ``"gap"`` or ``"gap-corrected"`` (the joint
  image+text projection of :func:`~mclip_explorer.analysis.modality_gap`, before and after the
  gap is removed). Both layouts travel once, as one float32 buffer of 4 values per point.
* ``show_lanes``: one query per language, drawn as the widget's ordinary queries (own colour,
  top-k, gallery row, overlap) plus the exact Jaccard matrix and rank correlations.
* ``show_duplicates`` / ``show_hubs``: a panel of rows; clicking a row highlights its ids.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import traitlets

from mclip_explorer import analysis
from mclip_explorer.widget.codecs import WireError, check_ids, to_buffer

if TYPE_CHECKING:
    from mclip_explorer.analysis import Hubness, LanguageLanes, ModalityGap

MAP_VIEWS = ("map", "gap", "gap-corrected")
MAX_PANEL_ROWS = 500  # a panel is read by a person; the full frame is returned to Python
MAX_DETAIL_QUERIES = 12  # queries listed under a hub row
MIN_OPACITY = 0.15  # so a low-confidence point fades but never vanishes


class MapViewError(traitlets.TraitError, ValueError):
    """A map layout that cannot be shown (e.g. the gap of a collection without text items).

    A ``TraitError`` so that traitlets rolls a refused front-end change back; a ``ValueError``
    like every other bad-input error of the package.
    """


class AnalysisViews(traitlets.HasTraits):
    """Traits and methods of the analysis views (mixed into ``ExplorerWidget``)."""

    map_view = traitlets.Enum(MAP_VIEWS, "map").tag(sync=True)
    """Layout of the map: ``"map"``, ``"gap"`` or ``"gap-corrected"`` (needs text items)."""
    _gap_coords = traitlets.Any(None).tag(sync=True)  # float32 (points, 4): raw x, y, fixed x, y
    _color_opacity = traitlets.Any(None).tag(sync=True)  # float32 per point; empty: default
    _lanes = traitlets.Dict().tag(sync=True)
    _panel = traitlets.Dict().tag(sync=True)

    # Set by ExplorerWidget before traitlets' __init__ runs (its observers may need them).
    collection: Any
    results: dict[str, pd.DataFrame]
    _items: pd.DataFrame
    _point_ids: np.ndarray
    _map_coords: np.ndarray
    if TYPE_CHECKING:  # the widget's own traits and helpers that the views use
        k: int
        color_by: str
        color_columns: list[str]
        highlighted_ids: np.ndarray
        lod_active: bool

        def _title(self, item_id: int) -> str: ...
        def _show_error(self, message: str) -> None: ...
        def _recolour(self, column: str) -> None: ...

    def _init_views(self) -> None:
        self._custom_colours: dict[str, tuple[pd.Series, np.ndarray | None]] = {}
        self._gap: ModalityGap | None = None
        self._serial = 0
        self._lane_labels: list[str] = []  # kept here: the _lanes trait is writable by the page
        self.lanes: LanguageLanes | None = None
        """The last :meth:`show_lanes` result."""

    # --------------------------------------------------------------------- colour columns
    def color_by_values(self, values: Any, name: str, *, opacity: Any = None) -> None:
        """Colour the map by values computed elsewhere; ``name`` joins the colour picker.

        Args:
            values: A ``pd.Series`` indexed by item id (items it lacks get "(none)"), or any
                sequence with one value per item (position == id). Categories and numeric bins
                are chosen as for metadata columns; a categorical keeps its category order.
            name: The picker's name for it; must not be a column of ``collection.items``.
                Using a name again replaces its values.
            opacity: Optional values in ``[0, 1]`` aligned the same way; missing ones draw at
                the default opacity.

        Raises:
            ValueError: ``name`` is empty or a metadata column, or the values are misaligned.
            WireError: A Series index names ids that are not live items.
        """
        if not isinstance(name, str) or not name.strip():
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if name in self._items.columns:
            raise ValueError(f"{name!r} is a column of collection.items; choose another name")
        series = self._by_id(values, "values")
        alpha = None
        if opacity is not None:
            alpha = self._by_id(opacity, "opacity").astype(float).to_numpy()
            finite = alpha[np.isfinite(alpha)]
            if ((finite < 0) | (finite > 1)).any():
                raise ValueError("opacity values must lie in [0, 1]")
        self._custom_colours[name] = (series, alpha)
        if name not in self.color_columns:
            self.color_columns = [*self.color_columns, name]
        if self.color_by == name:
            self._recolour(name)  # same name, new values: the observer would not fire
        else:
            self.color_by = name

    def color_by_zero_shot(
        self, labels: Any, *, template: Any = "{}", name: str = "zero-shot",
        opacity: bool = True,
    ) -> pd.DataFrame:
        """Colour the map by :func:`~mclip_explorer.analysis.zero_shot` labels (any language).

        Args:
            labels: Labels as ``zero_shot`` takes them (a list, or class -> phrasings).
            template: Prompt template(s) with one ``{}``.
            name: Name of the colour column in the picker.
            opacity: Let each item's confidence (softmax probability) set its opacity.

        Returns:
            The ``zero_shot`` frame (``id``, ``label``, ``confidence``, ``score``, ``margin``).
        """
        result = analysis.zero_shot(self.collection, labels, template=template)
        by_id = result.set_index("id")
        confidence = by_id["confidence"].clip(lower=MIN_OPACITY) if opacity else None
        self.color_by_values(by_id["label"], name, opacity=confidence)
        return result

    def _colour_source(self, column: str) -> tuple[pd.Series, np.ndarray | None]:
        """The values (one per item row) and optional opacity of a colour column."""
        if column in self._custom_colours:
            return self._custom_colours[column]
        if column not in self._items.columns:
            raise ValueError(f"cannot colour by {column!r}: no such column in the collection")
        return self._items[column], None

    def _by_id(self, values: Any, what: str) -> pd.Series:
        n = len(self._items)
        if isinstance(values, pd.Series):
            index = values.index.to_numpy()
            if not pd.api.types.is_integer_dtype(index.dtype):
                raise ValueError(f"{what} must be indexed by item id (integers), got "
                                 f"{index.dtype} labels")
            if len(np.unique(index)) != len(index):
                raise ValueError(f"{what} has repeated item ids in its index")
            check_ids(index, self._items)
            return values.reindex(pd.RangeIndex(n))
        array = np.asarray(values, dtype=object) if not isinstance(values, np.ndarray) else values
        if array.ndim != 1 or len(array) != n:
            raise ValueError(f"{what} must be a Series indexed by item id or hold one value per "
                             f"item ({n}), got shape {array.shape}")
        return pd.Series(values, index=pd.RangeIndex(n))

    # ------------------------------------------------------------------------ gap layouts
    def show_gap(self, corrected: bool = True) -> ModalityGap:
        """Switch the map to the modality-gap layout (``corrected``: with the gap removed).

        Queries, selection and highlights stay; ``widget.map_view = "map"`` switches back.

        Returns:
            The :class:`~mclip_explorer.analysis.ModalityGap` drawn.

        Raises:
            ValueError: The collection has no text items (add them with ``coll.add_texts``).
        """
        gap = self._modality_gap()
        self.map_view = "gap-corrected" if corrected else "gap"
        return gap

    def _modality_gap(self) -> ModalityGap:
        if self._gap is None:
            gap = analysis.modality_gap(self.collection)
            both = np.concatenate([gap.coords(corrected=False), gap.coords(corrected=True)], axis=1)
            # Sent once; later toggles only change map_view. A level-of-detail map fetches
            # the layout's points by viewport instead.
            if not self.lod_active:
                self._gap_coords = to_buffer(both[self._point_ids], "float32")
            self._gap = gap
        return self._gap

    @traitlets.validate("map_view")
    def _validate_map_view(self, proposal: dict[str, Any]) -> str:
        if proposal["value"] != "map":
            try:
                self._modality_gap()
            except ValueError as exc:  # no text items: the message names coll.add_texts
                raise MapViewError(str(exc)) from exc
        return str(proposal["value"])

    def set_state(self, sync_data: dict[str, Any]) -> None:
        """Apply front-end state; a refused ``map_view`` shows its error and resets the toggle."""
        try:
            super().set_state(sync_data)
        except (ValueError, traitlets.TraitError) as exc:
            if "map_view" not in sync_data:
                raise
            self._show_error(f"cannot switch the map: {exc}")
            self.send_state("map_view")

    # ------------------------------------------------------------------------------ lanes
    def show_lanes(
        self, text_by_lang: Mapping[str, str], k: int | None = None, *,
        reference: str | None = None,
    ) -> LanguageLanes:
        """Draw one query per language as the widget's queries, with their overlap.

        Each language's query appears on the map in its own colour with lines to its top-k and
        a gallery row; a panel shows the exact Jaccard overlap matrix and each language's rank
        correlation with the reference. Calling again replaces the lanes.

        Args:
            text_by_lang: Language -> query text, e.g. ``{"en": "red", "de": "rot"}``.
            k: Top-k per language (default: the widget's ``k``).
            reference: Reference language of the rank correlation (default ``"en"`` or first).

        Returns:
            The :class:`~mclip_explorer.analysis.LanguageLanes` drawn (also ``widget.lanes``).
        """
        k = self.k if k is None else k
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= 100:
            raise ValueError(f"k must be an integer between 1 and 100, got {k!r}")
        lanes = analysis.language_lanes(self.collection, text_by_lang, k, reference=reference)
        queries = lanes.queries
        labels = [f"{lang}: {text}" for lang, text in zip(queries["lang"], queries["text"],
                                                          strict=True)]
        for label in self._lane_labels:
            self.results.pop(label, None)
        self._lane_labels = labels
        ids = lanes.hits["id"].to_numpy(dtype=np.int64)
        xy = self._map_coords[ids]
        for label, (_, hits) in zip(labels, lanes.hits.groupby("lang", sort=False), strict=True):
            rows = hits["id"].to_numpy(dtype=np.int64)
            self.results[label] = hits.assign(x=self._map_coords[rows, 0],
                                              y=self._map_coords[rows, 1]).reset_index(drop=True)
        langs = queries["lang"].tolist()
        self.lanes = lanes
        self._lanes = {
            "serial": self._next_serial(),
            "langs": langs,
            "labels": labels,
            "reference": lanes.reference,
            "titles": [self._title(int(i)) for i in ids],
            "ids": to_buffer(ids, "uint32"),
            "scores": to_buffer(lanes.hits["score"].to_numpy(), "float32"),
            "xy": to_buffer(xy, "float32"),
            "where": to_buffer(queries[["x", "y"]].to_numpy(), "float32"),
            "overlap": to_buffer(lanes.overlap.loc[langs, langs].to_numpy(), "float32"),
            "rank_corr": to_buffer(lanes.rank_corr.loc[langs].to_numpy(), "float32"),
        }
        return lanes

    def clear_lanes(self) -> None:
        """Remove the lanes' queries and their panel."""
        for label in self._lane_labels:
            self.results.pop(label, None)
        self._lane_labels = []
        self.lanes = None
        self._lanes = {}

    # ----------------------------------------------------------------------------- panels
    def show_duplicates(self, threshold: float = 0.95, *, k: int = 10) -> pd.DataFrame:
        """List :func:`~mclip_explorer.analysis.near_duplicates` groups in a panel.

        Clicking a group highlights its items on the map and shows them in the gallery, the
        suggested keeper first and marked.

        Returns:
            The ``near_duplicates`` frame.
        """
        dups = analysis.near_duplicates(self.collection, threshold, k=k)
        rows: list[tuple[list[str], str, np.ndarray, list[str]]] = []
        for group, members in dups.groupby("group", sort=True):
            ids = members["id"].to_numpy(dtype=np.int64)  # keeper first (analysis sorts so)
            keeper = int(members.loc[members["keeper"], "id"].iloc[0])
            notes = ["keeper" if bool(is_keeper) else f"cos {sim:.3f}"
                     for is_keeper, sim in zip(members["keeper"], members["similarity"],
                                               strict=True)]
            cells = [f"group {group}", f"{len(ids)} items",
                     f"keep #{keeper} {self._title(keeper)}",
                     f"min cos {members['similarity'].min():.3f}"]
            rows.append((cells, "", ids, notes))
        self._set_panel("duplicates", f"Near-duplicates (cosine ≥ {threshold:g})",
                        ["group", "size", "suggested keeper", "similarity"], rows)
        return dups

    def show_hubs(self, queries: Any = None, *, k: int = 10) -> Hubness:
        """List the hubs of :func:`~mclip_explorer.analysis.hubness` in a panel.

        Clicking a hub highlights it on the map, shows it in the gallery and lists the queries
        that retrieved it.

        Args:
            queries: As ``hubness`` takes them (``None``: the collection's text items).
            k: Top-k per query.

        Returns:
            The :class:`~mclip_explorer.analysis.Hubness` result.
        """
        result = analysis.hubness(self.collection, queries, k=k)
        rows: list[tuple[list[str], str, np.ndarray, list[str]]] = []
        for hub in result.hubs.itertuples(index=False):
            item = int(hub.id)
            texts = result.queries_of(item)["text"].astype(str).tolist()
            shown = " · ".join(texts[:MAX_DETAIL_QUERIES])
            extra = len(texts) - MAX_DETAIL_QUERIES
            more = f" (+{extra})" if extra > 0 else ""
            cells = [str(hub.lang), f"#{item} {self._title(item)}",
                     str(int(hub.k_occurrence)), f"x{hub.ratio:.1f}"]
            rows.append((cells, f"retrieved by: {shown}{more}", np.array([item]),
                         [f"N{k} = {int(hub.k_occurrence)}"]))
        self._set_panel("hubs", f"Hubs (top-{k} of {len(result.queries)} queries)",
                        ["lang", "item", f"N{k}", "ratio to mean"], rows)
        return result

    def clear_panel(self) -> None:
        """Close the duplicates/hubs panel."""
        self._panel = {}

    def _set_panel(self, kind: str, title: str, header: list[str],
                   rows: list[tuple[list[str], str, np.ndarray, list[str]]]) -> None:
        shown = rows[:MAX_PANEL_ROWS]
        ids = np.concatenate([r[2] for r in shown]) if shown else np.empty(0, np.int64)
        offsets = np.cumsum([0, *(len(r[2]) for r in shown)])
        self._panel = {
            "serial": self._next_serial(),
            "kind": kind,
            "title": title,
            "header": header,
            "total": len(rows),
            "cells": [r[0] for r in shown],
            "details": [r[1] for r in shown],
            "notes": [note for r in shown for note in r[3]],
            "titles": [self._title(int(i)) for i in ids],
            "ids": to_buffer(ids, "uint32"),
            "offsets": to_buffer(offsets, "uint32"),
        }

    @traitlets.observe("highlighted_ids")
    def _check_highlight(self, change: dict[str, Any]) -> None:
        # A panel click sets the highlight from the front end: still only live ids pass.
        try:
            check_ids(change["new"], self._items)
        except WireError as exc:
            self._show_error(f"highlight refused: {exc}")
            self.highlighted_ids = np.empty(0, np.int64)

    def _next_serial(self) -> int:
        # A new number every time, so showing the same view again still reaches the front end.
        self._serial += 1
        return self._serial
