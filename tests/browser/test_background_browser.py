"""A background build in a real JupyterLab + Chromium: explore() returns at once, the map fills
in step by step with progress, Cancel stops it cleanly, and running it again resumes."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.browser.conftest import REPO, kernel, open_notebook, screenshot
from tests.browser.test_lod_browser import DRAWN

pytestmark = pytest.mark.browser
CODE = """\
import sys, json, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.browser.toydata import make_images
import mclip_explorer
import mclip_explorer.widget.background as bg
# Many small steps with a pause after each, so an idle machine still leaves time to watch
# the map fill in and to press Cancel before the build ends.
bg.MIN_STEP, bg.STEPS, bg.STEP_PAUSE_S = 4, 100, 0.3
root = Path({root!r})
make_images(root / "images", per_colour=14)
t0 = time.monotonic()
w = mclip_explorer.explore(root / "images", model="toy", out=root / "coll", background=True)
returned_s = time.monotonic() - t0
w"""


@pytest.fixture(scope="module")
def page(lab: dict[str, Any], browser_context: Any) -> Iterator[Any]:
    code = CODE.format(repo=str(REPO), root=str(lab["root"] / "bg"))
    page = open_notebook(browser_context, lab, "background.ipynb", code)
    yield page
    page.close()


def test_build_fills_in_then_cancel_and_resume(page: Any) -> None:
    assert kernel(page, "print(json.dumps(returned_s))") < 5
    total = 14 * 11
    page.wait_for_selector(".mx-build[data-state='running']", timeout=60_000)
    # Steps land: the map fills in while the build goes on.
    page.wait_for_function(f"({DRAWN})() >= 8", timeout=120_000)
    text = page.locator(".mx-build-text").inner_text()
    assert text.startswith("building · encoding · ") and f"/ {total} images" in text
    screenshot(page, "background-build")
    page.locator(".mx-build-cancel").click()
    page.wait_for_selector(".mx-build[data-state='cancelled']", timeout=60_000)
    landed = kernel(page, "from mclip_explorer.collection import Collection\n"
                          "print(json.dumps(len(Collection.open(root / 'coll').items)))")
    assert 8 <= landed < total
    assert "run the same explore() again to resume" in page.locator(".mx-build-text").inner_text()
    page.wait_for_function(f"({DRAWN})() === {landed}", timeout=20_000)
    assert kernel(page, "print(json.dumps([w.n_items, w.build.status['state']]))") == [
        landed, "cancelled"]
    # Searchable: what landed answers a query in the widget.
    box = page.locator(".mx-query")
    box.fill("red")
    box.press("Enter")
    page.locator('.mx-row[data-label="red"] .mx-card').first.wait_for(timeout=30_000)
    # Running it again resumes and ends with every image and the final map.
    done = kernel(page, "w2 = mclip_explorer.explore(root / 'images', model='toy', "
                        "out=root / 'coll', background=True)\n"
                        "s = w2.build.wait(300)\n"
                        "c = Collection.open(root / 'coll')\n"
                        "print(json.dumps([s['state'], len(c.items), w2.n_items, "
                        "bool(c.items['path'].is_unique)]))")
    assert done == ["done", total, total, True]
    assert page.page_errors == []
