"""The offline HTML export in a real (headless) Chromium: it draws, searches, shows thumbnails,
requests nothing outside the file and runs no script from the data.

It uses the session's Chromium (``browser_context`` in ``conftest.py``): Playwright's sync API
allows one driver per process, so a second ``sync_playwright()`` fails while the other browser
tests' one is open.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mclip_explorer import Collection

CAPTIONS = ["<script>alert('x')</script> red", '<img src=x onerror="alert(1)"> car',
            "https://evil.example/a.png blue", "Ein rotes Auto", "un coche rojo"]


@pytest.mark.slow
def test_exported_page_works_offline_and_treats_data_as_text(tmp_path: Path,
                                                             browser_context: Any):
    rng = np.random.default_rng(0)
    n = 40
    (tmp_path / "pics").mkdir()
    paths = []
    for i in range(n):
        Image.new("RGB", (24, 16), (200, 30 + 5 * i, 30)).save(tmp_path / "pics" / f"{i}.png")
        paths.append(str(tmp_path / "pics" / f"{i}.png"))
    frame = pd.DataFrame({"embedding": list(rng.normal(size=(n, 32)).astype(np.float32)),
                          "caption": [CAPTIONS[i % len(CAPTIONS)] + f" {i}" for i in range(n)],
                          "image_path": paths})
    coll = Collection.from_embeddings(frame, model="toy", out=tmp_path / "c", map_method="pca",
                                      progress=False)
    page_path = coll.export("html", tmp_path / "map.html", thumb_size=32)
    requests: list[str] = []
    dialogs: list[str] = []
    errors: list[str] = []
    page = browser_context.new_page()
    page.on("request", lambda r: requests.append(r.url))
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    page.on("pageerror", lambda e: errors.append(str(e)))
    try:
        page.goto(page_path.as_uri())
        page.wait_for_timeout(300)
        drawn = page.evaluate("""() => { const c = document.getElementById('map');
            const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;
            let n = 0; for (let i = 3; i < d.length; i += 4) if (d[i] > 0) n++; return n; }""")
        assert drawn > 4 * n  # the points are on the canvas
        page.fill("#q", "ROT")
        expected = [c for c in frame["caption"] if "rot" in c.lower()]
        assert page.inner_text("#count") == f"{len(expected)} match(es)"
        hits = page.locator("#hits .hit")
        assert hits.count() == len(expected)
        assert hits.nth(0).inner_text() == expected[0]
        page.fill("#q", "script")
        first = page.locator("#hits .hit").nth(0)
        assert first.inner_text() == frame["caption"][0]  # the markup shown as text
        first.click()
        assert page.locator("#panel img").get_attribute("src").startswith("data:image/webp")
        assert page.locator("#panel script, #hits script, #hits img[onerror]").count() == 0
        page.fill("#q", "onerror")
        page.wait_for_timeout(200)
    finally:
        page.close()
    assert not dialogs, f"a caption ran as script: {dialogs}"
    assert not errors
    assert all(url.startswith(("file:", "data:")) for url in requests), requests
