"""The explorer widget without a browser: state buffers, request messages, errors, selection."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from ipywidgets.widgets.widget import _remove_buffers

from mclip_explorer.widget.codecs import WireError, encode_column
from mclip_explorer.widget.explorer import ExplorerWidget
from tests.browser.toydata import build_collection, make_images


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_collection(tmp_path_factory.mktemp("widget"))


class Front:
    """Plays the front end: sends requests the way js/rpc.ts does and collects the replies."""

    def __init__(self, widget: ExplorerWidget) -> None:
        self.widget = widget
        self.sent: list[tuple[dict[str, Any], list[Any]]] = []
        widget.send = lambda content, buffers=None: self.sent.append((content, list(buffers or [])))
        self.rid = 0

    def request(self, op: str, buffers: list[Any] | None = None, **payload: Any):
        self.rid += 1
        self.widget._handle_custom_msg({"rid": self.rid, "op": op, **payload}, buffers or [])
        replies = [(c, b) for c, b in self.sent if c.get("rid") == self.rid and "ok" in c]
        assert len(replies) == 1
        return replies[0]


def ids_buffer(*ids: int) -> memoryview:
    return memoryview(np.array(ids, dtype="<u4")).cast("B")


@pytest.fixture
def front(coll: Any) -> Front:
    return Front(ExplorerWidget(coll, color_by="colour"))


# ----------------------------------------------------------------------------- map state
def test_map_state_is_binary_buffers_not_json_lists(front: Front, coll: Any) -> None:
    state, paths, buffers = _remove_buffers(front.widget.get_state())
    assert {"_coords", "_ids", "_kinds", "_color_codes"} <= {p[0] for p in paths}
    n = len(coll.items)
    by_name = {p[0]: b for p, b in zip(paths, buffers, strict=False)}
    coords = np.frombuffer(by_name["_coords"], dtype="<f4").reshape(-1, 2)
    ids = np.frombuffer(by_name["_ids"], dtype="<u4")
    assert len(ids) == n  # every item of the toy collection is on the map
    np.testing.assert_array_equal(coords, coll.coords[ids])
    kinds = np.frombuffer(by_name["_kinds"], dtype=np.uint8)
    np.testing.assert_array_equal(kinds == 1, coll.items["kind"].to_numpy()[ids] == "text")
    codes = np.frombuffer(by_name["_color_codes"], dtype=np.uint8)
    labels = state["_color_labels"]
    colours = coll.items["colour"].to_numpy()[ids]
    for code, colour in zip(codes, colours, strict=False):
        assert labels[code] == (colour if isinstance(colour, str) else "(none)")
    # What stays JSON (besides the bundle's source) is small: no per-point number lists.
    state.pop("_esm")
    assert len(json.dumps(state)) < 2000


def test_items_not_on_the_map_are_left_out(tmp_path: Path) -> None:
    coll = build_collection(tmp_path)
    coll.remove([0, 5])
    widget = ExplorerWidget(coll)
    ids = np.frombuffer(widget._ids, dtype="<u4")
    assert 0 not in ids and 5 not in ids and len(ids) == len(coll.items) - 2
    with pytest.raises(WireError, match="item 5 was removed"):
        widget.highlight([5])


# -------------------------------------------------------------------------------- search
@pytest.mark.parametrize("query", ["красный", "赤", "أزرق", "ein grünes Bild"])
def test_text_query_returns_what_the_collection_ranks_first(
    front: Front, coll: Any, query: str
) -> None:
    content, buffers = front.request("search", text=query, k=7)
    assert content["ok"] is True and content["label"] == query and content["source"] == -1
    expected = coll.search(query, k=7)
    np.testing.assert_array_equal(np.frombuffer(buffers[0], "<u4"), expected["id"])
    np.testing.assert_allclose(np.frombuffer(buffers[1], "<f4"), expected["score"], rtol=1e-5)
    np.testing.assert_allclose(np.frombuffer(buffers[2], "<f4").reshape(-1, 2),
                               expected[["x", "y"]].to_numpy(), rtol=1e-6)
    assert content["titles"] == [Path(p).name for p in expected["path"]]  # file names
    placed = coll.place(coll.encoder.encode_text([query]))[0][0]
    assert (content["x"], content["y"]) == pytest.approx(tuple(placed))
    progress = [c for c, _ in front.sent if "progress" in c]
    assert progress and progress[0]["rid"] == content["rid"]
    pd.testing.assert_frame_equal(front.widget.results[query], expected)


def test_search_can_carry_the_gallery_thumbnails(front: Front, coll: Any) -> None:
    content, buffers = front.request("search", text="giallo", k=4, thumbs=48)
    ids = np.frombuffer(buffers[0], "<u4")
    assert len(buffers) == 3 + 4
    for item_id, data in zip(ids, buffers[3:], strict=True):
        assert data == (Path(coll.path) / "thumbs" / "48" / f"{item_id}.webp").read_bytes()
    content, _ = front.request("search", text="giallo", thumbs=8)
    assert "thumbnail size must be between 16 and 512" in content["error"]


def test_search_by_id_is_image_to_image(front: Front, coll: Any) -> None:
    content, buffers = front.request("search", [ids_buffer(9)], k=5)
    expected = coll.search(9, k=5)
    np.testing.assert_array_equal(np.frombuffer(buffers[0], "<u4"), expected["id"])
    assert content["source"] == 9
    assert (content["x"], content["y"]) == pytest.approx(tuple(coll.coords[9]))


def test_query_text_naming_a_file_is_never_opened(
    front: Front, coll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    opened: list[Any] = []
    monkeypatch.setattr("mclip_explorer.models.toy.load_image", opened.append)
    path = coll.items["path"][0]
    assert Path(path).is_file()  # coll.search(path) would treat it as an image
    content, buffers = front.request("search", text=path, k=3)
    assert content["ok"] is True and opened == []
    vector = coll.encoder.encode_text([path])[0]
    np.testing.assert_array_equal(np.frombuffer(buffers[0], "<u4"), coll.search(vector, k=3)["id"])


# ---------------------------------------------------------------------- thumbnails, items
def test_thumbnails_are_binary_webp_for_the_asked_ids(front: Front, coll: Any) -> None:
    content, buffers = front.request("thumbs", [ids_buffer(3, 1)], size=32)
    assert content["ids"] == [3, 1]
    for data in buffers:
        assert isinstance(data, bytes) and data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert (Path(coll.path) / "thumbs" / "32" / "3.webp").is_file()


def test_item_request_gives_title_metadata_and_thumbnail(front: Front, coll: Any) -> None:
    content, buffers = front.request("item", [ids_buffer(4)])
    assert content["title"] == Path(coll.items["path"][4]).name
    assert content["meta"]["colour"] == "orange"
    assert len(buffers) == 1 and buffers[0][8:12] == b"WEBP"
    text_id = int(np.flatnonzero(coll.items["kind"] == "text")[0])
    content, buffers = front.request("item", [ids_buffer(text_id)])
    assert content["kind"] == "text" and content["text"] == "a red car" and buffers == []


# ------------------------------------------------------------------------- bad requests
@pytest.mark.parametrize(
    ("op", "buffers", "payload", "message"),
    [
        ("eval", None, {}, "unknown request 'eval'"),
        ("thumbs", ["not a buffer"], {}, "binary uint32 buffer"),
        ("thumbs", [b"\x01\x02\x03"], {}, "not a whole number of uint32"),
        ("thumbs", "ids", {}, "no item with id 4000000"),
        ("thumbs", "text", {}, "is not an image item"),
        ("thumbs", "one", {"size": 5000}, "'size' must be an integer in"),
        ("search", None, {"text": 42}, "'text' must be a string"),
        ("search", None, {"text": "x" * 1001}, "longer than 1000"),
        ("search", None, {"text": "   "}, "the query is empty"),
        ("search", None, {"text": "rot", "k": 0}, "'k' must be an integer in"),
        ("search", "two", {}, "exactly one id"),
    ],
)
def test_bad_requests_get_a_readable_error(
    front: Front, coll: Any, op: str, buffers: Any, payload: dict, message: str
) -> None:
    text_id = int(np.flatnonzero(coll.items["kind"] == "text")[0])
    named = {"ids": [ids_buffer(1, 4_000_000)], "text": [ids_buffer(text_id)],
             "one": [ids_buffer(1)], "two": [ids_buffer(1, 2)]}
    sent = named[buffers] if isinstance(buffers, str) else buffers
    content, out = front.request(op, sent, **payload)
    assert content["ok"] is False and message in content["error"] and out == []
    assert front.widget.error == content["error"] == front.widget.last_error


def test_exception_in_a_kernel_callback_reaches_the_widget(
    front: Front, coll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    def boom(*_: Any, **__: Any) -> None:
        raise RuntimeError("the index is on fire")

    monkeypatch.setattr(coll, "search", boom)
    content, _ = front.request("search", text="blau")
    assert content == {"rid": content["rid"], "ok": False,
                       "error": "RuntimeError: the index is on fire"}
    assert front.widget.error == "RuntimeError: the index is on fire"


def test_messages_that_are_not_requests_are_ignored(front: Front) -> None:
    front.widget._handle_custom_msg({"op": "search", "text": "rot"}, [])
    front.widget._handle_custom_msg(["not", "a", "dict"], [])
    assert front.sent == [] and front.widget.error == ""


def test_forget_drops_a_query_result(front: Front) -> None:
    front.request("search", text="rot")
    assert "rot" in front.widget.results
    front.request("forget", label="rot")
    assert "rot" not in front.widget.results


# ------------------------------------------------------------------------------ selection
def test_selection_from_the_front_end_reaches_python(front: Front, coll: Any) -> None:
    seen: list[pd.DataFrame] = []
    front.widget.observe(lambda change: seen.append(change["new"]), names="selection")
    front.widget.set_state({"selected_ids": ids_buffer(7, 2, 11)})
    assert len(seen) == 1
    pd.testing.assert_frame_equal(front.widget.selection, coll.items.iloc[[7, 2, 11]])
    front.widget.set_state({"selected_ids": ids_buffer()})
    assert front.widget.selection.empty and len(seen) == 2


def test_selection_set_from_python_is_sent_as_uint32(front: Front, coll: Any) -> None:
    front.widget.selection = coll.items.iloc[[3, 4]]
    _state, paths, buffers = _remove_buffers(front.widget.get_state("selected_ids"))
    assert paths == [["selected_ids"]]
    np.testing.assert_array_equal(np.frombuffer(buffers[0], "<u4"), [3, 4])
    front.widget.selection = [5]
    assert front.widget.selection["id"].tolist() == [5]
    with pytest.raises(WireError, match="no item with id 999"):
        front.widget.selection = [999]


def test_bad_selection_from_the_front_end_shows_an_error(front: Front) -> None:
    front.widget.set_state({"selected_ids": ids_buffer(1, 10_000)})
    assert "selection refused: no item with id 10000" in front.widget.error
    assert front.widget.selection.empty


def test_highlight(front: Front) -> None:
    front.widget.highlight([4, 4, 2])
    _, _paths, buffers = _remove_buffers(front.widget.get_state("highlighted_ids"))
    np.testing.assert_array_equal(np.frombuffer(buffers[0], "<u4"), [4, 2])
    with pytest.raises(WireError, match="item ids must be integers"):
        front.widget.highlight([1.5])
    with pytest.raises(WireError, match="no item with id -1"):
        front.widget.highlight([-1])


# ------------------------------------------------------------------------------ colouring
def test_colour_picker_recolours_and_refuses_unknown_columns(front: Front, coll: Any) -> None:
    assert "colour" in front.widget.color_columns and "path" not in front.widget.color_columns
    front.widget.set_state({"color_by": "shade"})
    codes = np.frombuffer(front.widget._color_codes, dtype=np.uint8)
    labels = front.widget._color_labels
    expected = coll.items["shade"].fillna("(none)").tolist()
    assert [labels[c] for c in codes] == expected
    front.widget.set_state({"color_by": "nope"})
    assert "cannot colour by 'nope'" in front.widget.error
    with pytest.raises(ValueError, match="color_by='nope' is not a column"):
        ExplorerWidget(coll, color_by="nope")
    with pytest.raises(ValueError, match="k must be between"):
        ExplorerWidget(coll, k=0)


def test_encode_column_bins_numbers_and_pools_rare_values() -> None:
    codes, labels = encode_column(pd.Series(np.arange(100, dtype=float)))
    assert len(labels) == 8 and codes.min() == 0 and codes.max() == 7
    assert np.all(np.diff(codes.astype(int)) >= 0)  # bins follow the values' order
    values = pd.Series([f"v{i}" for i in range(30)] + ["common"] * 5 + [None])
    codes, labels = encode_column(values)
    assert labels[0] == "common" and labels[-2:] == ["other", "(none)"] and len(labels) == 17
    assert labels[codes[-1]] == "(none)" and labels[codes[30]] == "common"
    assert sum(labels[c] == "other" for c in codes) == 30 - 14  # 15 colours kept, 16 pooled


# -------------------------------------------------------------------------------- explore
def test_explore_builds_a_folder_once_then_reuses_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mclip_explorer import Collection, explore
    from mclip_explorer.models import load_model

    make_images(tmp_path / "photos", per_colour=1)
    toy = load_model("toy")
    widget = explore(tmp_path / "photos", model=toy, progress=False)
    assert isinstance(widget, ExplorerWidget) and widget.n_items == 11
    assert (tmp_path / "photos.mclip" / "manifest.json").is_file()
    assert not (tmp_path / "photos" / "thumbs").exists()

    def no_rebuild(*_: Any, **__: Any) -> None:
        raise AssertionError("explore() rebuilt a collection it could reuse")

    monkeypatch.setattr(Collection, "build", no_rebuild)
    make_images(tmp_path / "photos" / "more", per_colour=1)  # 11 new files
    again = explore(tmp_path / "photos", model=toy, progress=False)
    assert again.n_items == 22
    opened = explore(tmp_path / "photos.mclip", model=toy)
    assert opened.n_items == 22 and explore(opened.collection).collection is opened.collection


def test_a_missing_bundle_says_how_to_build_it(
    coll: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import mclip_explorer.widget.explorer as widget_module

    monkeypatch.setattr(widget_module, "_BUNDLE", tmp_path / "widget.js")
    with pytest.raises(FileNotFoundError, match="cd js && npm install && npm run build"):
        ExplorerWidget(coll)
