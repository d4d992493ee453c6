"""Every kind of collection source, and the clear errors for bad ones."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mclip_explorer.collection import Collection
from mclip_explorer.collection.sources import read_source, title_from_name
from mclip_explorer.errors import SourceError
from mclip_explorer.models.toy import COLOURS
from tests.test_collection import make_images


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("src")
    make_images(root, colours=("red", "green", "blue"), per_colour=2)
    (root / "notes.txt").write_text("not an image")
    (root / "deep" / "er").mkdir(parents=True)
    Image.new("RGB", (20, 10), COLOURS["yellow"][0]).save(root / "deep" / "er" / "Sun_Flower-3.JPG")
    return root


def test_folder_is_recursive_sorted_and_by_extension(folder: Path):
    items = read_source(folder)
    relative = [Path(p).relative_to(folder).as_posix() for p in items.frame["path"]]
    assert relative == ["broken.jpg", "cold/blue_00.png", "cold/blue_01.png", "cold/green_00.png",
                        "cold/green_01.png", "deep/er/Sun_Flower-3.JPG", "warm/red_00.png",
                        "warm/red_01.png"]
    assert items.frame["folder"].tolist()[:2] == ["", "cold"]
    assert items.frame["folder"].tolist()[5] == "deep/er"
    assert items.frame["title"].tolist()[5] == "Sun Flower"


def test_titles_from_file_names():
    assert title_from_name("emperor_penguin_01.png") == "emperor penguin"
    assert title_from_name("/x/2024.jpg") == "2024"


def test_glob_and_list_of_paths(folder: Path, tmp_path: Path):
    globbed = read_source(str(folder / "**" / "*.png"))
    assert len(globbed.payloads) == 6
    listed = Collection.build([folder / "warm" / "red_00.png", str(folder / "cold" / "blue_00.png"),
                               folder / "missing.png"], model="toy", out=tmp_path / "c",
                              progress=False)
    assert listed.items["error"].tolist() == [None, None, "file not found"]
    assert listed.search("red", k=1)["title"].iloc[0] == "red"


def test_in_memory_images_are_kept_as_media_files(tmp_path: Path):
    png = io.BytesIO()
    Image.new("RGB", (16, 16), COLOURS["green"][0]).save(png, format="PNG")
    pil = Image.new("RGBA", (16, 16), (*COLOURS["blue"][0], 255))
    coll = Collection.build([png.getvalue(), pil], model="toy", out=tmp_path / "c",
                            progress=False)
    paths = coll.items["path"].tolist()
    assert all(Path(p).is_file() and Path(p).parent == tmp_path / "c" / "media" for p in paths)
    assert coll.search("grün", k=1)["id"].iloc[0] == 0
    stored = pd.read_parquet(next((tmp_path / "c").glob("items.*.parquet")))
    assert all(p.startswith("media/") for p in stored["path"])  # relative: the copy still opens


def test_dataframe_with_metadata(folder: Path, tmp_path: Path):
    frame = pd.DataFrame({
        "path": [str(folder / "warm" / "red_00.png"), str(folder / "cold" / "green_00.png")],
        "caption": ["a red square", "a green square"],
        "year": [2020, 2021],
    }, index=[10, 20])
    coll = Collection.build(frame, model="toy", out=tmp_path / "c", progress=False)
    items = coll.items
    assert items["caption"].tolist() == ["a red square", "a green square"]
    assert items["title"].tolist() == ["red", "green"]
    hits = coll.search("green", k=1, where={"year": lambda y: y > 2020})
    assert hits["caption"].iloc[0] == "a green square" and hits["year"].iloc[0] == 2021


def test_hf_dataset_source(folder: Path, tmp_path: Path):
    datasets = pytest.importorskip("datasets")  # optional dependency; installed in dev env
    dataset = datasets.Dataset.from_dict(
        {"image": [str(folder / "warm" / "red_00.png"), str(folder / "cold" / "blue_00.png")],
         "label": ["red", "blue"], "nested": [[1], [2]]},
    ).cast_column("image", datasets.Image())
    coll = Collection.build(dataset, model="toy", out=tmp_path / "c", progress=False)
    items = coll.items
    assert items["label"].tolist() == ["red", "blue"] and "nested" not in items.columns
    assert items["error"].isna().all()
    assert coll.search("blau", k=1)["label"].iloc[0] == "blue"
    by_file = Collection.build([folder / "warm" / "red_00.png"], model="toy",
                               out=tmp_path / "d", progress=False)
    np.testing.assert_array_equal(coll.vectors()[1][0], by_file.vectors()[1][0])
    in_memory = datasets.Dataset.from_dict(
        {"picture": [Image.new("RGB", (8, 8), COLOURS["green"][0])], "title": ["lawn"]},
        features=datasets.Features({"picture": datasets.Image(),
                                    "title": datasets.Value("string")}))
    coll = Collection.build(in_memory, model="toy", out=tmp_path / "e", progress=False)
    assert coll.items["title"].tolist() == ["lawn"]
    assert Path(coll.items["path"].iloc[0]).parent.name == "media"
    assert coll.search("verde", k=1)["title"].iloc[0] == "lawn"


@pytest.mark.parametrize(("make", "match"), [
    (lambda root: root / "nope", "folder not found"),
    (lambda root: (root / "empty").mkdir() or root / "empty", "no images found in folder"),
    (lambda root: str(root / "*.gif"), "no images found in glob"),
    (lambda root: 42, "unsupported source type int"),
    (lambda root: [root / "a.png", 3], r"source\[1\] is int"),
    (lambda root: pd.DataFrame({"file": ["a.png"]}), "needs a 'path' column"),
    (lambda root: pd.DataFrame({"path": ["a.png"], "id": [1]}), "clash"),
    (lambda root: pd.DataFrame({"path": [None]}), "row 0: path must be a file path"),
    (lambda root: [], "no images found"),
])
def test_bad_sources_are_named(tmp_path: Path, make, match: str):
    with pytest.raises(SourceError, match=match):
        read_source(make(tmp_path))
