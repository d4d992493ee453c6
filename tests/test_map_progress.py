"""The map's progress bar keeps moving during a long stage (e.g. the cold ``import umap``)."""

from __future__ import annotations

import threading
import time

import pytest

from mclip_explorer.collection import projection


def test_a_long_stage_is_redrawn_while_it_runs(monkeypatch: pytest.MonkeyPatch):
    import tqdm.auto

    redraws: list[tuple[str, float]] = []
    original = tqdm.auto.tqdm.refresh

    def counting_refresh(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        redraws.append((threading.current_thread().name, time.monotonic()))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(tqdm.auto.tqdm, "refresh", counting_refresh)
    monkeypatch.setattr(projection, "PROGRESS_TICK_SECONDS", 0.05)
    with projection._stages(True, total=2) as stage:
        stage("importing umap-learn")
        start = time.monotonic()
        time.sleep(0.6)  # a stage that does not touch the bar
        end = time.monotonic()
        stage("layout")
    during = [name for name, at in redraws if start < at < end]
    assert during.count("map-progress") >= 3, redraws
    assert not any(t.name == "map-progress" for t in threading.enumerate())  # ticker stopped


def test_no_ticker_without_progress():
    before = threading.active_count()
    with projection._stages(False, total=1) as stage:
        stage("x")
        assert threading.active_count() == before
