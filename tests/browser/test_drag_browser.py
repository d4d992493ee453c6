"""The drag toggle in a real JupyterLab + Chromium: its hint, its buttons and the map agree."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from tests.browser.conftest import kernel
from tests.browser.test_explorer_browser import TO_PIXELS

pytestmark = pytest.mark.browser

STATE = """() => ({
  mode: document.querySelector('.mx-map')._fullLayout.dragmode,
  pressed: [...document.querySelectorAll('.mx-drag-mode[aria-pressed="true"]')]
    .map(b => b.dataset.mode),
  hint: document.querySelector('.mx-drag-hint').textContent,
})"""


def _state(page: Any) -> dict[str, Any]:
    return page.evaluate(STATE)


def _wait_mode(page: Any, mode: str) -> None:
    page.wait_for_function(f"() => document.querySelector('.mx-map')._fullLayout.dragmode"
                           f" === {mode!r}", timeout=10_000)


def test_the_hint_and_the_default_drag_agree(explorer: Any) -> None:
    explorer.locator('.mx-drag-mode[data-mode="pan"]').click()
    _wait_mode(explorer, "pan")
    state = _state(explorer)
    assert state["pressed"] == ["pan"] and "drag pans" in state["hint"]
    assert explorer.locator(".mx-drag").is_visible()


def test_the_toggle_switches_to_box_select_and_a_drag_selects(explorer: Any) -> None:
    kernel(explorer, "w.selection = []\nprint(json.dumps(0))")
    explorer.locator('.mx-drag-mode[data-mode="select"]').click()
    _wait_mode(explorer, "select")
    state = _state(explorer)
    assert state["pressed"] == ["select"] and "select" in state["hint"]
    coords = np.array(kernel(explorer, "print(json.dumps(coll.coords.tolist()))"))
    on_map = np.flatnonzero(np.isfinite(coords).all(axis=1))
    pixels = np.array(explorer.evaluate(TO_PIXELS, coords[on_map].tolist()))
    lo, hi = pixels.min(axis=0) - 10, pixels.max(axis=0) + 10  # a box around every point
    explorer.mouse.move(*lo)
    explorer.mouse.down()
    explorer.mouse.move(*hi, steps=12)
    explorer.mouse.up()
    got: list[int] = []
    for _ in range(50):
        got = kernel(explorer, 'print(json.dumps(w.selection["id"].tolist()))')
        if got:
            break
        explorer.wait_for_timeout(200)
    assert sorted(got) == on_map.tolist()
    kernel(explorer, "w.selection = []\nprint(json.dumps(0))")


def test_the_modebar_and_the_toggle_stay_in_step(explorer: Any) -> None:
    explorer.locator('.mx-map .modebar-btn[data-title="Lasso Select"]').click()
    _wait_mode(explorer, "lasso")
    explorer.wait_for_function("() => document.querySelector("
                               "'.mx-drag-mode[data-mode=\"lasso\"]').ariaPressed === 'true'")
    assert "select" in _state(explorer)["hint"]
    explorer.locator('.mx-drag-mode[data-mode="pan"]').click()
    _wait_mode(explorer, "pan")
    assert _state(explorer)["pressed"] == ["pan"]
