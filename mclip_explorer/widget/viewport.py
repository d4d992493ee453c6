"""The explorer widget's map at any size: level of detail and kernel-side selection.

A mixin of :class:`~mclip_explorer.widget.ExplorerWidget`. Up to ``lod_threshold`` points the
page gets every point once (binary buffers in the initial state). Above it the page gets a
density overview plus at most ``lod_points`` points (the stratified sample of
:class:`~mclip_explorer.widget.lod.MapIndex`, with the query hits, highlights and selection
always included), and asks for the points of its viewport after each pan or zoom (``viewport``
request). Box and lasso selections are sent here as shapes and computed over all points of the
current layout (``select`` request), whatever the page draws.
"""

from __future__ import annotations

import math
import threading
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import traitlets

from mclip_explorer.widget.codecs import WireError, text_field, to_buffer
from mclip_explorer.widget.lod import (
    Density,
    GridCounts,
    MapIndex,
    in_box,
    in_polygon,
    sample_view,
    stratified_sample,
)

if TYPE_CHECKING:
    from mclip_explorer.analysis import ModalityGap

LOD_THRESHOLD = 200_000  # above this many points the map switches to density + sample
LOD_POINTS = 20_000  # points drawn at most (besides pinned ones) in level-of-detail mode
MAX_POLYGON = 10_000  # lasso vertices
LAYOUTS = ("map", "gap", "gap-corrected")

_Reply = tuple[dict[str, Any], list[Any]]


class MapDetail(traitlets.HasTraits):
    """Traits and request handlers of the level-of-detail map (mixed into ``ExplorerWidget``)."""

    _lod = traitlets.Dict().tag(sync=True)  # {} when every point is sent; else the overview

    # Set by ExplorerWidget (and AnalysisViews) before traitlets' __init__ runs.
    results: dict[str, pd.DataFrame]
    _items: pd.DataFrame
    _point_ids: np.ndarray
    _map_coords: np.ndarray
    _gap: ModalityGap | None
    if TYPE_CHECKING:
        selected_ids: np.ndarray
        highlighted_ids: np.ndarray

    def _init_detail(self, lod_threshold: int, lod_points: int) -> None:
        for name, value in (("lod_threshold", lod_threshold), ("lod_points", lod_points)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        self.lod_points = lod_points
        self.lod_active = len(self._point_ids) > lod_threshold
        """Whether the map shows a density overview and a sample (see ``docs/widget.md``)."""
        self._indexes: dict[str, MapIndex] = {}
        self._building: dict[str, tuple[threading.Thread, GridCounts, list[Any]]] = {}
        # Per point, once: a categorical or object column would be materialised per request.
        is_text = np.asarray(self._items["kind"] == "text", dtype=bool)
        if len(self._point_ids) == len(self._items):  # every item on the map (10M: no copies)
            self._point_is_text, self._row_of = is_text, self._point_ids
        else:
            self._point_is_text = is_text[self._point_ids]
            self._row_of = np.full(len(self._items), -1, np.int64)
            self._row_of[self._point_ids] = np.arange(len(self._point_ids))
        self._shown = np.arange(len(self._point_ids))  # rows the initial state carries

    def _initial_points(self) -> np.ndarray:
        """Rows of the points the initial state carries (all, or the overview's sample).

        Also sets ``_lod_state``, the ``_lod`` trait's first value (``{}``: every point).
        """
        self._lod_state: dict[str, Any] = {}
        if self.lod_active:
            # The first paint needs only the density and a sample; the full index is built
            # meanwhile in a thread from the same cell counts (requests answer without it
            # until it is done). It uses no BLAS, so it cannot hang the user's numpy work the
            # way a build thread can.
            counts = GridCounts(self._layout_xy("map"))
            sample, complete = stratified_sample(counts, None, self.lod_points)
            self._shown = np.unique(np.concatenate([sample, self._pinned(None, None),
                                                    counts.extremes]))
            density = counts.density(None)
            # The index puts this sample first: views of the whole map get it back unchanged.
            self._build_index("map", counts, sample)
            has_text = bool(self._point_is_text.any())
            self._lod_state = {"total": len(self._point_ids), "complete": complete,
                               "has_text": has_text, **_density_state(density)}
        return self._shown

    # --------------------------------------------------------------------------- layouts
    def _layout_xy(self, layout: str) -> np.ndarray:
        """``(points, 2)`` float32 positions of the map's points in a layout."""
        if layout == "map":
            if len(self._point_ids) == len(self._map_coords):  # every item on the map: no copy
                return self._map_coords
            return np.asarray(self._map_coords[self._point_ids], dtype=np.float32)
        if self._gap is None:
            raise WireError(f"the {layout!r} layout has not been computed (call show_gap())")
        return np.asarray(self._gap.coords(corrected=layout == "gap-corrected")[self._point_ids],
                          dtype=np.float32)

    def _index(self, layout: str, *, wait: bool = True) -> MapIndex | GridCounts:
        """The layout's index; with ``wait=False`` its cell counts while it is still built."""
        if layout in self._building:  # started at load
            thread, counts, result = self._building[layout]
            if thread.is_alive() and not wait:
                return counts
            thread.join()
            del self._building[layout]
            if isinstance(result[0], BaseException):
                raise result[0]
            self._indexes[layout] = result[0]
        if layout not in self._indexes:
            self._indexes[layout] = MapIndex(self._layout_xy(layout))
        return self._indexes[layout]

    def _build_index(self, layout: str, counts: GridCounts, first: np.ndarray) -> None:
        result: list[Any] = [None]

        def build() -> None:
            try:
                result[0] = MapIndex(counts.xy, counts=counts, first=first)
            except BaseException as exc:  # noqa: BLE001 - re-raised where the index is used
                result[0] = exc

        thread = threading.Thread(target=build, name=f"mclip-map-index-{layout}", daemon=True)
        self._building[layout] = (thread, counts, result)
        thread.start()

    def _pinned(self, layout: str | None, bounds: tuple[float, float, float, float] | None
                ) -> np.ndarray:
        """Rows always drawn: query hits and highlights, and the selection (bounded).

        ``layout`` None: before any index exists (the first paint), the selection's first
        ``lod_points // 2`` rows; the same (inside ``bounds``) while the index is built.
        """
        ids = [np.asarray(self.highlighted_ids, dtype=np.int64)]
        ids += [frame["id"].to_numpy(dtype=np.int64) for frame in self.results.values()]
        rows = self._row_of[np.concatenate(ids)] if ids else np.empty(0, np.int64)
        selected = self._row_of[np.asarray(self.selected_ids, dtype=np.int64)]
        selected = selected[selected >= 0]
        keep = self.lod_points // 2
        if len(selected) and layout is not None:
            index = self._index(layout, wait=False)
            if bounds is not None:
                selected = selected[in_box(index.xy[selected], bounds)]
            if len(selected) > keep and isinstance(index, MapIndex):
                # The ones the sample would draw first.
                selected = selected[np.argsort(index.priority[selected])[:keep]]
        return np.unique(np.concatenate([rows[rows >= 0], selected[:keep]]))

    # ------------------------------------------------------------------ front-end requests
    def _viewport(self, _rid: int, content: dict[str, Any], _buffers: list[Any]) -> _Reply:
        """Points (and density) of a viewport: ``x0, x1, y0, y1`` (absent: the whole map)."""
        layout = _layout_field(content)
        bounds = _bounds_field(content)
        index = self._index(layout, wait=False)
        pinned = self._pinned(layout, bounds)
        if not self.lod_active:
            rows, complete = np.arange(index.n), True
        elif isinstance(index, MapIndex):
            rows, complete = index.query(bounds, self.lod_points, pinned)
        else:  # the first pans while the index is built: no waiting for it
            rows, complete = sample_view(index, bounds, self.lod_points, pinned)
        density = index.density(bounds)
        codes, opacity = self._point_colours(rows)
        reply = {"complete": complete, "total": index.n, "shown": len(rows), "layout": layout,
                 **_density_state(density, with_buffer=False)}
        out = [to_buffer(index.xy[rows], "float32"), to_buffer(self._point_ids[rows], "uint32"),
               to_buffer(self._point_is_text[rows], "uint8"),
               to_buffer(codes, "uint8"), to_buffer(opacity, "float32"),
               to_buffer(density.counts, "float32")]
        return reply, out

    def _select(self, _rid: int, content: dict[str, Any], buffers: list[Any]) -> _Reply:
        """Box (``x0, x1, y0, y1``) or lasso (interleaved vertices) over every point."""
        shape = text_field(content, "shape", max_length=10)
        if shape not in ("box", "lasso", "none"):
            raise WireError(f"unknown selection shape {shape!r}")
        if shape == "none":
            self.selected_ids = np.empty(0, np.int64)
            return {"count": 0}, []
        xy = self._layout_xy(_layout_field(content))
        values = _floats(buffers)
        if shape == "box":
            if len(values) != 4:
                raise WireError(f"a box is 4 numbers (x0, x1, y0, y1), got {len(values)}")
            mask = in_box(xy, (values[0], values[1], values[2], values[3]))
        else:
            if len(values) % 2 or len(values) > 2 * MAX_POLYGON:
                raise WireError(f"a lasso is at most {MAX_POLYGON} x, y pairs, got "
                                f"{len(values)} numbers")
            mask = in_polygon(xy, values.reshape(-1, 2))
        ids = self._point_ids[mask]
        self.selected_ids = ids
        return {"count": len(ids)}, []

    def _point_colours(self, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        codes, opacity = self._colours
        return codes[self._point_ids[rows]], (opacity[self._point_ids[rows]]
                                              if len(opacity) else np.empty(0, np.float32))

    # Colour codes and opacity per item row, set by ExplorerWidget._recolour.
    _colours: tuple[np.ndarray, np.ndarray] = (np.empty(0, np.uint8), np.empty(0, np.float32))


def _density_state(density: Density, *, with_buffer: bool = True) -> dict[str, Any]:
    rows, cols = density.counts.shape
    state: dict[str, Any] = {"grid": [density.x0, density.y0, density.dx, density.dy, rows, cols]}
    if with_buffer:
        state["density"] = to_buffer(density.counts, "float32")
    return state


def _layout_field(content: dict[str, Any]) -> str:
    layout = content.get("layout", "map")
    if layout not in LAYOUTS:
        raise WireError(f"unknown layout {layout!r}; choose from {list(LAYOUTS)}")
    return str(layout)


def _bounds_field(content: dict[str, Any]) -> tuple[float, float, float, float] | None:
    keys = ("x0", "x1", "y0", "y1")
    if all(content.get(k) is None for k in keys):
        return None
    values = [content.get(k) for k in keys]
    for key, value in zip(keys, values, strict=True):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(
                value):
            raise WireError(f"message field {key!r} must be a finite number, got {value!r}")
    return float(values[0]), float(values[1]), float(values[2]), float(values[3])  # type: ignore[arg-type]


def _floats(buffers: list[Any]) -> np.ndarray:
    if len(buffers) != 1:
        raise WireError(f"expected one float32 buffer, got {len(buffers)} buffers")
    raw = memoryview(buffers[0]).cast("B")
    if raw.nbytes % 4:
        raise WireError(f"a buffer of {raw.nbytes} bytes is not a whole number of float32")
    values = np.frombuffer(raw, dtype="<f4").astype(np.float64)
    if not np.isfinite(values).all():
        raise WireError("shape coordinates must be finite numbers")
    return values
