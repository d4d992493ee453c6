"""Background builds (mclip_explorer.widget.background): steps land, cancel, resume, and numpy
work in the kernel's own thread keeps running beside them."""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import mclip_explorer
from mclip_explorer.collection import Collection
from mclip_explorer.errors import CollectionError
from mclip_explorer.widget.background import BackgroundBuild
from tests.browser.toydata import make_images

pytestmark = pytest.mark.timeout(600)


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("bg")
    make_images(root / "images", per_colour=6)  # 66 images
    return root / "images"


def test_explore_in_background_returns_at_once_and_fills_in(folder: Path, tmp_path: Path) -> None:
    start = time.monotonic()
    widget = mclip_explorer.explore(folder, model="toy", out=tmp_path / "c", background=True)
    assert time.monotonic() - start < 5  # the build has not even loaded its model yet
    assert widget.n_items == 0 and widget._build["state"] in ("starting", "running")
    reply: list[Any] = []
    widget.send = lambda content, buffers=None: reply.append(content)
    widget._handle_custom_msg({"rid": 1, "op": "search", "text": "red"}, [])
    assert "nothing is searchable yet" in reply[-1]["error"]
    # The user's own numpy work runs beside the build (a separate process: no shared BLAS).
    done = threading.Event()
    stop = time.monotonic() + 120

    def numpy_work() -> None:
        rng = np.random.default_rng(0)
        while not widget.build.finished and time.monotonic() < stop:
            np.linalg.svd(rng.standard_normal((64, 64)))
        done.set()

    worker = threading.Thread(target=numpy_work)
    worker.start()
    status = widget.build.wait(300)
    assert done.wait(30), "numpy work beside the build did not finish"
    worker.join()
    assert status["state"] == "done", status
    coll = Collection.open(tmp_path / "c")
    assert widget.n_items == len(coll.items) == 66 and widget._build["done"] == 66
    np.testing.assert_array_equal(widget._map_coords, coll.coords)  # the final map is shown
    assert widget.collection.search("red", k=3)["id"].tolist() == coll.search("red", k=3)[
        "id"].tolist()


def test_steps_land_searchable_then_cancel_and_resume(folder: Path, tmp_path: Path) -> None:
    out = tmp_path / "c"
    seen: list[tuple[int, int]] = []

    def on_update(status: dict[str, Any], coll: Any) -> None:
        if coll is not None:
            coll.search("blue", k=2)  # searchable as soon as a step lands
            seen.append((status["done"], len(coll.items)))

    build = BackgroundBuild(folder, "toy", out, on_update, step=8).start()
    deadline = time.monotonic() + 300
    while len(seen) < 2 and time.monotonic() < deadline:
        build.poll()
        time.sleep(0.05)
    build.cancel()
    assert build.status["state"] == "cancelled"
    # Step by step, each one committed (steps landing between two polls are shown together).
    done = [d for d, _ in seen]
    assert done == sorted(set(done)) and done[0] >= 8
    assert all(d % 8 == 0 and n >= d for d, n in seen)
    landed = len(Collection.open(out).items)
    assert 16 <= landed < 66
    assert build.status["eta_s"] is None or build.status["eta_s"] >= 0
    # Running it again resumes: what landed stays, the rest is added, the map is recomputed.
    seen.clear()
    again = BackgroundBuild(folder, "toy", out, on_update, step=32).start()
    assert again.wait(300)["state"] == "done", again.status
    coll = Collection.open(out)
    assert len(coll.items) == 66 and coll.items["path"].is_unique
    assert seen[0][0] in (min(66, landed + 32), 66)


def test_a_failing_build_is_reported(tmp_path: Path) -> None:
    build = BackgroundBuild(tmp_path / "nothing-here", "toy", tmp_path / "c").start()
    status = build.wait(120)
    assert status["state"] == "failed" and "SourceError" in status["error"]


def test_background_needs_a_model_name(folder: Path, tmp_path: Path) -> None:
    from mclip_explorer.models import load_model

    with pytest.raises(TypeError, match="by name"):
        mclip_explorer.explore(folder, model=load_model("toy"), out=tmp_path / "c",
                               background=True)
    with pytest.raises(CollectionError):
        from mclip_explorer.widget.background import PendingCollection

        PendingCollection("toy").encoder  # noqa: B018
