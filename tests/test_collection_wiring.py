"""Collection methods that delegate to other layers: neighbours, thumbnail, explore."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mclip_explorer import Collection
from mclip_explorer.models.toy import ToyEncoder

COLOURS = [(220, 30, 30), (30, 70, 210), (40, 170, 50), (240, 220, 30), (130, 40, 170)]


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Collection:
    folder = tmp_path_factory.mktemp("images")
    for i in range(20):
        r, g, b = COLOURS[i % len(COLOURS)]
        image = Image.new("RGB", (64, 48), (r, g, b))
        image.paste((255 - r, 255 - g, 255 - b), (0, 0, 8 + i, 8))
        image.save(folder / f"img{i:02d}.png")
    return Collection.build(folder, model=ToyEncoder(), out=tmp_path_factory.mktemp("c") / "c",
                            progress=False)


def test_neighbours_agree_with_search(coll: Collection) -> None:
    query = coll.encoder.encode_text(["red", "blau"])
    ids, scores = coll.neighbours(query * 3.0, k=4)  # un-normalised input is normalised
    for row, text in enumerate(["red", "blau"]):
        hits = coll.search(coll.encoder.encode_text([text])[0], k=4)
        assert ids[row].tolist() == hits["id"].tolist()
        np.testing.assert_allclose(scores[row], hits["score"], atol=1e-5)


def test_neighbours_pad_when_fewer_items_than_k(coll: Collection) -> None:
    ids, scores = coll.neighbours(coll.encoder.encode_text(["green"]), k=50)
    live = len(coll.vectors("image")[0])
    assert (ids[0, :live] >= 0).all() and (ids[0, live:] == -1).all()
    assert np.isnan(scores[0, live:]).all()


def test_thumbnail_is_a_small_cached_webp(coll: Collection) -> None:
    data = coll.thumbnail(3, size=32)
    assert data[:4] == b"RIFF" and data[8:12] == b"WEBP"
    assert any(Path(coll.path, "thumbs").rglob("*"))
    assert coll.thumbnail(3, size=32) == data


def test_explore_returns_the_widget_of_this_collection(coll: Collection) -> None:
    from mclip_explorer.widget import ExplorerWidget, explore

    widget = explore(coll)
    assert isinstance(widget, ExplorerWidget)
    assert widget.collection is coll


def test_default_out_keeps_collections_out_of_the_package(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from mclip_explorer.data import sample_images
    from mclip_explorer.widget.api import default_out

    photos = tmp_path / "photos"
    photos.mkdir()
    assert default_out(photos) == tmp_path / "photos.mclip"
    monkeypatch.setenv("MCLIP_EXPLORER_CACHE", str(tmp_path / "cache"))
    out = default_out(sample_images())
    assert out.parent == tmp_path / "cache" and out.name.endswith(".mclip")
    assert default_out(sample_images()) == out  # the same source reuses its collection

