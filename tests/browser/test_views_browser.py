"""The analysis views in a real JupyterLab + Chromium: zero-shot colours, gap toggle, lanes, panel.

A notebook of its own (same server and browser as the explorer tests) so these tests neither
depend on nor disturb the explorer page's queries and selection.
"""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import REPO, kernel, open_notebook, screenshot

pytestmark = pytest.mark.browser

CODE = """\
import sys, json
from pathlib import Path
sys.path.insert(0, {repo!r})
import numpy as np
from tests.browser.toydata import build_collection
import mclip_explorer
from mclip_explorer import analysis
coll = build_collection(Path({root!r}))
w = mclip_explorer.explore(coll, color_by="colour", k=8)
w"""
LANES = {"en": "red", "de": "rot", "ru": "красный", "ar": "أحمر"}

LEGEND = "() => [...document.querySelectorAll('.mx-map .legendtext')].map(t => t.textContent)"
# The drawn x/y of every item id, read from plotly's own traces (what is on the screen).
DRAWN = """() => {
  const gd = document.querySelector('.mx-map');
  return gd.data.filter(t => t.name === 'text items').map(t => [Array.from(t.x), Array.from(t.y)]);
}"""


@pytest.fixture(scope="module")
def views(lab: dict[str, Any], browser_context: Any) -> Iterator[Any]:
    code = CODE.format(repo=str(REPO), root=str(lab["root"] / "toy-views"))
    page = open_notebook(browser_context, lab, "views.ipynb", code)
    yield page
    page.close()


@pytest.fixture(autouse=True)
def fresh_views(views: Any) -> None:
    """Every test starts from the same widget state, whatever ran before it (random order)."""
    kernel(views, "w.clear_lanes(); w.clear_panel(); w.map_view = 'map'; w.selection = [];"
                  " w.highlight([]); w.color_by = 'colour'; print(1)")
    while views.locator(".mx-row:not(.mx-pinned) .mx-remove").count():
        views.locator(".mx-row:not(.mx-pinned) .mx-remove").first.click()
    # dataset.view is set on the first switch of layout; before one the map shows "map".
    views.wait_for_function("() => !document.querySelector('.mx-row')"
                            " && (document.querySelector('.mx-map').dataset.view ?? 'map')"
                            " === 'map'", timeout=10_000)
    views.mouse.move(2, 2)


def map_pixels(page: Any) -> np.ndarray:
    style = page.add_style_tag(content=".mx-map .legend, .mx-map .modebar-container,"
                                        " .mx-overlay, .mx-overlay-labels"
                                        " { visibility: hidden !important; }")
    try:
        png = page.locator(".mx-map").screenshot()
    finally:
        style.evaluate("el => el.remove()")
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)


def test_colour_by_zero_shot_shows_its_legend_and_confidence(views: Any) -> None:
    kernel(views, 'z = w.color_by_zero_shot(["rot", "blau", "grün", "gelb"]); print(1)')
    views.wait_for_function(f"() => ({LEGEND})().join(',') === 'rot,blau,grün,gelb,text items'",
                            timeout=10_000)
    assert views.locator(".mx-picker").input_value() == "zero-shot"
    # Each class trace holds exactly the items zero_shot gave that label, with their confidence
    # as opacity.
    drawn = views.evaluate("""() => document.querySelector('.mx-map').data
        .filter(t => ['rot', 'blau', 'grün', 'gelb'].includes(t.name))
        .map(t => [t.name, t.x.length, Array.from(t.marker.opacity)])""")
    expected = kernel(views, "print(json.dumps({k: sorted(np.clip(g['confidence'], 0.15, 1)"
                             ".tolist()) for k, g in z.groupby('label', observed=True)}))")
    assert {name: n for name, n, _ in drawn} == {name: len(v) for name, v in expected.items()}
    for name, _, opacity in drawn:
        np.testing.assert_allclose(sorted(opacity), expected[name], atol=1e-6)
    assert min(min(o) for _, _, o in drawn) < 0.9  # some items are unsure, and fade
    assert views.page_errors == []


def test_gap_toggle_moves_the_points_and_keeps_queries_and_selection(views: Any) -> None:
    box = views.locator(".mx-query")
    box.fill("blau")
    box.press("Enter")
    views.locator('.mx-row[data-label="blau"] .mx-card').nth(7).wait_for(state="attached")
    kernel(views, "w.selection = [5, 6]; print(1)")
    before_pixels = map_pixels(views)
    assert views.locator(".mx-view-label").is_visible()  # the toy collection has text items
    views.locator(".mx-view").select_option("gap-corrected")
    views.wait_for_function("() => document.querySelector('.mx-map').dataset.view"
                            " === 'gap-corrected'", timeout=30_000)
    assert kernel(views, "print(json.dumps(w.map_view))") == "gap-corrected"
    expected = kernel(views, "t = np.flatnonzero(coll.items['kind'] == 'text');"
                             "c = analysis.modality_gap(coll).coords(corrected=True)[t];"
                             "print(json.dumps([c[:, 0].tolist(), c[:, 1].tolist()]))")
    drawn = views.evaluate(DRAWN)
    np.testing.assert_allclose(drawn[0], expected, rtol=1e-5)
    after_pixels = map_pixels(views)
    # About 1 % of the map's pixels change when the points move (0.98 % coloured by "colour",
    # more with fading zero-shot colours); nothing moving changes none.
    assert (np.abs(after_pixels - before_pixels).max(axis=2) > 60).mean() > 0.005
    # The query, its gallery row and the selection survive the switch.
    assert views.locator(".mx-overlay .mx-q").count() == 1
    assert views.locator(".mx-overlay .mx-q line").count() == 8
    assert views.locator('.mx-row[data-label="blau"] .mx-card').count() == 8
    assert views.evaluate("() => document.querySelector('.mx-map').data"
                          ".find(t => t.name === 'selected').x.length") == 2
    # The raw gap layout, then back to the collection's map from Python.
    views.locator(".mx-view").select_option("gap")
    views.wait_for_function("() => document.querySelector('.mx-map').dataset.view === 'gap'")
    raw = kernel(views, "t = np.flatnonzero(coll.items['kind'] == 'text');"
                        "c = analysis.modality_gap(coll).coords(corrected=False)[t];"
                        "print(json.dumps([c[:, 0].tolist(), c[:, 1].tolist()]))")
    np.testing.assert_allclose(views.evaluate(DRAWN)[0], raw, rtol=1e-5)
    kernel(views, "w.map_view = 'map'; print(1)")
    views.wait_for_function("() => document.querySelector('.mx-map').dataset.view === 'map'")
    assert views.locator(".mx-view").input_value() == "map"
    own = kernel(views, "t = np.flatnonzero(coll.items['kind'] == 'text');"
                        "print(json.dumps([coll.coords[t, 0].tolist(),"
                        " coll.coords[t, 1].tolist()]))")
    np.testing.assert_allclose(views.evaluate(DRAWN)[0], own, rtol=1e-5)
    views.locator('.mx-row[data-label="blau"] .mx-remove').click()


def test_language_lanes_draw_queries_and_the_overlap_matrix(views: Any) -> None:
    kernel(views, f"lanes = w.show_lanes({json.dumps(LANES, ensure_ascii=False)}, k=8); print(1)")
    # The matrix, the four queries on the map and their gallery rows are drawn together.
    views.wait_for_function(
        "() => document.querySelector('.mx-lanes-table')"
        f" && document.querySelectorAll('.mx-overlay .mx-q').length === {len(LANES)}"
        f" && document.querySelectorAll('.mx-row').length === {len(LANES)}", timeout=30_000)
    overlap = kernel(views, "print(json.dumps(lanes.overlap.round(2).values.tolist()))")
    shown = [[float(v) for v in views.locator(f'.mx-lanes-table tr[data-lang="{lang}"]'
                                               " td.mx-jaccard").all_inner_texts()]
             for lang in LANES]
    assert shown == overlap
    rho = kernel(views, "print(json.dumps(lanes.rank_corr.round(3).tolist()))")
    assert [float(v) for v in views.locator("tr[data-lang] td.mx-rho").all_inner_texts()] == rho
    assert views.locator(".mx-overlay .mx-q").count() == len(LANES)
    top = kernel(views, "print(json.dumps(lanes.top_ids()))")
    for lang, text in LANES.items():
        label = json.dumps(f"{lang}: {text}", ensure_ascii=False)
        cards = views.locator(f".mx-row[data-label={label}] .mx-card")
        assert [int(v) for v in cards.evaluate_all("cs => cs.map(c => c.dataset.id)")] == top[lang]
    # The widget's own overlap table (shared top-k counts) covers the lanes too.
    assert views.locator(".mx-pairs tr").count() == len(LANES)
    # Each lane's header in the matrix has its query's colour on the map.
    colours = views.locator(".mx-overlay .mx-q").evaluate_all(
        "gs => gs.map(g => g.getAttribute('stroke'))")
    assert len(set(colours)) == len(LANES)
    # Closing the matrix removes the lanes from the map, the gallery and widget.results.
    views.locator(".mx-lanes .mx-panel-close").click()
    views.wait_for_function("() => !document.querySelector('.mx-overlay .mx-q')")
    assert views.locator(".mx-lanes").is_hidden() and views.locator(".mx-row").count() == 0
    for _ in range(50):
        # Until the close arrives, _lanes still holds binary buffers: ask only whether it is empty.
        if kernel(views, "print(json.dumps([bool(w._lanes), sorted(w.results)]))") == [False, []]:
            break
        views.wait_for_timeout(200)
    else:
        pytest.fail("closing the lanes did not reach Python")


def test_clicking_a_duplicate_group_highlights_it(views: Any) -> None:
    groups = kernel(views, "d = w.show_duplicates(threshold=0.95);"
                           "print(json.dumps(d.groupby('group')['id'].apply(list).tolist()))")
    assert len(groups) >= 2
    rows = views.locator(".mx-panel-row")
    rows.first.wait_for(timeout=10_000)
    assert rows.count() == len(groups)
    rows.nth(1).click()
    for _ in range(50):
        got = kernel(views, "print(json.dumps(w.highlighted_ids.tolist()))")
        if got:
            break
        views.wait_for_timeout(200)
    assert got == groups[1]
    views.wait_for_function("() => document.querySelector('.mx-map').data"
                            f".find(t => t.name === 'highlighted').x.length === {len(groups[1])}")
    pinned = views.locator(".mx-pinned .mx-card")
    assert [int(v) for v in pinned.evaluate_all("cs => cs.map(c => c.dataset.id)")] == groups[1]
    keeper = kernel(views, "print(json.dumps(int(d[(d.group == 1) & d.keeper].id.iloc[0])))")
    assert views.locator(".mx-pinned .mx-card.mx-keeper").get_attribute("data-id") == str(keeper)


def test_clicking_a_hub_lists_the_queries_that_found_it(views: Any) -> None:
    queries = {"en": ["red", "blue", "green", "a red car", "yellow"], "de": ["rot", "blau", "grün"]}
    hubs = kernel(views, f"h = w.show_hubs({json.dumps(queries)}, k=5);"
                         "print(json.dumps(h.hubs['id'].tolist()))")
    assert hubs, "the toy queries should make at least one hub"
    views.wait_for_function("() => document.querySelector('.mx-panel').dataset.kind === 'hubs'")
    views.locator(".mx-panel-row").first.click()
    detail = views.locator(".mx-pinned .mx-detail")
    detail.wait_for(timeout=10_000)
    found_by = kernel(views, f"print(json.dumps(h.queries_of({hubs[0]})['text'].tolist()))")
    assert detail.inner_text() == "retrieved by: " + " · ".join(found_by)
    for _ in range(50):
        if kernel(views, "print(json.dumps(w.highlighted_ids.tolist()))") == [hubs[0]]:
            break
        views.wait_for_timeout(200)
    else:
        pytest.fail("the hub click did not reach widget.highlighted_ids")
    assert views.page_errors == []


def test_views_together_for_the_screenshot(views: Any) -> None:
    # Classes named in English (drawn in their own colour), each phrased in two other languages.
    classes = {"red": ["rot", "красный"], "blue": ["blau", "синий"], "green": ["grün", "緑"],
               "yellow": ["gelb", "أصفر"]}
    kernel(views, f"z = w.color_by_zero_shot({json.dumps(classes, ensure_ascii=False)},"
                  " name='zero-shot (de+ru/ja/ar)'); w.show_duplicates();"
                  f" w.show_lanes({json.dumps(LANES, ensure_ascii=False)}); print(1)")
    views.wait_for_function(f"() => ({LEGEND})().join(',') === 'red,blue,green,yellow,text items'",
                            timeout=10_000)
    views.wait_for_function("() => document.querySelector('.mx-panel').dataset.kind"
                            " === 'duplicates'")
    views.locator(".mx-panel-row").nth(1).click()
    views.locator(".mx-pinned .mx-card").first.wait_for()
    views.set_viewport_size({"width": 1300, "height": 2600})  # the whole widget, unclipped
    try:
        views.wait_for_function("() => [...document.querySelectorAll('.mx-gallery img')]"
                                ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)
        views.mouse.move(2, 2)  # no hover card in the picture
        png = screenshot(views, "explorer-views")
    finally:
        views.set_viewport_size({"width": 1300, "height": 1400})
    assert Image.open(io.BytesIO(png)).size[1] > 900
    assert views.page_errors == []
