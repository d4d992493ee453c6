"""The explorer widget in a real JupyterLab + Chromium: map, queries, selection, clicks, errors."""

from __future__ import annotations

import io
import json
from typing import Any

import numpy as np
import pytest
from PIL import Image

from tests.browser.conftest import kernel, screenshot

pytestmark = pytest.mark.browser
K = 8  # the notebook shows the widget with k=8

TO_PIXELS = """(points) => {
  const gd = document.querySelector('.mx-map');
  const fl = gd._fullLayout, r = gd.getBoundingClientRect();
  return points.map(([x, y]) => [r.left + fl._size.l + fl.xaxis.l2p(x),
                                 r.top + fl._size.t + fl.yaxis.l2p(y)]);
}"""


def diamond_centre(page: Any) -> list[float]:
    box = page.locator(".mx-overlay .mx-q path").last.bounding_box()
    return [box["x"] + box["width"] / 2, box["y"] + box["height"] / 2]


def gallery_ids(page: Any, label: str) -> list[int]:
    row = page.locator(f".mx-row[data-label={json.dumps(label, ensure_ascii=False)}]")
    row.locator(".mx-card").nth(K - 1).wait_for(state="attached", timeout=30_000)
    return [int(v) for v in row.locator(".mx-card").evaluate_all(
        "cards => cards.map(c => c.dataset.id)")]


def run_query(page: Any, text: str) -> None:
    box = page.locator(".mx-query")
    box.fill(text)
    box.press("Enter")


def wait_painted(page: Any) -> None:
    page.wait_for_function("() => document.querySelector('.mx-gallery').dataset.painted"
                           " && [...document.querySelectorAll('.mx-gallery img')]"
                           ".every(i => i.complete && i.naturalWidth > 0)", timeout=30_000)


def remove_all_queries(page: Any) -> None:
    while page.locator(".mx-remove").count():
        page.locator(".mx-remove").first.click()
    page.wait_for_function("() => !document.querySelector('.mx-row')")


def test_map_shows_the_points(explorer: Any) -> None:
    n = kernel(explorer, "print(json.dumps(int(len(coll.items))))")
    assert explorer.locator(".mx-status").inner_text().startswith(f"{n} points")
    # Only the drawn points: hide legend, modebar and labels, then count saturated pixels.
    style = explorer.add_style_tag(content=".mx-map .legend, .mx-map .modebar-container"
                                           " { visibility: hidden !important; }")
    try:
        png = screenshot(explorer, "map-points", ".mx-map")
    finally:
        style.evaluate("el => el.remove()")
    pixels = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    saturated = (pixels.max(axis=2) - pixels.min(axis=2)) > 60
    hues = {tuple(p // 32) for p in pixels[saturated]}
    assert saturated.sum() > n * 20, f"only {saturated.sum()} coloured pixels for {n} points"
    assert len(hues) >= 6, "the colour categories are not drawn in distinct colours"
    assert explorer.page_errors == []


def test_non_latin_query_shows_what_the_model_ranks_first(explorer: Any) -> None:
    run_query(explorer, "красный")
    shown = gallery_ids(explorer, "красный")
    expected = kernel(explorer, 'print(json.dumps(coll.search("красный", k=w.k)["id"].tolist()))')
    assert shown == expected
    wait_painted(explorer)
    row = explorer.locator('.mx-row[data-label="красный"]')
    assert row.locator(".mx-rank").all_inner_texts() == [f"#{i}" for i in range(1, K + 1)]
    scores = kernel(explorer, 'print(json.dumps(coll.search("красный", k=w.k)'
                              '["score"].round(3).tolist()))')
    assert [float(s) for s in row.locator(".mx-score").all_inner_texts()] == pytest.approx(
        scores, abs=1e-3)
    # The query's own marker, label and lines to its k images are drawn over the map.
    layer = explorer.locator(".mx-overlay .mx-q")
    assert layer.count() == 1 and layer.locator("line").count() == K
    assert explorer.locator(".mx-qlabel").all_inner_texts() == ["красный"]
    placed = kernel(explorer, 'print(json.dumps(coll.place(coll.encoder.encode_text(["красный"]))'
                              '[0][0].tolist()))')
    assert diamond_centre(explorer) == pytest.approx(
        explorer.evaluate(TO_PIXELS, [placed])[0], abs=1.5)
    # It follows the view: zoom in around the query and it stays on its spot.
    explorer.mouse.move(*explorer.evaluate(TO_PIXELS, [placed])[0])
    explorer.mouse.wheel(0, -300)
    explorer.wait_for_timeout(800)  # plotly ends a wheel zoom after a pause
    assert diamond_centre(explorer) == pytest.approx(
        explorer.evaluate(TO_PIXELS, [placed])[0], abs=1.5)
    explorer.locator('.mx-map .modebar-btn[data-title="Reset axes"]').click()


def test_same_query_in_another_script_shows_the_overlap(explorer: Any) -> None:
    run_query(explorer, "أحمر")  # "red" in Arabic, right to left
    shown = gallery_ids(explorer, "أحمر")
    expected = kernel(explorer, 'print(json.dumps(coll.search("أحمر", k=w.k)["id"].tolist()))')
    assert shown == expected
    first = gallery_ids(explorer, "красный")
    common = len(set(first) & set(shown))
    assert explorer.locator(".mx-common").inner_text() == f"{common} item(s) in all 2 queries"
    assert explorer.locator(".mx-card.mx-shared-all").count() == 2 * common
    wait_painted(explorer)
    explorer.mouse.move(2, 2)  # no hover card or modebar tip in the picture
    screenshot(explorer, "explorer-queries")


def test_box_selection_reaches_python(explorer: Any) -> None:
    remove_all_queries(explorer)
    coords = kernel(explorer, "print(json.dumps(coll.coords.tolist()))")
    pixels = np.array(explorer.evaluate(TO_PIXELS, coords))
    red = pixels[:4]  # the four red images (ids 0-3) sit together on the map

    def within(a: np.ndarray, b: np.ndarray) -> np.ndarray:
        return ((pixels > a) & (pixels < b)).all(axis=1)

    for margin in range(8, 40, 2):
        lo, hi = red.min(axis=0) - margin, red.max(axis=0) + margin
        # No point may sit on the box edge, where a rounding pixel would decide.
        if not (within(lo - 3, hi + 3) & ~within(lo + 3, hi - 3)).any():
            break
    else:
        pytest.fail("no box around the red images has clear edges")
    inside = np.flatnonzero(within(lo, hi))
    explorer.locator('.mx-map .modebar-btn[data-title="Box Select"]').click()
    explorer.mouse.move(*lo)
    explorer.mouse.down()
    explorer.mouse.move(*hi, steps=12)
    explorer.mouse.up()
    assert sorted(selected_in_python(explorer, [])) == inside.tolist()
    assert kernel(explorer, "print(json.dumps(list(w.selection.columns) == "
                            "list(coll.items.columns)))")
    screenshot(explorer, "explorer-selection")


def selected_in_python(page: Any, before: list[int]) -> list[int]:
    got = before
    for _ in range(50):
        got = kernel(page, 'print(json.dumps(w.selection["id"].tolist()))')
        if got != before:
            break
        page.wait_for_timeout(200)
    return got


def test_lasso_selection_reaches_python(explorer: Any) -> None:
    before = kernel(explorer, 'print(json.dumps(w.selection["id"].tolist()))')
    coords = kernel(explorer, "print(json.dumps(coll.coords.tolist()))")
    pixels = np.array(explorer.evaluate(TO_PIXELS, coords))
    blue = pixels[16:20]  # the four blue images
    centre = blue.mean(axis=0)
    distance = np.linalg.norm(pixels - centre, axis=1)
    for radius in np.arange(np.linalg.norm(blue - centre, axis=1).max() + 8, 120, 2):
        # A 48-gon lies within 0.3 % of its circle: keep every point 3 px off the line.
        if not ((distance > radius * 0.997 - 3) & (distance < radius + 3)).any():
            break
    else:
        pytest.fail("no lasso around the blue images has clear edges")
    expected = np.flatnonzero(distance < radius).tolist()
    angles = np.linspace(0, 2 * np.pi, 49)
    ring = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    explorer.locator('.mx-map .modebar-btn[data-title="Lasso Select"]').click()
    explorer.mouse.move(*ring[0])
    explorer.mouse.down()
    for point in ring[1:]:
        explorer.mouse.move(*point, steps=2)
    explorer.mouse.up()
    assert sorted(selected_in_python(explorer, before)) == expected


def test_click_on_a_point_runs_image_to_image_search(explorer: Any) -> None:
    explorer.locator('.mx-map .modebar-btn[data-title="Pan"]').click()
    coords = kernel(explorer, "print(json.dumps(coll.coords.tolist()))")
    kinds = kernel(explorer, 'print(json.dumps(coll.items["kind"].tolist()))')
    pixels = np.array(explorer.evaluate(TO_PIXELS, coords))
    distance = np.linalg.norm(pixels[:, None] - pixels[None], axis=2) + np.eye(len(pixels)) * 1e9
    images = [i for i, kind in enumerate(kinds) if kind == "image"]
    target = max(images, key=lambda i: distance[i].min())  # the most isolated image point
    explorer.mouse.move(*pixels[target])
    # The hover card names the file (or caption / key), not the title derived from the name.
    title = kernel(explorer, f'print(json.dumps(Path(coll.items["path"][{target}]).name))')
    explorer.wait_for_selector(".mx-tooltip:not([hidden]) img", timeout=10_000)
    assert explorer.locator(".mx-tip-title").inner_text() == title
    explorer.mouse.click(*pixels[target])
    label = kernel(explorer, f"print(json.dumps(w._title({target})))")
    shown = gallery_ids(explorer, f"#{target} {label}")
    assert shown == kernel(explorer, f'print(json.dumps(coll.search({target}, k=w.k)'
                                     '["id"].tolist()))')
    # ...and a gallery image runs the same search from itself.
    second = shown[1]
    row = json.dumps(f"#{target} {label}", ensure_ascii=False)
    explorer.locator(f".mx-row[data-label={row}] .mx-card").nth(1).click()
    label = kernel(explorer, f"print(json.dumps(w._title({second})))")
    assert gallery_ids(explorer, f"#{second} {label}") == kernel(
        explorer, f'print(json.dumps(coll.search({second}, k=w.k)["id"].tolist()))')


def test_highlight_and_selection_from_python_reach_the_map(explorer: Any) -> None:
    kernel(explorer, "w.highlight([0, 1, 2]); w.selection = [5, 6]; print(1)")
    explorer.wait_for_function(
        "() => { const d = document.querySelector('.mx-map').data;"
        " return d.find(t => t.name === 'highlighted').x.length === 3"
        " && d.find(t => t.name === 'selected').x.length === 2; }", timeout=10_000)


def test_colour_picker_changes_the_legend(explorer: Any) -> None:
    explorer.locator(".mx-picker").select_option("shade")
    explorer.wait_for_function(
        "() => [...document.querySelectorAll('.mx-map .legendtext')].map(t => t.textContent)"
        ".join(',') === 'dark,light,text items'", timeout=10_000)
    assert kernel(explorer, "print(json.dumps(w.color_by))") == "shade"


def test_query_typed_while_the_kernel_is_busy_is_not_lost(explorer: Any) -> None:
    remove_all_queries(explorer)
    kernel(explorer, "import time\n_search = coll.search\n"
                     "coll.search = lambda *a, **k: (time.sleep(1.5), _search(*a, **k))[1]\n"
                     "print(1)")
    try:
        run_query(explorer, "rot")
        run_query(explorer, "blau")
        explorer.wait_for_selector(".mx-root[data-busy='true']", timeout=5_000)
        assert explorer.locator(".mx-chip").count() == 2
        assert gallery_ids(explorer, "blau") == kernel(
            explorer, 'print(json.dumps(_search("blau", k=w.k)["id"].tolist()))')
        assert gallery_ids(explorer, "rot")
    finally:
        kernel(explorer, "coll.search = _search; print(1)")
    explorer.wait_for_selector(".mx-root[data-busy='false']", timeout=10_000)


def test_kernel_error_shows_in_the_widget(explorer: Any) -> None:
    kernel(explorer, "def _boom(*a, **k):\n    raise RuntimeError('the index is on fire')\n"
                     "coll.search = _boom\nprint(1)")
    try:
        run_query(explorer, "grün")
        error = explorer.locator(".mx-error:not([hidden]) .mx-error-text")
        error.wait_for(timeout=10_000)
        assert error.inner_text() == "RuntimeError: the index is on fire"
        screenshot(explorer, "explorer-error")
    finally:
        kernel(explorer, "coll.search = _search; print(1)")
