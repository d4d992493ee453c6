"""The widget's level of detail and kernel-side selection, without a browser."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from mclip_explorer.widget.explorer import ExplorerWidget
from tests.browser.toydata import build_collection
from tests.test_widget import Front


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_collection(tmp_path_factory.mktemp("widget-lod"))


def f32(view: Any) -> np.ndarray:
    return np.frombuffer(view, dtype="<f4")


def u32(view: Any) -> np.ndarray:
    return np.frombuffer(view, dtype="<u4")


@pytest.fixture
def lod(coll: Any) -> Front:
    return Front(ExplorerWidget(coll, color_by="colour", lod_threshold=5, lod_points=6))


def test_small_maps_send_every_point_and_no_overview(coll: Any) -> None:
    widget = ExplorerWidget(coll)
    assert not widget.lod_active and widget._lod == {}
    assert len(u32(widget._ids)) == len(coll.items)


def test_above_the_threshold_the_state_holds_a_sample_and_a_density(
        lod: Front, coll: Any) -> None:
    widget = lod.widget
    assert widget.lod_active
    state, paths, buffers = _remove_buffers(widget.get_state())
    ids = u32(widget._ids)
    xy = coll.coords
    ends = {int(xy[:, 0].argmin()), int(xy[:, 0].argmax()), int(xy[:, 1].argmin()),
            int(xy[:, 1].argmax())}  # the map's edges: the view fitted to the sample is all of it
    assert 0 < len(ids) <= 6 + 4 and ends <= set(ids.tolist())
    np.testing.assert_array_equal(f32(widget._coords).reshape(-1, 2), coll.coords[ids])
    assert len(widget._color_codes) == len(ids)
    lod_state = state["_lod"]
    assert lod_state["total"] == len(coll.items) and not lod_state["complete"]
    density = f32(buffers[[p[:2] for p in paths].index(["_lod", "density"])])
    x0, y0, dx, dy, rows, cols = lod_state["grid"]
    assert density.size == rows * cols and density.sum() == len(coll.items)
    xy = coll.coords
    assert (xy[:, 0] >= x0).all() and (xy[:, 0] <= x0 + dx * cols).all()
    assert (xy[:, 1] >= y0).all() and (xy[:, 1] <= y0 + dy * rows).all()


def test_viewport_returns_every_point_inside_once_it_fits(lod: Front, coll: Any) -> None:
    xy = coll.coords
    centre = xy[0]
    near = np.argsort(np.abs(xy - centre).max(axis=1))[:4]  # a square holding 4 points
    half = float(np.abs(xy[near] - centre).max()) + 1e-4
    reply, buffers = lod.request("viewport", x0=float(centre[0] - half),
                                 x1=float(centre[0] + half), y0=float(centre[1] - half),
                                 y1=float(centre[1] + half), layout="map")
    inside = np.flatnonzero((np.abs(xy - centre) <= half).all(axis=1))
    assert reply["ok"] and reply["complete"] and reply["shown"] == len(inside)
    np.testing.assert_array_equal(np.sort(u32(buffers[1])), inside)
    np.testing.assert_array_equal(f32(buffers[0]).reshape(-1, 2), xy[u32(buffers[1])])
    codes = np.frombuffer(buffers[3], np.uint8)
    labels = lod.widget._color_labels
    colours = coll.items["colour"].to_numpy()[u32(buffers[1])]
    assert [labels[c] for c in codes] == [c if isinstance(c, str) else "(none)" for c in colours]


def test_whole_map_is_bounded_and_includes_query_hits(lod: Front, coll: Any) -> None:
    reply, buffers = lod.request("search", text="red", k=8)
    hits = u32(buffers[0])
    reply, buffers = lod.request("viewport", layout="map")
    ids = set(u32(buffers[1]).tolist())
    assert not reply["complete"] and set(hits.tolist()) <= ids
    assert len(ids) <= 6 + len(hits) + 4  # budget, hits, the map's 4 extreme points


def test_box_and_lasso_select_over_all_points(lod: Front, coll: Any) -> None:
    xy = coll.coords
    lo, hi = np.percentile(xy, 20, axis=0), np.percentile(xy, 80, axis=0)
    box = np.array([lo[0], hi[0], lo[1], hi[1]], "<f4")
    reply, _ = lod.request("select", [memoryview(box).cast("B")], shape="box", layout="map")
    expected = [i for i, (x, y) in enumerate(xy.tolist())
                if box[0] <= x <= box[1] and box[2] <= y <= box[3]]
    assert reply["count"] == len(expected) > 6  # more than the page draws
    assert lod.widget.selection["id"].tolist() == expected
    triangle = np.array([lo[0], lo[1], hi[0], lo[1], lo[0], hi[1]], "<f4")
    lod.request("select", [memoryview(triangle).cast("B")], shape="lasso", layout="map")
    # Independent check: inside the right triangle with legs along the axes.
    u = (xy[:, 0] - lo[0]) / (hi[0] - lo[0])
    v = (xy[:, 1] - lo[1]) / (hi[1] - lo[1])
    assert lod.widget.selection["id"].tolist() == np.flatnonzero(
        (u > 0) & (v > 0) & (u + v < 1)).tolist()
    lod.request("select", shape="none")
    assert len(lod.widget.selection) == 0


def test_selected_points_are_pinned_into_viewports(lod: Front, coll: Any) -> None:
    lod.widget.selection = [3, 9, 17]
    _, buffers = lod.request("viewport", layout="map")
    assert {3, 9, 17} <= set(u32(buffers[1]).tolist())


@pytest.mark.parametrize(("payload", "message"), [
    ({"x0": 0, "x1": "a", "y0": 0, "y1": 1}, "'x1' must be a finite number"),
    ({"layout": "elsewhere"}, "unknown layout"),
    ({"layout": "gap"}, "has not been computed"),
])
def test_bad_viewport_requests_are_refused(lod: Front, payload: dict[str, Any],
                                           message: str) -> None:
    reply, _ = lod.request("viewport", **payload)
    assert not reply["ok"] and message in reply["error"]


def test_bad_selection_requests_are_refused(lod: Front) -> None:
    reply, _ = lod.request("select", [memoryview(np.zeros(3, "<f4")).cast("B")], shape="box")
    assert not reply["ok"] and "a box is 4 numbers" in reply["error"]
    reply, _ = lod.request("select", [memoryview(np.array([0, np.nan, 1, 2, 3, 4], "<f4")
                                                 ).cast("B")], shape="lasso")
    assert not reply["ok"] and "finite" in reply["error"]
    reply, _ = lod.request("select", shape="circle")
    assert not reply["ok"] and "unknown selection shape" in reply["error"]


def test_bad_lod_settings_are_refused(coll: Any) -> None:
    with pytest.raises(ValueError, match="lod_points must be a positive integer"):
        ExplorerWidget(coll, lod_points=0)


def test_gap_layout_in_lod_mode_is_fetched_by_viewport(lod: Front, coll: Any) -> None:
    gap = lod.widget.show_gap()
    assert lod.widget._gap_coords is None  # not sent whole
    _reply, buffers = lod.request("viewport", layout="gap-corrected")
    ids = u32(buffers[1])
    np.testing.assert_allclose(f32(buffers[0]).reshape(-1, 2),
                               gap.coords(corrected=True)[ids], rtol=1e-6)


def test_the_static_picture_of_a_big_map_draws_a_stride(coll: Any, monkeypatch: Any) -> None:
    from mclip_explorer.widget import static_image

    drawn: list[tuple[np.ndarray, np.ndarray]] = []
    monkeypatch.setattr(static_image, "MAX_PICTURE_POINTS", 10)
    monkeypatch.setattr(static_image, "map_png",
                        lambda xy, codes: drawn.append((xy, codes)) or b"png")
    widget = ExplorerWidget(coll, color_by="colour")
    assert static_image.map_picture(widget) == b"png"
    xy, codes = drawn[0]
    ids = np.arange(len(coll.items))[::5]  # 47 points, at most 10: every 5th
    np.testing.assert_array_equal(xy, coll.coords[ids])
    labels = widget._color_labels
    assert [labels[c] for c in codes] == [c if isinstance(c, str) else "(none)"
                                          for c in coll.items["colour"].to_numpy()[ids]]


def test_viewports_are_answered_while_the_index_is_built(coll: Any, monkeypatch: Any) -> None:
    """The first pans do not wait for the grid index (built in a thread after the first paint):
    they get the exact points of their view, or a bounded sample of them, at once."""
    import threading

    from mclip_explorer.widget import viewport

    release = threading.Event()
    built: list[bool] = []

    class SlowIndex(viewport.MapIndex):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            if kwargs.get("counts") is not None:  # the load-time build thread
                assert release.wait(30)
            super().__init__(*args, **kwargs)
            built.append(kwargs.get("counts") is not None)

    monkeypatch.setattr(viewport, "MapIndex", SlowIndex)
    front = Front(ExplorerWidget(coll, color_by="colour", lod_threshold=5, lod_points=6))
    xy = coll.coords
    centre = xy[0]
    near = np.argsort(np.abs(xy - centre).max(axis=1))[:4]
    half = float(np.abs(xy[near] - centre).max()) + 1e-4
    box = {"x0": float(centre[0] - half), "x1": float(centre[0] + half),
           "y0": float(centre[1] - half), "y1": float(centre[1] + half)}
    front.widget.selection = [1, 2]
    reply, buffers = front.request("viewport", layout="map", **box)
    assert not built, "the reply waited for the index"
    inside = np.flatnonzero((np.abs(xy - centre) <= half).all(axis=1))
    assert reply["ok"] and reply["complete"]
    # Every point of the view, plus the selected ones inside it (none outside: bounded).
    selected_inside = [i for i in (1, 2) if (np.abs(xy[i] - centre) <= half).all()]
    np.testing.assert_array_equal(np.sort(u32(buffers[1])),
                                  np.union1d(inside, selected_inside))
    np.testing.assert_array_equal(f32(buffers[0]).reshape(-1, 2), xy[u32(buffers[1])])
    reply, buffers = front.request("viewport", layout="map")  # the whole map: a sample
    assert reply["ok"] and not reply["complete"] and not built
    ids = u32(buffers[1])
    assert 6 <= len(ids) <= 8 + 4 and {1, 2} <= set(ids.tolist())  # + the map's extremes
    assert np.frombuffer(buffers[5], "<f4").sum() == len(coll.items)  # density of every point
    release.set()
    front.widget._building["map"][0].join(30)
    reply, buffers = front.request("viewport", layout="map", **box)  # from the index now
    assert built == [True] and reply["complete"]
    assert isinstance(front.widget._indexes["map"], SlowIndex)


@pytest.mark.parametrize("margin", [None, 1.0])
def test_a_view_of_the_whole_map_gets_the_points_drawn_at_load(coll: Any, margin: Any) -> None:
    """Once the index is built, a view around every point (a pan at full zoom-out) gets the same
    points as the first paint: the page has nothing to redraw."""
    # 3 points: the first paint samples a random subset of 8 x 3 < 47 points, not the index.
    front = Front(ExplorerWidget(coll, color_by="colour", lod_threshold=5, lod_points=3))
    shown = np.sort(u32(front.widget._ids))
    front.widget._index("map")  # waits for the build thread
    xy = coll.coords
    box = {} if margin is None else {
        "x0": float(xy[:, 0].min() - margin), "x1": float(xy[:, 0].max() + 2 * margin),
        "y0": float(xy[:, 1].min() - 3 * margin), "y1": float(xy[:, 1].max() + margin)}
    reply, buffers = front.request("viewport", layout="map", **box)
    assert reply["ok"] and not reply["complete"]
    np.testing.assert_array_equal(np.sort(u32(buffers[1])), shown)
