"""The widget's analysis views without a browser: what each method sends, and its errors."""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from mclip_explorer import analysis
from mclip_explorer.widget.codecs import WireError
from mclip_explorer.widget.explorer import ExplorerWidget
from tests.browser.toydata import build_collection, make_images

GERMAN = ["rot", "blau", "grün", "gelb"]
LANES = {"en": "red", "de": "rot", "ru": "красный"}


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_collection(tmp_path_factory.mktemp("views"))


@pytest.fixture(scope="module")
def images_only(tmp_path_factory: pytest.TempPathFactory) -> Any:
    from mclip_explorer import Collection
    from mclip_explorer.models import load_model

    root = tmp_path_factory.mktemp("images-only")
    source = make_images(root / "images", per_colour=2)
    return Collection.build(source, model=load_model("toy"), out=root / "coll", progress=False)


@pytest.fixture
def widget(coll: Any) -> ExplorerWidget:
    return ExplorerWidget(coll, color_by="colour")


def binary(widget: ExplorerWidget, name: str) -> dict[str, np.ndarray]:
    """The buffers of a synced trait as ipywidgets sends them: {path below the trait: bytes}."""
    _state, paths, buffers = _remove_buffers(widget.get_state(name))
    assert paths, f"{name} carries no binary buffer"
    return {"/".join(map(str, p[1:])): b for p, b in zip(paths, buffers, strict=True)}


def f32(data: Any) -> np.ndarray:
    return np.frombuffer(data, dtype="<f4")


def u32(data: Any) -> np.ndarray:
    return np.frombuffer(data, dtype="<u4")


# -------------------------------------------------------------------------- colour columns
def test_zero_shot_colours_by_label_with_confidence_as_opacity(
    widget: ExplorerWidget, coll: Any
) -> None:
    result = widget.color_by_zero_shot(GERMAN, template="{}")
    pd.testing.assert_frame_equal(result, analysis.zero_shot(coll, GERMAN, template="{}"))
    assert widget.color_by == "zero-shot" and widget.color_columns[-1] == "zero-shot"
    # Classes in the order given (not by frequency); text items were not classified.
    assert widget._color_labels == [*GERMAN, "(none)"]
    codes = np.frombuffer(binary(widget, "_color_codes")[""], dtype=np.uint8)
    opacity = f32(binary(widget, "_color_opacity")[""])
    ids = widget._point_ids
    by_id = result.set_index("id")
    for point, item in enumerate(ids):
        if item in by_id.index:
            assert widget._color_labels[codes[point]] == by_id.at[item, "label"]
            assert opacity[point] == pytest.approx(max(by_id.at[item, "confidence"], 0.15))
        else:
            assert widget._color_labels[codes[point]] == "(none)" and opacity[point] == 0.8
    assert opacity.min() < 0.9  # the toy model is unsure of some items


def test_switching_column_drops_the_opacity_and_back_restores_it(widget: ExplorerWidget) -> None:
    widget.color_by_zero_shot(GERMAN, opacity=False)
    assert len(f32(widget._color_opacity)) == 0
    widget.color_by_zero_shot(GERMAN, name="zs")
    widget.color_by = "shade"
    assert len(f32(widget._color_opacity)) == 0 and widget._color_labels == ["dark", "light",
                                                                              "(none)"]
    widget.set_state({"color_by": "zs"})  # the picker, from the front end
    assert len(f32(widget._color_opacity)) == len(widget._point_ids)
    assert widget._color_labels[:4] == GERMAN


def test_color_by_values_takes_a_series_by_id_or_one_value_per_item(
    widget: ExplorerWidget, coll: Any
) -> None:
    n = len(coll.items)
    widget.color_by_values(pd.Series(["odd", "even"], index=[3, 8]), "mine")
    codes = np.frombuffer(widget._color_codes, dtype=np.uint8)
    labels = [widget._color_labels[c] for c in codes]
    assert labels[3] == "odd" and labels[8] == "even" and labels.count("(none)") == n - 2
    before = widget.color_by
    widget.color_by_values(np.arange(n) % 2, "mine")  # same name: replaced and redrawn
    assert widget.color_by == before == "mine" and widget.color_columns.count("mine") == 1
    assert sorted(widget._color_labels) == ["0", "1"]


@pytest.mark.parametrize(
    ("values", "name", "opacity", "error", "message"),
    [
        (["x"], "colour", None, ValueError, "'colour' is a column of collection.items"),
        (["x"], "  ", None, ValueError, "name must be a non-empty string"),
        ([1, 2, 3], "v", None, ValueError, "one value per item"),
        (pd.Series([1], index=[10_000]), "v", None, WireError, "no item with id 10000"),
        (pd.Series([1], index=["a"]), "v", None, ValueError, "indexed by item id"),
        (pd.Series([1, 2], index=[4, 4]), "v", None, ValueError, "repeated item ids"),
        (pd.Series([1], index=[4]), "v", pd.Series([1.5], index=[4]), ValueError,
         "opacity values must lie in"),
    ],
)
def test_color_by_values_refuses_bad_input(
    widget: ExplorerWidget, values: Any, name: str, opacity: Any, error: type, message: str
) -> None:
    columns = list(widget.color_columns)
    with pytest.raises(error, match=message):
        widget.color_by_values(values, name, opacity=opacity)
    assert widget.color_by == "colour" and widget.color_columns == columns


def test_zero_shot_errors_come_from_the_analysis(widget: ExplorerWidget) -> None:
    with pytest.raises(ValueError, match="at least two classes"):
        widget.color_by_zero_shot(["rot"])
    with pytest.raises(ValueError, match="exactly one"):
        widget.color_by_zero_shot(GERMAN, template="ein Foto")


# ---------------------------------------------------------------------------- gap layouts
def test_gap_layouts_travel_once_as_one_float32_buffer(
    widget: ExplorerWidget, coll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[Any] = []
    real = analysis.modality_gap
    monkeypatch.setattr(analysis, "modality_gap", lambda c: calls.append(c) or real(c))
    assert widget._gap_coords is None  # nothing is computed or sent before it is asked for
    widget.selection = [5, 6]
    widget.results["kept"] = pd.DataFrame()
    gap = widget.show_gap()
    assert widget.map_view == "gap-corrected"
    both = f32(binary(widget, "_gap_coords")[""]).reshape(-1, 4)
    ids = widget._point_ids
    np.testing.assert_allclose(both[:, :2], gap.coords(corrected=False)[ids], rtol=1e-6)
    np.testing.assert_allclose(both[:, 2:], gap.coords(corrected=True)[ids], rtol=1e-6)
    sent = widget._gap_coords
    widget.show_gap(corrected=False)
    widget.set_state({"map_view": "gap-corrected"})  # the toggle, from the front end
    widget.map_view = "map"
    assert widget._gap_coords is sent and len(calls) == 1
    # Switching layouts keeps the selection and the queries.
    assert widget.selection["id"].tolist() == [5, 6] and "kept" in widget.results


def test_gap_toggle_needs_text_items(images_only: Any) -> None:
    widget = ExplorerWidget(images_only)
    resent: list[Any] = []
    widget.send_state = lambda key=None: resent.append(key)  # type: ignore[method-assign]
    with pytest.raises(ValueError, match=r"no text items.*add_texts"):
        widget.show_gap()
    with pytest.raises(ValueError, match="no text items"):
        widget.map_view = "gap"
    # From the front end: shown in the widget, and the toggle is set back.
    widget.set_state({"map_view": "gap-corrected"})
    assert widget.map_view == "map" and "map_view" in resent
    assert widget.error.startswith("cannot switch the map:") and "no text items" in widget.error
    with pytest.raises(Exception, match="map_view"):
        widget.map_view = "sideways"


# ----------------------------------------------------------------------------------- lanes
def test_lanes_send_each_language_as_a_query_with_exact_overlap(
    widget: ExplorerWidget, coll: Any
) -> None:
    lanes = widget.show_lanes(LANES, k=5)
    expected = analysis.language_lanes(coll, LANES, 5)
    pd.testing.assert_frame_equal(lanes.overlap, expected.overlap)
    assert widget.lanes is lanes
    state = widget._lanes
    assert state["langs"] == list(LANES) and state["reference"] == "en"
    assert state["labels"] == ["en: red", "de: rot", "ru: красный"]
    buffers = binary(widget, "_lanes")
    assert set(buffers) == {"ids", "scores", "xy", "where", "overlap", "rank_corr"}
    np.testing.assert_array_equal(u32(buffers["ids"]), expected.hits["id"])
    np.testing.assert_allclose(f32(buffers["scores"]), expected.hits["score"], rtol=1e-6)
    np.testing.assert_allclose(f32(buffers["xy"]).reshape(-1, 2),
                               coll.coords[expected.hits["id"]], rtol=1e-6)
    np.testing.assert_allclose(f32(buffers["where"]).reshape(-1, 2),
                               expected.queries[["x", "y"]], rtol=1e-5)
    np.testing.assert_allclose(f32(buffers["overlap"]).reshape(3, 3), expected.overlap, rtol=1e-6)
    np.testing.assert_allclose(f32(buffers["rank_corr"]), expected.rank_corr, rtol=1e-5)
    assert state["titles"] == [widget._title(int(i)) for i in expected.hits["id"]]
    # Each lane is also a query result in Python, like a typed query.
    assert widget.results["de: rot"]["id"].tolist() == expected.top_ids()["de"]
    # Showing other lanes replaces these; clearing removes them.
    widget.show_lanes({"fr": "rouge", "es": "rojo"}, reference="es")
    assert "de: rot" not in widget.results and widget._lanes["reference"] == "es"
    assert widget._lanes["serial"] > state["serial"]
    widget.clear_lanes()
    assert widget._lanes == {} and widget.lanes is None and "fr: rouge" not in widget.results


def test_lanes_default_to_the_widget_k_and_refuse_bad_input(widget: ExplorerWidget) -> None:
    widget.show_lanes({"en": "red", "de": "rot"})
    assert len(u32(widget._lanes["ids"])) == 2 * widget.k
    with pytest.raises(ValueError, match="k must be an integer between 1 and 100"):
        widget.show_lanes(LANES, k=0)
    with pytest.raises(ValueError, match="non-empty string"):
        widget.show_lanes({"en": ""})
    with pytest.raises(ValueError, match="reference language 'xx'"):
        widget.show_lanes(LANES, reference="xx")


def test_lanes_closed_in_the_page_can_be_shown_again(widget: ExplorerWidget) -> None:
    widget.show_lanes(LANES, k=3)
    # What js/views.ts sends when the matrix is closed: a forget per lane, then _lanes = {}.
    for rid, label in enumerate(widget._lanes["labels"], start=1):
        widget._handle_custom_msg({"rid": rid, "op": "forget", "label": label}, [])
    widget.set_state({"_lanes": {}})
    assert widget.results == {} and widget._lanes == {}
    widget.show_lanes({"en": "red", "fr": "rouge"}, k=3)
    assert set(widget.results) == {"en: red", "fr: rouge"}
    assert widget._lanes["langs"] == ["en", "fr"]


# ----------------------------------------------------------------------------------- panels
def panel_rows(widget: ExplorerWidget) -> list[list[int]]:
    buffers = binary(widget, "_panel")
    ids, offsets = u32(buffers["ids"]), u32(buffers["offsets"])
    return [ids[a:b].tolist() for a, b in itertools.pairwise(offsets)]


def test_duplicates_panel_lists_groups_keeper_first(widget: ExplorerWidget, coll: Any) -> None:
    dups = widget.show_duplicates(threshold=0.95)
    pd.testing.assert_frame_equal(dups, analysis.near_duplicates(coll, 0.95))
    groups = dups.groupby("group")["id"].apply(list).tolist()
    assert len(groups) >= 2 and panel_rows(widget) == groups
    panel = widget._panel
    assert panel["kind"] == "duplicates" and panel["total"] == len(groups)
    keepers = dups[dups["keeper"]].set_index("group")["id"]
    flat = [i for g in groups for i in g]
    for item, note in zip(flat, panel["notes"], strict=True):
        assert (note == "keeper") == (item in keepers.to_numpy())
    assert all(row[0] == keepers[g] for g, row in enumerate(panel_rows(widget)))
    assert panel["cells"][0][2].startswith(f"keep #{keepers[0]} ")
    assert panel["titles"] == [widget._title(i) for i in flat]
    widget.show_duplicates(threshold=1.0)  # nothing is that close: an empty panel, no error
    assert widget._panel["total"] == 0 and panel_rows(widget) == []
    widget.clear_panel()
    assert widget._panel == {}
    with pytest.raises(ValueError, match="threshold"):
        widget.show_duplicates(threshold=1.5)


def test_hubs_panel_lists_hubs_and_the_queries_that_found_them(
    widget: ExplorerWidget, coll: Any
) -> None:
    queries = {"en": ["red", "blue", "green", "a red car", "yellow"],
               "de": ["rot", "blau", "grün"]}
    hubs = widget.show_hubs(queries, k=5)
    expected = analysis.hubness(coll, queries, k=5)
    pd.testing.assert_frame_equal(hubs.hubs, expected.hubs)
    assert len(expected.hubs) >= 1
    assert panel_rows(widget) == [[i] for i in expected.hubs["id"]]
    first = int(expected.hubs["id"].iloc[0])
    texts = expected.queries_of(first)["text"].tolist()
    assert widget._panel["details"][0] == "retrieved by: " + " · ".join(texts)
    assert widget._panel["kind"] == "hubs" and widget._panel["header"][2] == "N5"
    with pytest.raises(ValueError, match="k must be a positive integer"):
        widget.show_hubs(queries, k=0)


def test_many_rows_are_capped_but_counted(
    widget: ExplorerWidget, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("mclip_explorer.widget.views.MAX_PANEL_ROWS", 2)
    dups = widget.show_duplicates(threshold=0.95)
    assert widget._panel["total"] == dups["group"].nunique() > 2
    assert len(widget._panel["cells"]) == 2 and len(panel_rows(widget)) == 2


def test_a_panel_click_highlights_live_ids_only(widget: ExplorerWidget, coll: Any) -> None:
    buffer = memoryview(np.array([14, 15], dtype="<u4")).cast("B")
    widget.set_state({"highlighted_ids": buffer})  # what js/views.ts sends on a row click
    assert widget.highlighted_ids.tolist() == [14, 15] and widget.error == ""
    bad = memoryview(np.array([14, 99_999], dtype="<u4")).cast("B")
    widget.set_state({"highlighted_ids": bad})
    assert "highlight refused: no item with id 99999" in widget.error
    assert widget.highlighted_ids.tolist() == []


def test_views_set_before_display_are_in_the_initial_state(coll: Any) -> None:
    # State, not one-off messages: a view set in the same cell as explore() is not lost.
    widget = ExplorerWidget(coll)
    widget.show_lanes(LANES, k=3)
    widget.show_duplicates()
    state, paths, _ = _remove_buffers(widget.get_state())
    names = {p[0] for p in paths}
    assert {"_lanes", "_panel"} <= names
    assert state["_lanes"]["langs"] == list(LANES) and state["_panel"]["kind"] == "duplicates"
