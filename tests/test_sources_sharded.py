"""WebDataset and parquet shards through the local engine: forms, fsspec, damage, resume, add."""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys
import tarfile
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mclip_explorer.collection import Collection
from mclip_explorer.collection.sources import parquet, webdataset
from mclip_explorer.collection.sources.shards import (
    expand_braces,
    iter_records,
    open_shard,
    resolve_sharded,
)
from mclip_explorer.collection.store import KILL_ENV
from mclip_explorer.errors import SourceError
from tests.shards import add_member, colour_png, make_parquet, make_webdataset, samples
from tests.test_collection import CountingEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def wds(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("wds")
    make_webdataset(root, shards=3, per_shard=5)
    return root


@pytest.fixture(scope="module")
def wds_coll(wds: Path, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    out = tmp_path_factory.mktemp("wds_coll") / "c"
    return Collection.build(f"{wds}/{{00000..00002}}.tar", model="toy", out=out, progress=False)


def test_brace_expansion_keeps_padding_and_lists():
    assert expand_braces("s/{008..011}.tar") == ["s/008.tar", "s/009.tar", "s/010.tar",
                                                 "s/011.tar"]
    assert expand_braces("{a,b}/{0..1}.tar") == ["a/0.tar", "a/1.tar", "b/0.tar", "b/1.tar"]
    assert expand_braces("plain.tar") == ["plain.tar"]


def test_every_form_names_the_same_shards(wds: Path):
    expected = [str(wds / f"{s:05d}.tar") for s in range(3)]
    forms = [f"{wds}/{{00000..00002}}.tar", f"{wds}/*.tar", str(wds), wds,
             [wds / f"{s:05d}.tar" for s in range(3)], f"file://{wds}/{{00000..00002}}.tar"]
    for form in forms:
        source = resolve_sharded(form)
        assert source is not None and source.kind == "webdataset", form
        assert list(source.shards) == expected, form
    assert resolve_sharded(ROOT / "mclip_explorer" / "data" / "sample") is None  # image folder


def test_img2dataset_output_folder_is_webdataset(wds: Path, tmp_path: Path):
    # img2dataset's webdataset output: 00000.tar + 00000.parquet (metadata, no images) + stats.
    for s in range(2):
        (tmp_path / f"{s:05d}.tar").write_bytes((wds / f"{s:05d}.tar").read_bytes())
        pd.DataFrame({"key": ["x"], "status": ["success"]}).to_parquet(
            tmp_path / f"{s:05d}.parquet")
        (tmp_path / f"{s:05d}_stats.json").write_text("{}")
    source = resolve_sharded(tmp_path)
    assert source is not None and source.kind == "webdataset"
    assert list(source.shards) == [str(tmp_path / f"{s:05d}.tar") for s in range(2)]
    with pytest.raises(SourceError, match="image columns"):  # the sidecar has no images
        Collection.build(tmp_path / "00000.parquet", model="toy", out=tmp_path / "c",
                         progress=False)


def test_items_carry_shard_key_caption_and_json(wds_coll: Collection, wds: Path):
    items = wds_coll.items
    assert len(items) == 15 and items["error"].isna().all()
    first = samples(0, 5)[0]
    row = items.iloc[0]
    assert row["shard"] == str(wds / "00000.tar") and row["key"] == first[0]
    assert row["caption"] == f"a <b>{first[1]}</b> square"  # untrusted text, kept verbatim
    assert json.loads(row["json"]) == {"url": f"http://x/{first[0]}", "colour": first[1]}
    assert row["title"] == row["caption"] and row["path"] is None
    assert row["bytes"] == len(first[2]) and (row["width"], row["height"]) == (24, 24)
    assert items["key"].tolist() == [k for s in range(3) for k, _, _ in samples(s, 5)]


def test_search_finds_colours_and_thumbnails_read_the_shard(wds_coll: Collection):
    hits = wds_coll.search("rot", k=2)  # German "red"; items 0 and 11 are red
    names = {json.loads(j)["colour"] for j in wds_coll.items.loc[hits["id"], "json"]}
    assert names == {"red"}
    from PIL import Image

    thumb = Image.open(io.BytesIO(wds_coll.thumbnail(int(hits["id"][0]), size=16)))
    assert thumb.format == "WEBP" and max(thumb.size) <= 16


def test_parquet_img2dataset_layout(tmp_path: Path):
    paths = make_parquet(tmp_path / "pq", shards=2, per_shard=5)
    coll = Collection.build(tmp_path / "pq", model="toy", out=tmp_path / "c", progress=False)
    items = coll.items
    assert len(items) == 10 and items["error"].isna().all()
    assert items["shard"].tolist() == [str(p) for p in paths for _ in range(5)]
    assert items["key"].tolist() == [k for s in range(2) for k, _, _ in samples(s, 5)]
    assert items["row"].tolist() == list(range(5)) * 2
    assert items["caption"].iloc[0] == f"{samples(0, 5)[0][1]} square"
    assert items["url"].iloc[3] == f"http://x/{samples(0, 5)[3][0]}"
    assert (items["source_width"] == 24).all()  # `width` is the collection's own column
    assert (items["width"] == 24).all()
    thumb = coll.thumbnail(7, size=16)  # row 2 of the second file: its second row group
    assert thumb[:4] == b"RIFF"


def test_parquet_image_column_option_and_hf_layout(tmp_path: Path):
    png = colour_png("blue", 1)
    pd.DataFrame({"picture": [png, png[:20]], "label": ["a", "b"]}).to_parquet(
        tmp_path / "a.parquet")
    with pytest.raises(SourceError, match="image_column"):
        list(iter_records(parquet(str(tmp_path / "a.parquet")), str(tmp_path / "a.parquet")))
    coll = Collection.build(parquet(str(tmp_path / "a.parquet"), image_column="picture"),
                            model="toy", out=tmp_path / "c", progress=False)
    assert coll.items["label"].tolist() == ["a", "b"]
    assert coll.items["error"].iloc[0] is None
    assert re.search("decode|not an image", coll.items["error"].iloc[1])
    pd.DataFrame({"image": [{"bytes": png, "path": "x.png"}]}).to_parquet(tmp_path / "hf.parquet")
    hf = Collection.build(str(tmp_path / "hf.parquet"), model="toy", out=tmp_path / "d",
                          progress=False)
    np.testing.assert_array_equal(hf.vectors()[1][0], coll.vectors()[1][0])


def test_damage_becomes_failed_items_and_the_build_goes_on(tmp_path: Path):
    root = tmp_path / "shards"
    make_webdataset(root, shards=1, per_shard=4)
    (root / "00001.tar").write_bytes(b"not a tar at all" * 100)
    data = (root / "00000.tar").read_bytes()
    (root / "00002.tar").write_bytes(data[: len(data) // 2 + 100])  # cut inside a member
    with tarfile.open(root / "00003.tar", "w") as tar:
        add_member(tar, "k1.png", b"\x89PNG\r\n\x1a\n broken")
        add_member(tar, "k2.txt", b"a caption without an image")
        add_member(tar, "k3.png", colour_png("green", 3))
    coll = Collection.build(f"{root}/{{00000..00003}}.tar", model="toy", out=tmp_path / "c",
                            progress=False)
    items = coll.items.set_index(["shard", "key"], drop=False)
    errors = dict(zip(zip(items["shard"], items["key"], strict=True), items["error"],
                      strict=True))
    assert all(errors[(str(root / "00000.tar"), k)] is None for k, _, _ in samples(0, 4))
    assert "not a readable tar" in errors[(str(root / "00001.tar"), None)]
    damaged = [e for (s, _), e in errors.items() if s == str(root / "00002.tar")]
    assert damaged[-1] is not None and "damaged tar" in damaged[-1]
    assert all(e is None for e in damaged[:-1]) and len(damaged) >= 2
    assert "not an image" in errors[(str(root / "00003.tar"), "k1")]
    assert "no image member" in errors[(str(root / "00003.tar"), "k2")]
    assert errors[(str(root / "00003.tar"), "k3")] is None
    assert coll.manifest["counts"]["failed"] == sum(e is not None for e in errors.values())


def test_fsspec_memory_and_file_urls(wds: Path, wds_coll: Collection, tmp_path: Path):
    import fsspec

    memory = fsspec.filesystem("memory")
    for s in range(3):
        memory.pipe(f"/wds-test/{s:05d}.tar", (wds / f"{s:05d}.tar").read_bytes())
    for n, source in enumerate([webdataset("memory://wds-test/{00000..00002}.tar"),
                                f"file://{wds}/*.tar"]):
        coll = Collection.build(source, model="toy", out=tmp_path / f"c{n}", progress=False)
        assert coll.items["key"].tolist() == wds_coll.items["key"].tolist()
        np.testing.assert_array_equal(coll._embeddings, wds_coll._embeddings)
    assert coll.items["shard"].iloc[0] == str(wds / "00000.tar")
    assert Collection.open(tmp_path / "c0").items["shard"].iloc[0] == \
        "memory:///wds-test/00000.tar"  # fsspec's canonical form of the URL


def test_add_skips_known_samples_and_adds_new_shards(wds: Path, tmp_path: Path):
    coll = Collection.build(f"{wds}/{{00000..00001}}.tar", model="toy", out=tmp_path / "c",
                            progress=False)
    assert len(coll.add(f"{wds}/{{00000..00001}}.tar", progress=False)) == 0
    new = coll.add(f"{wds}/*.tar", progress=False)
    assert len(new) == 5 and set(coll.items.loc[new, "shard"]) == {str(wds / "00002.tar")}


def test_building_other_shards_over_a_collection_needs_overwrite(wds: Path, tmp_path: Path):
    from mclip_explorer.errors import CollectionError

    out = tmp_path / "c"
    Collection.build(f"{wds}/00000.tar", model="toy", out=out, progress=False)
    with pytest.raises(CollectionError, match="overwrite=True"):
        Collection.build(f"{wds}/00001.tar", model="toy", out=out, progress=False)
    grown = Collection.build(f"{wds}/{{00000..00001}}.tar", model="toy", out=out, progress=False)
    assert len(grown) == 10  # shares a shard: the same source, grown
    other = Collection.build(f"{wds}/00002.tar", model="toy", out=out, progress=False,
                             overwrite=True)
    assert set(other.items["shard"]) == {str(wds / "00002.tar")}


CHILD = textwrap.dedent("""
    import sys
    from mclip_explorer.collection import Collection
    Collection.build(sys.argv[1], model="toy", out=sys.argv[2], progress=False, shard_size=2)
""")


def test_killed_local_build_redoes_only_unfinished_shards(wds: Path, wds_coll: Collection,
                                                          tmp_path: Path):
    out = tmp_path / "c"
    source = f"{wds}/{{00000..00002}}.tar"
    env = {**os.environ, KILL_ENV: "records:2", "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, source, str(out)], env=env,
                          capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, done.stderr[-2000:]
    encoder = CountingEncoder()
    coll = Collection.build(source, model=encoder, out=out, progress=False, shard_size=2)
    # Shard 1 (5 items) was finished; shard 2 had flushed its first chunk of 2 when killed.
    assert encoder.encoded == 15 - 5 - 2
    pd.testing.assert_frame_equal(coll.items.drop(columns="shard"),
                                  wds_coll.items.drop(columns="shard"))
    np.testing.assert_array_equal(coll._embeddings, wds_coll._embeddings)


def test_tar_records_are_streamed_not_read_whole(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch):
    from mclip_explorer.collection.sources import tar_reader

    (tar,) = make_webdataset(tmp_path, shards=1, per_shard=40)
    handles = []

    def spy(url: str, options: dict) -> object:
        handle = open_shard(url, options)
        handles.append(handle)
        return handle

    monkeypatch.setattr(tar_reader, "open_shard", spy)
    records = iter_records(webdataset(str(tar)), str(tar))
    first = next(records)
    assert first.key == samples(0, 40)[0][0]
    assert handles[0].tell() < tar.stat().st_size / 4  # memory is bounded by a few samples
    assert len([first, *records]) == 40
