"""Level of detail in a real JupyterLab + Chromium: one render at load, density + sample, zoom in
to every real point (hoverable), and selection over the density layer computed over all points.

The toy collection (47 points) is shown with ``lod_threshold=10, lod_points=12`` so the
level-of-detail path runs at a size a test can check point by point.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

from tests.browser.conftest import REPO, kernel, open_notebook, screenshot
from tests.browser.test_explorer_browser import TO_PIXELS, selected_in_python

pytestmark = [pytest.mark.browser, pytest.mark.usefixtures("fresh_explorer")]
BUDGET = 12
EDGES = 4  # the whole map's sample also holds its leftmost, rightmost, lowest and highest point
CODE = """\
import sys, json
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.browser.toydata import build_collection
import mclip_explorer
coll = build_collection(Path({root!r}))
w = mclip_explorer.explore(coll, color_by="colour", k=8, lod_threshold=10, lod_points={budget})
w"""

DRAWN = """() => {
  const gd = document.querySelector('.mx-map');
  const skip = new Set(['density', 'highlighted', 'selected']);
  return gd.data.filter(t => !skip.has(t.name)).reduce((n, t) => n + t.x.length, 0);
}"""
DENSITY_VISIBLE = """() => {
  const image = document.querySelector('.mx-map .imagelayer image');
  const source = image && (image.getAttribute('xlink:href') || image.getAttribute('href'));
  return Boolean(source && source.startsWith('data:image/png'));
}"""
RANGE = """() => { const fl = document.querySelector('.mx-map')._fullLayout;
  return [fl.xaxis.range.map(Number), fl.yaxis.range.map(Number)]; }"""


@pytest.fixture(scope="module")
def page(lab: dict[str, Any], browser_context: Any) -> Iterator[Any]:
    code = CODE.format(repo=str(REPO), root=str(lab["root"] / "toy-lod"), budget=BUDGET)
    page = open_notebook(browser_context, lab, "lod.ipynb", code)
    yield page
    page.close()


@pytest.fixture(autouse=True)
def fresh(page: Any) -> None:
    """Each test starts from the whole map, no queries, no selection, coloured by colour
    (so the tests hold in any order)."""
    while page.locator(".mx-remove").count():
        page.locator(".mx-remove").first.click()
    kernel(page, 'w.selection = []; w.map_view = "map"; w.color_by = "colour"; print(1)')
    page.wait_for_function("() => (document.querySelector('.mx-map').dataset.view ?? 'map')"
                           " === 'map'", timeout=20_000)
    page.locator('.mx-map .modebar-btn[data-title="Reset axes"]').click()
    settled = """() => { const m = document.querySelector('.mx-map');
      return m.dataset.complete === 'false' && m.dataset.fetching !== 'true'; }"""
    last = None
    for _ in range(40):  # the whole map is drawn and the view no longer moves
        page.wait_for_function(settled, timeout=20_000)
        now = page.evaluate(RANGE)
        if now == last:
            return
        last = now
        page.wait_for_timeout(250)
    pytest.fail("the map did not settle")


def test_the_map_appears_after_one_render(explorer: Any, page: Any) -> None:
    for p in (explorer, page):
        assert p.locator(".mx-map").get_attribute("data-renders-at-ready") == "1"


def test_zoomed_out_it_draws_a_density_and_a_bounded_sample(page: Any) -> None:
    n = kernel(page, "print(json.dumps(int(len(coll.items))))")
    assert page.locator(".mx-status").inner_text().startswith(f"{n} points")
    assert page.evaluate(DENSITY_VISIBLE)
    assert 0 < page.evaluate(DRAWN) <= BUDGET + EDGES
    assert kernel(page, "print(json.dumps(w.lod_active))") is True
    screenshot(page, "lod-overview")


def zoom_box(page: Any, lo: np.ndarray, hi: np.ndarray) -> None:
    page.locator('.mx-map .modebar-btn[data-title="Zoom"]').click()
    page.mouse.move(*lo)
    page.mouse.down()
    page.mouse.move(*hi, steps=8)
    page.mouse.up()


def test_zooming_in_shows_every_real_point_and_they_hover(page: Any) -> None:
    coords = np.array(kernel(page, "print(json.dumps(coll.coords.tolist()))"))
    pixels = np.array(page.evaluate(TO_PIXELS, coords.tolist()))
    red = pixels[:4]  # the four red images sit together
    zoom_box(page, red.min(axis=0) - 25, red.max(axis=0) + 25)
    page.wait_for_function("() => document.querySelector('.mx-map').dataset.complete === 'true'",
                           timeout=20_000)
    (x0, x1), (y0, y1) = page.evaluate(RANGE)
    # The kernel sends the view grown by half its size on each side.
    w, h = x1 - x0, y1 - y0
    inside = ((coords[:, 0] >= x0 - w / 2) & (coords[:, 0] <= x1 + w / 2)
              & (coords[:, 1] >= y0 - h / 2) & (coords[:, 1] <= y1 + h / 2))
    assert page.evaluate(DRAWN) == int(inside.sum())
    assert not page.evaluate(DENSITY_VISIBLE)  # every point is drawn: no overview under them
    # Each one is real: hovering it shows its own title and thumbnail.
    pixels = np.array(page.evaluate(TO_PIXELS, coords.tolist()))
    page.locator('.mx-map .modebar-btn[data-title="Pan"]').click()
    page.mouse.move(*pixels[2])
    page.wait_for_selector(".mx-tooltip:not([hidden]) img", timeout=10_000)
    title = kernel(page, 'print(json.dumps(Path(coll.items["path"][2]).name))')
    assert page.locator(".mx-tip-title").inner_text() == title
    screenshot(page, "lod-zoomed")
    page.locator('.mx-map .modebar-btn[data-title="Reset axes"]').click()
    page.wait_for_function("() => document.querySelector('.mx-map').dataset.complete === 'false'",
                           timeout=20_000)
    assert page.evaluate(DRAWN) <= BUDGET + EDGES


def test_box_selection_over_the_density_covers_undrawn_points(page: Any) -> None:
    page.mouse.move(2, 2)
    coords = kernel(page, "print(json.dumps(coll.coords.tolist()))")
    pixels = np.array(page.evaluate(TO_PIXELS, coords))
    box = page.locator(".mx-map .nsewdrag").first.bounding_box()
    lo = np.array([box["x"], box["y"]]) + 0.15 * np.array([box["width"], box["height"]])
    hi = np.array([box["x"], box["y"]]) + 0.85 * np.array([box["width"], box["height"]])
    for shift in range(0, 40, 2):  # no point may sit on the box edge
        a, b = lo + shift, hi - shift
        edge = (((pixels > a - 3) & (pixels < b + 3)).all(axis=1)
                & ~((pixels > a + 3) & (pixels < b - 3)).all(axis=1))
        if not edge.any():
            break
    else:
        pytest.fail("no box with clear edges")
    expected = np.flatnonzero(((pixels > a) & (pixels < b)).all(axis=1)).tolist()
    assert len(expected) > page.evaluate(DRAWN) // 2  # most of them are not drawn
    before = kernel(page, 'print(json.dumps(w.selection["id"].tolist()))')
    page.locator('.mx-map .modebar-btn[data-title="Box Select"]').click()
    page.mouse.move(*a)
    page.mouse.down()
    page.mouse.move(*b, steps=12)
    page.mouse.up()
    assert sorted(selected_in_python(page, before)) == expected
    # The selection's points join the drawn ones (ringed), within the budget's half.
    page.wait_for_function(
        "(n) => document.querySelector('.mx-map').data.find(t => t.name === 'selected')"
        ".x.length >= n", arg=min(len(expected), BUDGET // 2), timeout=10_000)
    screenshot(page, "lod-selection")
    assert page.page_errors == []


def drawn_xy(page: Any) -> set[tuple[float, float]]:
    pairs = page.evaluate("""() => {
      const skip = new Set(['highlighted', 'selected']);
      return document.querySelector('.mx-map').data.filter(t => !skip.has(t.name))
        .flatMap(t => Array.from(t.x, (x, i) => [x, t.y[i]]));
    }""")
    return {(round(x, 3), round(y, 3)) for x, y in pairs}


def test_query_hits_are_drawn_points_and_colours_follow_the_picker(page: Any) -> None:
    page.locator('.mx-map .modebar-btn[data-title="Pan"]').click()
    box = page.locator(".mx-query")
    box.fill("green")
    box.press("Enter")
    page.locator('.mx-row[data-label="green"] .mx-card').nth(7).wait_for(timeout=30_000)
    hits = kernel(page, 'print(json.dumps(w.results["green"][["x", "y"]].values.tolist()))')
    want = {(round(x, 3), round(y, 3)) for x, y in hits}
    for _ in range(50):  # the viewport refresh after the query brings them in
        if want <= drawn_xy(page):
            break
        page.wait_for_timeout(200)
    assert want <= drawn_xy(page), "the query's hits are not drawn as real points"
    page.locator(".mx-picker").select_option("shade")
    page.wait_for_function(
        "() => [...document.querySelectorAll('.mx-map .legendtext')].map(t => t.textContent)"
        ".join(',') === 'dark,light,text items'", timeout=10_000)
    # Every drawn point sits in the trace of its own shade.
    shades = kernel(page, 'print(json.dumps([[round(x, 3), round(y, 3), s] for (x, y), s in '
                          'zip(coll.coords.tolist(), coll.items["shade"].fillna("").tolist())]))')
    shade_of = {(x, y): s for x, y, s in shades}
    traces = page.evaluate("""() => document.querySelector('.mx-map').data
      .filter(t => t.name === 'dark' || t.name === 'light')
      .map(t => [t.name, Array.from(t.x, (x, i) => [x, t.y[i]])])""")
    checked = 0
    for name, points in traces:
        for x, y in points:
            assert shade_of[(round(x, 3), round(y, 3))] == name
            checked += 1
    assert checked > 0


def test_gap_layout_is_fetched_by_viewport(page: Any) -> None:
    page.locator(".mx-view").select_option("gap-corrected")
    page.wait_for_function("() => document.querySelector('.mx-map').dataset.view"
                           " === 'gap-corrected'", timeout=60_000)
    for _ in range(100):  # the kernel computes the gap when the toggle's change arrives
        state = kernel(page, "print(json.dumps([w.map_view, w._gap is None, w.last_error]))")
        if state[0] == "gap-corrected" and not state[1]:
            break
        page.wait_for_timeout(200)
    assert state == ["gap-corrected", False, ""], state
    gap = kernel(page, "print(json.dumps([[round(x, 3), round(y, 3)] for x, y in "
                       "w._gap.coords(corrected=True).tolist()]))")
    want = {(x, y) for x, y in gap}
    for _ in range(50):
        drawn = drawn_xy(page)
        if drawn and drawn <= want:
            break
        page.wait_for_timeout(200)
    assert drawn and drawn <= want, "the drawn points are not the gap layout's"
    page.locator(".mx-view").select_option("map")
    assert page.page_errors == []


def test_points_that_only_add_to_the_drawn_ones_are_appended(page: Any) -> None:
    """Highlighting undrawn items brings them in with the viewport's refresh: appended with one
    Plotly.extendTraces (their rings in the same call), every drawn point kept."""
    coords = kernel(page, "print(json.dumps(coll.coords.tolist()))")
    key = [(round(x, 3), round(y, 3)) for x, y in coords]
    drawn = drawn_xy(page)
    chosen = [i for i, k in enumerate(key) if k not in drawn][:3]
    assert len(chosen) == 3
    want = {key[i] for i in chosen}
    counters = """() => { const m = document.querySelector('.mx-map');
      return [Number(m.dataset.extends ?? 0), Number(m.dataset.renders)]; }"""
    before = page.evaluate(counters)
    try:
        kernel(page, f"w.highlight({chosen}); print(1)")
        for _ in range(50):
            if want <= drawn_xy(page):
                break
            page.wait_for_timeout(200)
        assert drawn_xy(page) == drawn | want
        after = page.evaluate(counters)
        assert after[0] == before[0] + 1, "not appended with extendTraces"
        assert after[1] == before[1] + 2  # the rings' restyle (none drawn yet), then the append
        rings = page.evaluate("""() => { const t = document.querySelector('.mx-map').data
          .find(t => t.name === 'highlighted'); return Array.from(t.x, (x, i) => [x, t.y[i]]); }""")
        assert {(round(x, 3), round(y, 3)) for x, y in rings} == want
        # Each appended point joined the trace of its own colour.
        colour = kernel(page, 'print(json.dumps(coll.items["colour"].fillna("").tolist()))')
        kinds = kernel(page, 'print(json.dumps(coll.items["kind"].tolist()))')
        traces = page.evaluate("""() => document.querySelector('.mx-map').data
          .map(t => [t.name, Array.from(t.x, (x, i) => [x, t.y[i]])])""")
        trace_of = {(round(x, 3), round(y, 3)): name for name, points in traces
                    if name not in ("highlighted", "selected") for x, y in points}
        for i in chosen:
            expected = "text items" if kinds[i] == "text" else (colour[i] or "(none)")
            assert trace_of[key[i]] == expected
    finally:
        kernel(page, "w.highlight([]); print(1)")
    assert page.page_errors == []
