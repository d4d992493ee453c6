"""Gallery and hover titles: caption, text or key, else the file name, never a collapsed prefix."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mclip_explorer.widget.titles import item_title


def test_camera_names_stay_distinct():
    rows = [{"path": f"/photos/DCIM/IMG_{n:04d}.JPG", "title": "IMG"} for n in (1, 2, 3)]
    titles = [item_title(pd.Series(row), n) for n, row in enumerate(rows)]
    assert titles == ["IMG_0001.JPG", "IMG_0002.JPG", "IMG_0003.JPG"]


@pytest.mark.parametrize(("row", "expected"), [
    ({"path": "/d/IMG_1.jpg", "caption": "a dog on a beach"}, "a dog on a beach"),
    ({"path": None, "__key__": "shard-00017/000042"}, "shard-00017/000042"),
    ({"path": None, "key": "000042", "title": None}, "000042"),
    ({"path": None, "text": "ein roter Apfel", "kind": "text"}, "ein roter Apfel"),
    ({"path": "/d/IMG_1.jpg", "title": "Grandma's birthday"}, "Grandma's birthday"),
    ({"path": "/d/emperor_penguin_01.png", "title": "emperor penguin"}, "emperor_penguin_01.png"),
    ({"path": "/d/x.png", "caption": "  "}, "x.png"),
    ({"path": None, "title": None}, "item 7"),
    ({"path": "/d/a.png", "caption": "<img src=x onerror=alert(1)>"},
     "<img src=x onerror=alert(1)>"),  # returned as text; the front end sets textContent
])
def test_title_sources(row: dict, expected: str):
    assert item_title(pd.Series(row), 7) == expected


def test_the_widget_sends_file_names(tmp_path: Path):
    from mclip_explorer.collection import Collection
    from mclip_explorer.widget.explorer import ExplorerWidget

    folder = tmp_path / "DCIM"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for n in range(1, 4):
        pixels = rng.integers(0, 255, (16, 16, 3), dtype=np.uint8)
        Image.fromarray(pixels).save(folder / f"IMG_{n:04d}.jpg")
    coll = Collection.build(folder, model="toy", out=tmp_path / "coll", progress=False)
    assert set(coll.items["title"]) == {"IMG"}  # what the old titles collapsed to
    widget = ExplorerWidget(coll)
    assert [widget._title(i) for i in range(3)] == ["IMG_0001.jpg", "IMG_0002.jpg",
                                                    "IMG_0003.jpg"]
