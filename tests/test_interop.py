"""Interop: opening embeddings made elsewhere, and exporting to other tools (docs/interop.md).

Every source here is written by the test with plain NumPy/pandas in the documented layouts (not
by the code under test), with the toy model (32-d) answering the queries.
"""

from __future__ import annotations

import json
import math
from html.parser import HTMLParser
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow.parquet as pq
import pytest
from PIL import Image

from mclip_explorer import Collection
from mclip_explorer.errors import CollectionError, ModelMismatchError, SourceError

DIM = 32
N = 240
HOSTILE = ['<script>alert(1)</script>', '"><img src=x onerror=alert(2)>', "</script><b>x",
           "https://evil.example/track.png", "&amp; &lt;", "\u2028line sep", "normal caption"]


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.normal(size=(n, DIM))
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def write_clip_retrieval(folder: Path, images: np.ndarray, meta: pd.DataFrame,
                         texts: np.ndarray | None, names: list[str], sizes: list[int]) -> None:
    """The layout as clip-retrieval's writer makes it: np.save of float16, df.to_parquet."""
    start = 0
    for name, size in zip(names, sizes, strict=True):
        rows = slice(start, start + size)
        (folder / "img_emb").mkdir(parents=True, exist_ok=True)
        (folder / "metadata").mkdir(parents=True, exist_ok=True)
        np.save(folder / "img_emb" / f"img_emb_{name}.npy", images[rows].astype(np.float16))
        if texts is not None:
            (folder / "text_emb").mkdir(parents=True, exist_ok=True)
            np.save(folder / "text_emb" / f"text_emb_{name}.npy", texts[rows].astype(np.float16))
        meta.iloc[rows].reset_index(drop=True).to_parquet(
            folder / "metadata" / f"metadata_{name}.parquet")
        start += size


@pytest.fixture(scope="session")
def crfolder(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A clip-retrieval folder of 3 partitions (padded names), with text_emb and local images."""
    rng = np.random.default_rng(7)
    root = tmp_path_factory.mktemp("cr")
    images = unit(rng, N)
    texts = unit(rng, N)
    pics = root / "pics"
    pics.mkdir()
    paths = []
    for i in range(N):
        if i % 3 == 0:  # a local file, relative to the folder's parent as clip-retrieval ran
            Image.new("RGB", (20, 12), (i % 256, 40, 200)).save(pics / f"{i}.png")
            paths.append(f"pics/{i}.png")
        else:
            paths.append(f"{i:09d}")  # a WebDataset key: no file
    captions = [HOSTILE[i % len(HOSTILE)] + f" #{i}" for i in range(N)]
    meta = pd.DataFrame({"image_path": paths, "caption": captions,
                         "url": [f"https://example.org/{i}.jpg" for i in range(N)],
                         "width": rng.integers(10, 500, N)})
    folder = root / "emb"
    write_clip_retrieval(folder, images, meta, texts, ["0", "1", "2"], [100, 100, 40])
    return {"folder": folder, "images16": images.astype(np.float16), "meta": meta,
            "texts16": texts.astype(np.float16), "root": root}


@pytest.fixture(scope="session")
def imported(crfolder: dict, tmp_path_factory: pytest.TempPathFactory) -> Collection:
    out = tmp_path_factory.mktemp("coll") / "c"
    # the images' paths are relative to where clip-retrieval ran: the folder's parent
    return Collection.from_embeddings(crfolder["folder"], model="toy", out=out,
                                      map_method="pca", progress=False)


def brute_force(vectors16: np.ndarray, query: np.ndarray, k: int) -> np.ndarray:
    base = vectors16.astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    scores = base @ query
    return np.argsort(-scores, kind="stable")[:k], np.sort(scores)[::-1][:k]


# ------------------------------------------------------------------------------ importing
def test_imported_text_query_ranks_as_brute_force_over_float16(imported, crfolder, toy_encoder):
    for text in ("red", "bleu", "grün", "жёлтый"):
        query = toy_encoder.encode_text([text])[0]
        expected, scores = brute_force(crfolder["images16"], query, 10)
        found = imported.search(text, k=10)
        assert found["id"].tolist() == expected.tolist()
        np.testing.assert_allclose(found["score"], scores, atol=2e-3)


def test_imported_ids_are_rows_of_the_concatenation_and_metadata_kept(imported, crfolder):
    items = imported.items
    images = items[items["kind"] == "image"]
    assert images["id"].tolist() == list(range(N))
    assert images["image_path"].tolist() == crfolder["meta"]["image_path"].tolist()
    assert images["text"].tolist() == crfolder["meta"]["caption"].tolist()
    assert images["url"].tolist() == crfolder["meta"]["url"].tolist()
    # width is a collection column: the source's own is kept under another name
    assert images["width_source"].tolist() == crfolder["meta"]["width"].tolist()
    stored = imported.vectors("image")[1]
    expected = crfolder["images16"].astype(np.float32)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)
    np.testing.assert_allclose(stored, expected, atol=1e-3)


def test_caption_vectors_become_text_items_paired_with_their_image(imported, crfolder,
                                                                   toy_encoder):
    items = imported.items
    texts = items[items["kind"] == "text"]
    assert len(texts) == N
    assert texts["image_id"].astype(int).tolist() == list(range(N))
    assert texts["text"].tolist() == crfolder["meta"]["caption"].tolist()
    assert np.isfinite(imported.coords[texts["id"].to_numpy()]).all()
    query = toy_encoder.encode_text(["red"])[0]
    expected, _ = brute_force(crfolder["texts16"], query, 5)
    assert imported.search("red", k=5, kind="text")["id"].tolist() == (expected + N).tolist()


def test_manifest_records_which_model_made_and_which_answers(imported, crfolder):
    record = Collection.open(imported.path).manifest["vectors"]
    assert record["queries_by"] == "toy"
    assert record["format"] == "clip-retrieval"
    assert record["rows"] == N
    assert record["source"] == str(crfolder["folder"].resolve())


def test_local_paths_resolve_and_keys_or_urls_get_no_file(imported, crfolder):
    from mclip_explorer.collection.thumbnails import ThumbnailError

    items = imported.items
    local = items.iloc[0]
    assert local["path"] == str((crfolder["root"] / "pics" / "0.png").resolve())
    assert imported.thumbnail(0, 32)[:4] == b"RIFF"
    assert items.iloc[1]["path"] is None  # the WebDataset key 000000001
    with pytest.raises(ThumbnailError, match="no image file"):
        imported.thumbnail(1, 32)


def test_file_urls_resolve_and_a_foreign_out_folder_is_refused(tmp_path):
    picture = tmp_path / "a b.png"
    Image.new("RGB", (8, 8), (0, 200, 0)).save(picture)
    frame = pd.DataFrame({"embedding": list(unit(np.random.default_rng(9), 3)),
                          "image_path": [picture.as_uri(), "https://example.org/x.jpg", None]})
    coll = Collection.from_embeddings(frame, model="toy", out=tmp_path / "c", map_method="pca",
                                      progress=False)
    assert coll.items["path"].tolist() == [str(picture), None, None]
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("keep")
    with pytest.raises(CollectionError, match="not empty and not a collection"):
        Collection.from_embeddings(frame, model="toy", out=tmp_path / "mine")
    assert (tmp_path / "mine" / "notes.txt").read_text() == "keep"


def test_unpadded_names_follow_clip_retrievals_name_order(tmp_path):
    rng = np.random.default_rng(1)
    vectors = unit(rng, 30)
    meta = pd.DataFrame({"image_path": [f"k{i}" for i in range(30)]})
    # written as partitions 2 then 10; sorted by name, img_emb_10 comes first
    write_clip_retrieval(tmp_path / "e", vectors, meta, None, ["2", "10"], [12, 18])
    coll = Collection.from_embeddings(tmp_path / "e", model="toy", out=tmp_path / "c",
                                      map_method="pca", progress=False)
    expected = [f"k{i}" for i in range(12, 30)] + [f"k{i}" for i in range(12)]
    assert coll.items["image_path"].tolist() == expected
    assert (coll.items["kind"] == "image").all()  # no text_emb: no text items


def test_metadata_padded_differently_is_matched_by_partition_number(tmp_path):
    rng = np.random.default_rng(2)
    vectors = unit(rng, 33)
    meta = pd.DataFrame({"image_path": [f"k{i}" for i in range(33)]})
    names, sizes = ["0", "1", "10"], [10, 11, 12]
    write_clip_retrieval(tmp_path / "e", vectors, meta, None, names, sizes)
    for name in names:  # metadata_0000.parquet beside img_emb_0.npy, as some releases have it
        old = tmp_path / "e" / "metadata" / f"metadata_{name}.parquet"
        old.rename(old.with_name(f"metadata_{int(name):04d}.parquet"))
    coll = Collection.from_embeddings(tmp_path / "e", model="toy", out=tmp_path / "c",
                                      map_method="pca", progress=False)
    # img_emb_0, img_emb_1, img_emb_10: rows 0-9, 10-20, 21-32 in that order, with their own rows
    assert coll.items["image_path"].tolist() == meta["image_path"].tolist()
    got = coll.vectors("image")[1]
    np.testing.assert_allclose(got, vectors, atol=2e-3)


def test_parquet_column_npy_pair_and_dataframe_sources(tmp_path, toy_encoder):
    rng = np.random.default_rng(3)
    vectors = unit(rng, 40).astype(np.float32)
    meta = pd.DataFrame({"caption": [f"c{i}" for i in range(40)], "source": "s"})
    with_column = meta.assign(embedding=list(vectors))
    with_column.to_parquet(tmp_path / "t.parquet")
    np.save(tmp_path / "v.npy", vectors)
    meta.to_parquet(tmp_path / "v.parquet")
    query = toy_encoder.encode_text(["green"])[0]
    expected = np.argsort(-(vectors @ query))[:5].tolist()
    for n, source in enumerate([tmp_path / "t.parquet", tmp_path / "v.npy",
                                (tmp_path / "v.npy", tmp_path / "v.parquet"), with_column]):
        coll = Collection.from_embeddings(source, model="toy", out=tmp_path / f"c{n}",
                                          map_method="pca", progress=False)
        assert coll.items["text"].tolist() == meta["caption"].tolist()
        assert coll.search("green", k=5)["id"].tolist() == expected


@pytest.mark.parametrize(("frame", "column", "message"), [
    (pd.DataFrame({"a": [1, 2]}), None, "no embedding column"),
    (pd.DataFrame({"vec": [[0.1, 0.2], [0.3]]}), "vec", "same length"),
    (pd.DataFrame({"vec": [["a", "b"], ["c", "d"]]}), "vec", "not floats|not numeric"),
])
def test_bad_tables_are_named(tmp_path, frame, column, message):
    with pytest.raises(SourceError, match=message):
        Collection.from_embeddings(frame, model="toy", out=tmp_path / "c", column=column,
                                   progress=False)


def test_missing_metadata_and_row_mismatch_are_named(tmp_path):
    rng = np.random.default_rng(4)
    (tmp_path / "e" / "img_emb").mkdir(parents=True)
    np.save(tmp_path / "e" / "img_emb" / "img_emb_0.npy", unit(rng, 5).astype(np.float16))
    with pytest.raises(SourceError, match=r"metadata_<N>\.parquet"):
        Collection.from_embeddings(tmp_path / "e", model="toy", out=tmp_path / "c")
    (tmp_path / "e" / "metadata").mkdir()
    pd.DataFrame({"image_path": ["a"] * 4}).to_parquet(
        tmp_path / "e" / "metadata" / "metadata_0.parquet")
    with pytest.raises(SourceError, match=r"5 rows but metadata_0\.parquet has 4"):
        Collection.from_embeddings(tmp_path / "e", model="toy", out=tmp_path / "c")


def test_dimension_mismatch_names_both_sizes_and_models(tmp_path):
    frame = pd.DataFrame({"embedding": list(np.eye(512, dtype=np.float32)[:4])})
    # a registry model is checked before its weights are looked for
    with pytest.raises(ModelMismatchError, match=r"512-d.*'XLM-Roberta-Large-Vit-L-14'.*768-d"):
        Collection.from_embeddings(frame, model="XLM-Roberta-Large-Vit-L-14", out=tmp_path / "c",
                                   vectors_model="ViT-B-32")
    with pytest.raises(ModelMismatchError, match=r"512-d.*'toy'.*32-d"):
        Collection.from_embeddings(frame, model="toy", out=tmp_path / "c")


def test_vectors_of_another_image_tower_are_refused(tmp_path):
    frame = pd.DataFrame({"embedding": list(np.eye(768, dtype=np.float32)[:4])})
    with pytest.raises(ModelMismatchError, match=r"'ViT-B/32'.*ViT-L-14-quickgelu"):
        Collection.from_embeddings(frame, model="XLM-Roberta-Large-Vit-L-14", out=tmp_path / "c",
                                   vectors_model="ViT-B/32")


def test_matching_towers_pass_the_check():
    from mclip_explorer.collection.imported import check_pairing

    for made_by in ("ViT-L/14", "ViT-L-14 (openai)", "LABSE-Vit-L-14", "vit-l-14-quickgelu"):
        check_pairing("XLM-Roberta-Large-Vit-L-14", 768, 768, made_by, "src")
    with pytest.raises(ModelMismatchError):
        check_pairing("XLM-Roberta-Large-Vit-L-14", 768, 768, "XLM-Roberta-Large-Vit-B-32", "s")


def test_nan_rows_are_failed_items_not_map_points(tmp_path):
    vectors = unit(np.random.default_rng(5), 12).astype(np.float32)
    vectors[3] = np.nan
    vectors[4] = 0
    coll = Collection.from_embeddings(pd.DataFrame({"embedding": list(vectors)}), model="toy",
                                      out=tmp_path / "c", map_method="pca", progress=False)
    assert coll.items["error"].notna().tolist() == [i in (3, 4) for i in range(12)]
    assert np.isnan(coll.coords[[3, 4]]).all()
    assert 3 not in coll.search("red", k=12)["id"].tolist()


def test_add_and_widget_work_on_an_imported_collection(tmp_path, crfolder):
    coll = Collection.from_embeddings(crfolder["folder"], model="toy", out=tmp_path / "c",
                                      map_method="pca", progress=False, texts=False)
    picture = tmp_path / "new.png"
    Image.new("RGB", (16, 16), (255, 0, 0)).save(picture)
    new = coll.add([str(picture)], progress=False)
    assert new.tolist() == [N]
    assert np.isfinite(coll.coords[N]).all()
    assert Collection.open(coll.path).search(str(picture), k=1)["id"].tolist() == [N]
    from mclip_explorer.widget.explorer import ExplorerWidget

    widget = ExplorerWidget(Collection.open(coll.path))
    assert widget.n_items == N + 1


# ------------------------------------------------------------------------------ exporting
def test_export_clip_retrieval_layout_dtypes_and_round_trip(imported, crfolder, tmp_path):
    out = imported.export("clip-retrieval", tmp_path / "cr", rows_per_file=100)
    width = int(math.log10(3)) + 1
    names = [str(i).zfill(width) for i in range(3)]
    assert sorted(p.name for p in (out / "img_emb").iterdir()) == [f"img_emb_{n}.npy"
                                                                   for n in names]
    assert sorted(p.name for p in (out / "text_emb").iterdir()) == [f"text_emb_{n}.npy"
                                                                    for n in names]
    blocks = [np.load(out / "img_emb" / f"img_emb_{n}.npy") for n in names]
    assert all(b.dtype == np.float16 and b.shape[1] == DIM for b in blocks)
    assert [len(b) for b in blocks] == [100, 100, 40]
    np.testing.assert_allclose(np.concatenate(blocks).astype(np.float32),
                               crfolder["images16"].astype(np.float32), atol=2e-3)
    meta = pd.concat([pd.read_parquet(out / "metadata" / f"metadata_{n}.parquet")
                      for n in names], ignore_index=True)
    assert list(meta.columns[:2]) == ["image_path", "caption"]
    assert meta["caption"].tolist() == crfolder["meta"]["caption"].tolist()
    keys = crfolder["meta"]["image_path"]
    expected_paths = [str((crfolder["root"] / k).resolve()) if k.startswith("pics/") else k
                      for k in keys]
    assert meta["image_path"].tolist() == expected_paths
    assert not list(tmp_path.glob(".cr.*.tmp"))
    again = Collection.from_embeddings(out, model="toy", out=tmp_path / "back",
                                       map_method="pca", progress=False)
    np.testing.assert_array_equal(again.vectors("image")[0], imported.vectors("image")[0])
    np.testing.assert_allclose(again.vectors("image")[1], imported.vectors("image")[1],
                               atol=2e-3)
    assert again.items["text"].tolist() == imported.items["text"].tolist()
    assert again.search("red", k=10)["id"].tolist() == imported.search("red", k=10)["id"].tolist()


def test_export_refuses_a_non_empty_folder_and_unknown_formats(imported, tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("mine")
    with pytest.raises(CollectionError, match="not an empty folder"):
        imported.export("clip-retrieval", tmp_path / "full")
    assert (tmp_path / "full" / "x").read_text() == "mine"
    with pytest.raises(ValueError, match="unknown export format 'csv'"):
        imported.export("csv", tmp_path / "x.csv")


def test_export_embedding_atlas_schema_neighbours_and_images(imported, tmp_path):
    import pyarrow as pa

    path = imported.export("embedding-atlas", tmp_path / "atlas.parquet", neighbors=5)
    table = pq.read_table(path)
    schema = table.schema
    assert schema.field("projection_x").type == pa.float32()
    assert schema.field("projection_y").type == pa.float32()
    assert schema.field("neighbors").type == pa.struct(
        [("ids", pa.list_(pa.int64())), ("distances", pa.list_(pa.float32()))])
    assert schema.field("image").type == pa.struct([("bytes", pa.binary()),
                                                    ("path", pa.string())])
    text_type = schema.field("text").type
    assert pa.types.is_string(text_type) or pa.types.is_large_string(text_type)
    frame = table.to_pandas()
    assert len(frame) == 2 * N  # images and caption texts, all on the map
    # Embedding Atlas stacks the lists into one matrix: every row has the same count.
    assert {len(nb["ids"]) for nb in frame["neighbors"]} == {5}
    image_ids, image_vectors = imported.vectors("image")
    text_ids, text_vectors = imported.vectors("text")
    all_ids = np.concatenate([image_ids, text_ids])
    vectors = np.concatenate([image_vectors, text_vectors])
    exported = frame["id"].to_numpy()
    assert sorted(exported.tolist()) == sorted(all_ids.tolist())
    for row in (0, 7, 100, N + 3):  # the exact nearest other items, images or texts
        item = int(exported[row])
        sims = vectors @ vectors[all_ids == item][0]
        sims[all_ids == item] = -2
        best = np.argsort(-sims)[:5]
        nb = frame["neighbors"].iloc[row]
        assert exported[np.asarray(nb["ids"])].tolist() == all_ids[best].tolist()
        np.testing.assert_allclose(nb["distances"], 1 - sims[best], atol=1e-4)
    images = frame["image"]
    assert images.iloc[0]["bytes"][:3] == b"\xff\xd8\xff"  # a JPEG of the local picture
    assert images.iloc[1] is None  # a WebDataset key: no picture
    assert frame["text"].iloc[0] == imported.items["text"].iloc[0]


class _Tags(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, list[tuple[str, str | None]]]] = []
        self.data: dict[str, str] = {}
        self._in: str | None = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, attrs))
        self._in = dict(attrs).get("id") if tag == "script" else None

    def handle_data(self, data):
        if self._in:
            self.data[self._in] = self.data.get(self._in, "") + data


def test_export_html_is_offline_and_escapes_hostile_text(imported, tmp_path):
    path = imported.export("html", tmp_path / "map.html", thumb_size=32)
    page = path.read_text(encoding="utf-8")
    assert "http://" not in page and "https://" not in page
    for raw in HOSTILE[:3]:
        assert raw not in page
    parser = _Tags()
    parser.feed(page)
    names = [tag for tag, _ in parser.tags]
    assert names.count("script") == 2
    assert set(names) <= {"html", "head", "meta", "title", "style", "body", "div", "h3",
                          "input", "canvas", "script"}
    for _, attrs in parser.tags:
        for name, value in attrs:
            assert not name.startswith("on")
            assert "//" not in (value or "")
    csp = next(dict(a)["content"] for t, a in parser.tags
               if t == "meta" and dict(a).get("http-equiv") == "Content-Security-Policy")
    assert "default-src 'none'" in csp
    data = json.loads(parser.data["data"])
    items = imported.items
    on_map = items["id"].to_numpy()[np.isfinite(imported.coords).all(axis=1)]
    assert data["id"] == on_map.tolist()
    assert data["text"] == items["text"].iloc[on_map].tolist()
    assert data["thumb"][0].startswith("data:image/webp;base64,")
    assert data["thumb"][1] == ""


def test_fiftyone_export_builds_samples_embeddings_and_a_visualization(imported, tmp_path,
                                                                       monkeypatch):
    """FiftyOne cannot start its MongoDB offline here, so a stand-in records the calls."""
    import sys
    import types

    calls: dict = {}

    class Dataset:
        def __init__(self, name):
            calls["name"] = name

        def add_samples(self, samples):
            calls["samples"] = samples

        def set_values(self, field, values):
            calls[field] = values

        def export(self, export_dir, dataset_type, export_media):
            calls["export"] = (export_dir, dataset_type, export_media)
            Path(export_dir, "samples.json").write_text("{}")

    class Sample(dict):
        def __init__(self, filepath, **fields):
            super().__init__(filepath=filepath, **fields)

    fo = types.ModuleType("fiftyone")
    fo.Dataset, fo.Sample = Dataset, Sample
    fo.types = types.SimpleNamespace(FiftyOneDataset="FiftyOneDataset")
    fob = types.ModuleType("fiftyone.brain")
    fob.compute_visualization = lambda ds, **kw: calls.setdefault("viz", kw)
    fo.brain = fob
    monkeypatch.setitem(sys.modules, "fiftyone", fo)
    monkeypatch.setitem(sys.modules, "fiftyone.brain", fob)
    out = imported.export("fiftyone", tmp_path / "fo")
    assert (out / "samples.json").is_file()
    ids, vectors = imported.vectors("image")
    samples = calls["samples"]
    assert len(samples) == len(ids)
    assert samples[0]["filepath"] == imported.items["path"].iloc[0]
    assert samples[1]["filepath"].endswith("placeholder.png")
    assert samples[5]["caption"] == imported.items["text"].iloc[5]
    np.testing.assert_allclose(calls["mclip_embedding"], vectors, atol=1e-6)
    np.testing.assert_allclose(calls["viz"]["points"], imported.coords[ids])
    assert calls["viz"]["embeddings"] == "mclip_embedding"
    assert calls["viz"]["brain_key"] == "mclip_map"
