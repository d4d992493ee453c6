"""Gallery titles in a real browser: file names as text, the full name on hover."""

from __future__ import annotations

from typing import Any

import pytest

from tests.browser.conftest import kernel

pytestmark = pytest.mark.browser


def test_gallery_titles_are_file_names_with_the_full_text_on_hover(explorer: Any) -> None:
    box = explorer.locator(".mx-query")
    box.fill("orange")
    box.press("Enter")
    row = explorer.locator('.mx-row[data-label="orange"]')
    row.locator(".mx-card .mx-title").first.wait_for(state="attached", timeout=30_000)
    titles = row.locator(".mx-card .mx-title").evaluate_all(
        "els => els.map(e => ({text: e.textContent, full: e.title, html: e.innerHTML}))")
    expected = kernel(explorer, 'hits = coll.search("orange", k=w.k)\n'
                                'print(json.dumps([Path(p).name for p in hits["path"]]))')
    assert [t["full"] for t in titles] == expected
    for title, name in zip(titles, expected, strict=True):
        assert title["text"] == name or ("…" in title["text"] and len(title["text"]) <= 40)
        assert title["html"] == title["text"].replace("&", "&amp;")  # text, no markup
    explorer.locator(".mx-remove").last.click()
