"""The explorer widget: traits mirrored in ``js/model.ts`` and handlers for front-end requests.

The widget is a thin shell. The map data (float32 coordinates, uint32 ids, uint8 kinds) is sent
once as binary buffers in the initial state; everything else is fetched by id on demand through
``msg:custom`` requests carrying a request id (``rid``), answered with one reply each. A failing
request is answered with a readable error the front end shows, never only a log line. The front
end can only name items by id and send query *text*: text is only ever encoded as text, ids are
range-checked, and nothing it sends is opened as a path or evaluated.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import anywidget
import numpy as np
import pandas as pd
import traitlets

from mclip_explorer.collection import thumbnails
from mclip_explorer.collection.columns import FACET_COLUMNS
from mclip_explorer.models.base import check_unicode
from mclip_explorer.widget.background import BuildStatus
from mclip_explorer.widget.codecs import (
    IDS_SERIALIZATION,
    WireError,
    as_strings,
    check_ids,
    colour_columns,
    encode_column,
    ids_from_buffer,
    int_field,
    text_field,
    to_buffer,
)
from mclip_explorer.widget.static_image import with_static_map
from mclip_explorer.widget.titles import item_title
from mclip_explorer.widget.viewport import LOD_POINTS, LOD_THRESHOLD, MapDetail
from mclip_explorer.widget.views import AnalysisViews, ViewHost

_BUNDLE = Path(__file__).parent.parent / "static" / "widget.js"
MAX_K = 100
MAX_QUERY_CHARS = 1000
MAX_THUMBS = 200  # per request: a gallery shows a few dozen at most
_log = logging.getLogger(__name__)


class ExplorerWidget(BuildStatus, MapDetail, AnalysisViews, anywidget.AnyWidget):
    """Map of a collection with a multilingual query box, a gallery and two-way selection.

    Use :func:`mclip_explorer.explore` to make one. ``selection`` is a DataFrame of the items
    lassoed on the map (live, debounced) and may be set from Python; ``highlight(ids)`` marks
    items; ``results`` holds the DataFrame of every query on the map. The analysis views
    (``color_by_zero_shot``, ``show_gap``, ``show_lanes``, ``show_duplicates``, ``show_hubs``)
    come from :class:`~mclip_explorer.widget.views.AnalysisViews`; maps above ``lod_threshold``
    points are drawn with a level of detail (:class:`~mclip_explorer.widget.viewport.MapDetail`).
    """

    # anywidget reads the file when the class is made; without a build, __init__ says what to do.
    _esm = _BUNDLE if _BUNDLE.is_file() else "export default {};"

    # Sent once: the map (binary buffers, aligned: point i is item _ids[i]).
    _coords = traitlets.Any().tag(sync=True)
    _ids = traitlets.Any().tag(sync=True)
    _kinds = traitlets.Any().tag(sync=True)
    n_items = traitlets.Int(0).tag(sync=True)
    model_name = traitlets.Unicode("").tag(sync=True)

    color_by = traitlets.Unicode("kind").tag(sync=True)
    """Metadata column the points are coloured by (the widget's picker sets it too)."""
    color_columns = traitlets.List(traitlets.Unicode()).tag(sync=True)
    _color_codes = traitlets.Any().tag(sync=True)
    _color_labels = traitlets.List(traitlets.Unicode()).tag(sync=True)

    k = traitlets.Int(10).tag(sync=True)
    """How many nearest images a query shows."""
    thumb_size = traitlets.Int(96).tag(sync=True)
    selected_ids = traitlets.Any(np.empty(0, np.int64)).tag(sync=True, **IDS_SERIALIZATION)
    """Ids of the selected items (the map's lasso/box selection, or set from Python)."""
    highlighted_ids = traitlets.Any(np.empty(0, np.int64)).tag(sync=True, **IDS_SERIALIZATION)
    error = traitlets.Unicode("").tag(sync=True)
    #: Language of text queries for models that need one (NLLB-CLIP); "" detects it per query.
    query_lang = traitlets.Unicode("").tag(sync=True)
    #: The language the last text query was read in ("" when the model takes none).
    last_query_language = traitlets.Unicode("").tag(sync=True)
    """The last error the widget shows (empty when none)."""
    selection = traitlets.Any()
    """DataFrame of the selected items' rows of ``collection.items`` (not synced: built here)."""

    def __init__(self, collection: Any, *, color_by: str | None = None, k: int = 10,
                 thumb_size: int = 96, lod_threshold: int = LOD_THRESHOLD,
                 lod_points: int = LOD_POINTS, **kwargs: Any) -> None:
        """Build the widget state of a collection.

        Args:
            collection: A :class:`~mclip_explorer.collection.Collection`.
            color_by: Column of ``collection.items`` to colour points by (default: the first
                user metadata column, else ``"kind"``).
            k: Nearest images per query (1-100).
            thumb_size: Gallery thumbnail size in pixels (16-512).
            lod_threshold: Above this many points the map shows a density overview plus a
                sample, and fetches the points of the viewport on zoom and pan.
            lod_points: Most points drawn at once in that mode (query hits, highlights and a
                bounded part of the selection come on top).
            **kwargs: Passed on to ``anywidget.AnyWidget``.
        """
        if not _BUNDLE.is_file():
            raise FileNotFoundError(
                f"the widget's JavaScript bundle {_BUNDLE} is missing: install the package with "
                "`pip install .` (it builds the bundle) or run "
                "`cd js && npm install && npm run build`")
        if not 1 <= k <= MAX_K:
            raise ValueError(f"k must be between 1 and {MAX_K}, got {k}")
        thumbnails.check_size(thumb_size)
        self.results: dict[str, pd.DataFrame] = {}
        self.last_error: str = ""
        self._lod_settings = (lod_threshold, lod_points)
        self._coloured_by: str | None = None  # the column _recolour last encoded
        self._init_views()
        state = self._snapshot(collection)
        items = self._items
        columns = colour_columns(items)
        chosen = color_by if color_by is not None else _default_colour(items, columns)
        if chosen not in columns:
            raise ValueError(f"color_by={chosen!r} is not a column; choose from {columns}")
        super().__init__(
            **state,
            color_columns=columns,
            color_by=chosen,
            k=k,
            thumb_size=thumb_size,
            selection=items.iloc[:0],
            **kwargs,
        )
        if self._coloured_by != chosen:  # else color_by's observer has just done it
            self._recolour(chosen)
        self.on_msg(self._on_msg)

    def _snapshot(self, collection: Any) -> dict[str, Any]:
        """Take a collection's map state; returns the trait values the page gets for it."""
        self.collection = collection
        # One snapshot: Collection.items copies the table on every access, and the map shown
        # is this state anyway (items added later need a new widget, or a _reload).
        self._items = items = collection.items
        self._map_coords = coords = np.asarray(collection.coords, dtype=np.float32)
        # Both coordinates finite: the pair of bools read as one uint16 (10x faster than all()).
        alive = np.isfinite(coords).view(np.uint16).reshape(-1) == 0x0101
        if "deleted" in items.columns:
            alive &= ~items["deleted"].to_numpy(dtype=bool)
        self._point_ids = np.flatnonzero(alive)
        self._gap = None
        self._init_detail(*self._lod_settings)
        shown = self._initial_points()  # rows of the points: all, or the overview's sample
        rows = self._point_ids[shown]
        return {"_coords": to_buffer(coords[rows], "float32"), "_ids": to_buffer(rows, "uint32"),
                "_kinds": to_buffer(self._point_is_text[shown], "uint8"),
                "_lod": self._lod_state, "n_items": len(items),
                "model_name": str(getattr(collection, "model_name", ""))}

    def _reload(self, collection: Any) -> None:
        """Show another state of the collection (a background build's new step) in place."""
        state = self._snapshot(collection)
        columns = colour_columns(self._items)
        chosen = self.color_by
        if chosen not in columns or (chosen == "kind" and len(self.color_columns) <= 1):
            # Gone, or only the default of an empty start: pick as a new widget would.
            chosen = _default_colour(self._items, columns)
        with self.hold_sync():  # one message: the page redraws once
            for name, value in state.items():
                setattr(self, name, value)
            self.color_columns = columns
            self.map_view = "map"
            if chosen == self.color_by:
                self._recolour(chosen)
            else:
                self.color_by = chosen

    def _repr_mimebundle_(self, **kwargs: Any) -> Any:
        """The live widget, plus a PNG of the map for saved notebooks (see static_image)."""
        return with_static_map(super()._repr_mimebundle_(**kwargs), self)

    # ------------------------------------------------------------------------ Python API
    def highlight(self, ids: Any) -> None:
        """Mark items on the map (ring markers); ``[]`` clears. Ids must be live items."""
        self.highlighted_ids = check_ids(ids, self._items)

    @traitlets.validate("selection")
    def _validate_selection(self, proposal: dict[str, Any]) -> pd.DataFrame:
        value = proposal["value"]
        items = self._items
        chosen: pd.DataFrame = items.iloc[:0] if value is None else items.iloc[
            check_ids(value, items)]
        return chosen

    @traitlets.observe("selection")
    def _selection_to_ids(self, change: dict[str, Any]) -> None:
        ids = change["new"]["id"].to_numpy(dtype=np.int64)
        if not np.array_equal(ids, np.asarray(self.selected_ids)):
            self.selected_ids = ids

    @traitlets.observe("selected_ids")
    def _ids_to_selection(self, change: dict[str, Any]) -> None:
        new = np.asarray(change["new"], dtype=np.int64)
        if np.array_equal(new, self.selection["id"].to_numpy(dtype=np.int64)):
            return
        try:
            self.selection = new
        except WireError as exc:
            self._show_error(f"selection refused: {exc}")

    @traitlets.observe("color_by")
    def _on_color_by(self, change: dict[str, Any]) -> None:
        try:
            self._recolour(change["new"])
        except ValueError as exc:
            self._show_error(str(exc))

    def _recolour(self, column: str) -> None:
        values, opacity = self._colour_source(column)
        codes, labels = encode_column(values)
        alpha = (np.empty(0, np.float32) if opacity is None
                 else np.nan_to_num(opacity, nan=0.8).astype(np.float32))
        self._colours = (codes, alpha)  # per item: viewport replies pick their points' values
        self._coloured_by = column
        shown = self._point_ids[self._shown]
        with self.hold_sync():  # one message: the front end redraws once, with all three
            self._color_labels = labels
            self._color_opacity = to_buffer(alpha[shown] if len(alpha) else alpha, "float32")
            self._color_codes = to_buffer(codes[shown], "uint8")

    # ------------------------------------------------------------------- front-end requests
    def _on_msg(self, _widget: Any, content: Any, buffers: list[Any]) -> None:
        if not isinstance(content, dict) or not isinstance(content.get("rid"), int):
            return  # not one of our requests (e.g. anywidget's own messages)
        rid = content["rid"]
        handlers = {"search": self._search, "thumbs": self._thumbs, "item": self._item,
                    "forget": self._forget, "viewport": self._viewport, "select": self._select,
                    "cancel_build": self._cancel_build}
        op = content.get("op")
        try:
            if op not in handlers:
                raise WireError(f"unknown request {op!r}")
            reply, out = handlers[op](rid, content, list(buffers or []))
        except Exception as exc:  # noqa: BLE001 - every failure must reach the user, readably
            _log.exception("explorer request %r failed", op)
            message = _describe_error(exc)
            self._show_error(message)
            self.send({"rid": rid, "ok": False, "error": message})
            return
        self.send({"rid": rid, "ok": True, **reply}, out)

    def _search(self, rid: int, content: dict[str, Any], buffers: list[Any]) -> _Reply:
        coll = self.collection
        k = int_field(content, "k", 1, MAX_K, self.k)
        size = int_field(content, "thumbs", 0, thumbnails.MAX_SIZE, 0)
        if size:
            thumbnails.check_size(size)
        if "text" in content:
            text = text_field(content, "text", max_length=MAX_QUERY_CHARS)
            if not text.strip():
                raise WireError("the query is empty")
            check_unicode(text, "the query")
            self.send({"rid": rid, "progress": "encoding the query"})
            encoder = coll.encoder
            # NLLB-CLIP reads the query in one language: detect it once, show it, use it.
            language = encoder.text_languages([text], self.query_lang or None)[0]
            # Encoded strictly as text: a query that looks like a path is never opened.
            vector = encoder.encode_text([text], lang=language)[0]
            found = coll.search(vector, k=k)
            where = np.asarray(coll.place(vector[None, :])[0], dtype=np.float32)[0]
            label, source = text, -1
            # SigLIP models show their own match probability, not the raw cosine.
            score_kind = encoder.score_kind
            if score_kind == "sigmoid":
                found.insert(list(found.columns).index("score") + 1, "probability",
                             encoder.score(found["score"].to_numpy()))
        else:
            ids = check_ids(_one_buffer(buffers), self._items)
            if len(ids) != 1:
                raise WireError(f"a search by id takes exactly one id, got {len(ids)}")
            source = int(ids[0])
            self.send({"rid": rid, "progress": "searching"})
            found = coll.search(source, k=k)
            where = np.asarray(coll.coords[source], dtype=np.float32)
            label = f"#{source} {self._title(source)}"
            language, score_kind = None, "cosine"
        self.results[label] = found
        self.last_error = ""
        ids = found["id"].to_numpy(dtype=np.int64)
        self.last_query_language = language or ""
        reply = {"label": label, "source": source, "x": float(where[0]), "y": float(where[1]),
                 "titles": [self._title(int(i)) for i in ids], "language": language or "",
                 "score_kind": score_kind}
        xy = found[["x", "y"]].to_numpy(dtype=np.float32)
        shown = found["probability" if score_kind == "sigmoid" else "score"].to_numpy()
        out: list[memoryview | bytes] = [
               to_buffer(ids, "uint32"), to_buffer(shown, "float32"),
               to_buffer(xy, "float32")]
        if size:
            # The gallery shows exactly these: sending them now saves a second round trip.
            out += [self._thumb_or_empty(int(i), size) for i in ids]
        return reply, out

    def _thumbs(self, _rid: int, content: dict[str, Any], buffers: list[Any]) -> _Reply:
        size = int_field(content, "size", thumbnails.MIN_SIZE, thumbnails.MAX_SIZE, self.thumb_size)
        ids = check_ids(_one_buffer(buffers), self._items, kind="image")
        if len(ids) > MAX_THUMBS:
            raise WireError(f"at most {MAX_THUMBS} thumbnails per request, got {len(ids)}")
        images = [self._thumb_or_empty(int(i), size) for i in ids]
        return {"ids": [int(i) for i in ids], "mime": "image/webp"}, images

    def _item(self, _rid: int, _content: dict[str, Any], buffers: list[Any]) -> _Reply:
        ids = check_ids(_one_buffer(buffers), self._items)
        if len(ids) != 1:
            raise WireError(f"an item request takes exactly one id, got {len(ids)}")
        item_id = int(ids[0])
        row = self._items.iloc[item_id]
        columns = self.color_columns
        meta = dict(zip(columns, as_strings([row[c] for c in columns]), strict=True))
        reply = {"id": item_id, "kind": str(row["kind"]), "title": self._title(item_id),
                 "text": as_strings([row.get("text")])[0], "meta": meta}
        if row["kind"] != "image":
            return reply, []
        try:
            return reply, [thumbnails.thumbnail(self.collection, item_id, self.thumb_size,
                                                items=self._items)]
        except thumbnails.ThumbnailError as exc:
            return {**reply, "thumb_error": str(exc)}, []

    def _forget(self, _rid: int, content: dict[str, Any], _buffers: list[Any]) -> _Reply:
        self.results.pop(text_field(content, "label", max_length=MAX_QUERY_CHARS + 200), None)
        return {}, []

    # --------------------------------------------------------------------------- helpers
    def _thumb_or_empty(self, item_id: int, size: int) -> bytes:
        """A thumbnail, or empty bytes (the gallery shows a blank) for an unreadable image."""
        if self._items["kind"].iat[item_id] != "image":
            return b""
        try:
            return thumbnails.thumbnail(self.collection, item_id, size, items=self._items)
        except thumbnails.ThumbnailError as exc:
            _log.warning("no thumbnail for item %d: %s", item_id, exc)
            return b""

    def _title(self, item_id: int) -> str:
        return item_title(self._items.iloc[item_id], item_id)

    def _show_error(self, message: str) -> None:
        self.last_error = message
        # Re-setting the same text would not notify the front end, so clear it first.
        self.error = ""
        self.error = message


_Reply = tuple[dict[str, Any], list[Any]]

if TYPE_CHECKING:
    def _provides_view_host(widget: ExplorerWidget) -> ViewHost:
        return widget  # mypy: the widget keeps the views' contract (views.ViewHost)


def _one_buffer(buffers: list[Any]) -> np.ndarray:
    if len(buffers) != 1:
        raise WireError(f"expected one uint32 id buffer, got {len(buffers)} buffers")
    return ids_from_buffer(buffers[0])


def _describe_error(exc: BaseException) -> str:
    text = str(exc) or "(no message)"
    return text if isinstance(exc, WireError) else f"{type(exc).__name__}: {text}"


def _default_colour(items: pd.DataFrame, columns: list[str]) -> str:
    for column in columns:
        if column not in FACET_COLUMNS and items[column].nunique(dropna=True) > 1:
            return column
    return "kind"
