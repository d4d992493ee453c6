"""Kernel-side thumbnails: size limits, aspect ratio, caching in the collection folder, refusals."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from mclip_explorer.collection import thumbnails
from mclip_explorer.collection.thumbnails import ThumbnailError, thumbnail
from tests.browser.toydata import build_collection


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_collection(tmp_path_factory.mktemp("thumbs"))


def test_thumbnail_is_a_small_webp_keeping_the_aspect_ratio(coll: Any) -> None:
    data = thumbnail(coll, 5, size=32)
    image = Image.open(io.BytesIO(data))
    assert image.format == "WEBP" and image.size == (32, 24)  # the source is 64 x 48
    source = np.asarray(Image.open(coll.items["path"][5]).convert("RGB").resize((32, 24)))
    assert np.abs(np.asarray(image.convert("RGB")).astype(int) - source).mean() < 12


def test_thumbnail_is_cached_in_the_collection_folder(
    coll: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = thumbnail(coll, 6, size=40)
    cached = Path(coll.path) / "thumbs" / "40" / "6.webp"
    assert cached.read_bytes() == first
    monkeypatch.setattr(thumbnails, "make_thumbnail", lambda *_: pytest.fail("not cached"))
    assert thumbnail(coll, 6, size=40) == first
    assert not list(cached.parent.glob("*.tmp"))


@pytest.mark.parametrize(
    ("item_id", "size", "message"),
    [
        (10_000, 64, "no item with id 10000"),
        (-1, 64, "no item with id -1"),
        ("3", 64, "item id must be an integer"),
        (True, 64, "item id must be an integer"),
        (3, 8, "between 16 and 512"),
        (3, 4096, "between 16 and 512"),
        (3, 64.0, "size must be an integer"),
    ],
)
def test_bad_ids_and_sizes_are_refused(coll: Any, item_id: Any, size: Any, message: str) -> None:
    with pytest.raises(ThumbnailError, match=message):
        thumbnail(coll, item_id, size=size)


def test_text_deleted_and_unreadable_items_have_no_thumbnail(tmp_path: Path) -> None:
    coll = build_collection(tmp_path)
    text_id = int(np.flatnonzero(coll.items["kind"] == "text")[0])
    with pytest.raises(ThumbnailError, match=f"item {text_id} is a text item"):
        thumbnail(coll, text_id)
    coll.remove([2])
    with pytest.raises(ThumbnailError, match="item 2 was removed"):
        thumbnail(coll, 2)
    Path(coll.items["path"][3]).write_bytes(b"not a png")
    with pytest.raises(ThumbnailError, match=r"cannot make a thumbnail: .*not an image"):
        thumbnail(coll, 3)
