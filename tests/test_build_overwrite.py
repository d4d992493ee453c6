"""``Collection.build(..., out=existing)``: the same source resumes, another one needs overwrite."""

from __future__ import annotations

from pathlib import Path

import pytest

from mclip_explorer.collection import Collection
from mclip_explorer.collection.store import MANIFEST
from mclip_explorer.errors import CollectionError
from tests.test_collection import CountingEncoder, make_images


@pytest.fixture
def two_sources(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    make_images(first, colours=("red", "blue"), per_colour=2, broken=False)
    make_images(second, colours=("green",), per_colour=2, broken=False)
    return first, second


def test_another_source_is_refused_and_nothing_changes(two_sources: tuple[Path, Path],
                                                       tmp_path: Path):
    first, second = two_sources
    out = tmp_path / "coll"
    Collection.build(first, model="toy", out=out, progress=False)
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    with pytest.raises(CollectionError) as caught:
        Collection.build(second, model="toy", out=out, progress=False)
    message = str(caught.value)
    assert str(out) in message and "overwrite=True" in message
    assert str(first) in message  # says what the collection holds now
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert len(Collection.open(out).items) == 4


def test_overwrite_replaces(two_sources: tuple[Path, Path], tmp_path: Path):
    first, second = two_sources
    out = tmp_path / "coll"
    Collection.build(first, model="toy", out=out, progress=False)
    coll = Collection.build(second, model="toy", out=out, progress=False, overwrite=True)
    assert sorted(Path(p).parent.parent for p in coll.items["path"]) == [second, second]
    assert len(Collection.open(out).items) == 2


def test_the_same_source_grown_resumes(two_sources: tuple[Path, Path], tmp_path: Path):
    first, _ = two_sources
    out = tmp_path / "coll"
    Collection.build(first, model="toy", out=out, progress=False)
    make_images(first, colours=("yellow",), per_colour=1, seed=3, broken=False)
    encoder = CountingEncoder()
    coll = Collection.build(first, model=encoder, out=out, progress=False)
    assert len(coll.items) == 5
    assert encoder.encoded == 1  # only the new file is encoded
    assert (out / MANIFEST).is_file()
