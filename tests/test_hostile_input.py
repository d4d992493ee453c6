"""Odd strings and huge k through every entry point (issue 9, points 5 and 6).

Every string a user can type, paste, pass on a command line or send from the widget gets a result
or a project error naming the problem; a huge ``k`` is clamped to the live items before anything
is allocated.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tracemalloc
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mclip_explorer.cli import main
from mclip_explorer.collection import Collection
from mclip_explorer.errors import BadTextError
from mclip_explorer.models.toy import ToyEncoder
from tests.test_collection import make_images
from tests.test_text_handling import ODD_TEXTS

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("hostile")
    make_images(root / "images", colours=("red", "green", "blue", "yellow"), per_colour=6)
    Collection.build(root / "images", model="toy", out=root / "coll", progress=False)
    return root / "coll"


@pytest.fixture(scope="module")
def coll(built: Path) -> Collection:
    return Collection.open(built, model=ToyEncoder())


# ------------------------------------------------------------------------- point 5: strings
@pytest.mark.parametrize("what", sorted(ODD_TEXTS))
def test_search_gives_a_result_or_names_the_problem(coll: Collection, what: str):
    text = ODD_TEXTS[what]
    if "surrogate" in what:
        with pytest.raises(BadTextError, match=r"the query is not valid Unicode: a lone "
                                               r"surrogate U\+D[89A-F][0-9A-F]{2} at character"):
            coll.search(text)
        with pytest.raises(BadTextError, match="query 1 is not valid Unicode"):
            coll.search(["red", text])
        with pytest.raises(BadTextError, match=r"texts\[0\] is not valid Unicode"):
            coll.encoder.encode_text([text])
    else:
        hits = coll.search(text, k=3)
        assert len(hits) == 3 and hits["score"].notna().all()


def test_cli_names_a_lone_surrogate(built: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["search", str(built), "red \udcff car"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "not valid Unicode: a lone surrogate U+DCFF at character 4" in err


def test_cli_with_an_undecodable_argv_byte(built: Path):
    """A real command line: a Latin-1 byte in a UTF-8 locale arrives as a lone surrogate."""
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LC_ALL": "C.UTF-8"}
    argv = [sys.executable, "-m", "mclip_explorer.cli", "search", str(built), b"caf\xe9"]
    done = subprocess.run(argv, env=env, capture_output=True, timeout=120, check=False)
    err = done.stderr.decode("utf-8", "backslashreplace")
    assert done.returncode == 2, err
    assert "Traceback" not in err and "U+DCE9" in err, err


def test_widget_query_names_a_lone_surrogate(tmp_path: Path):
    from mclip_explorer.widget.explorer import ExplorerWidget
    from tests.browser.toydata import build_collection
    from tests.test_widget import Front

    front = Front(ExplorerWidget(build_collection(tmp_path)))
    content, _ = front.request("search", text="gatto \ud83d", k=3)
    assert content["ok"] is False
    assert "lone surrogate U+D83D" in content["error"], content
    content, buffers = front.request("search", text="gatto \u200b\x00", k=3)
    assert content["ok"] is True and len(np.frombuffer(buffers[0], "<u4")) == 3


# ------------------------------------------------------------------------------ point 6: k
def _peak(call: Any) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        result = call()
        return result, tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


def test_a_huge_k_is_clamped_before_allocating(coll: Collection):
    live = int(coll.manifest["counts"]["live"])
    query = coll.vectors()[1][0]
    # 10**7 would allocate 2 x 80 MB of padding unclamped (numpy reports to tracemalloc).
    hits, peak = _peak(lambda: coll.search(query, k=10**7))
    assert len(hits) == live and peak < 8 << 20, peak
    hits = coll.search(query, k=10**12)  # unclamped: MemoryError (8 TB)
    assert len(hits) == live
    hits = coll.search(query, k=10**9, where={"folder": "warm"})
    assert 0 < len(hits) < live
    (ids, scores), peak = _peak(lambda: coll.neighbours(query[None, :], k=10**7))
    assert ids.shape == scores.shape == (1, live) and peak < 8 << 20, peak


def test_cli_clamps_k(built: Path, capsys: pytest.CaptureFixture[str]):
    assert main(["search", str(built), "red", "-k", str(10**12), "--json"]) == 0
    out = capsys.readouterr().out
    assert out.count('"rank"') == Collection.open(built).manifest["counts"]["live"]
