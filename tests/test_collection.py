"""Collections with the toy encoder: build, open, search, grow, remove, text items, damage."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mclip_explorer.collection import Collection
from mclip_explorer.collection.store import MANIFEST
from mclip_explorer.errors import CollectionError, ModelMismatchError
from mclip_explorer.models.base import ImageBatch
from mclip_explorer.models.toy import COLOURS, ToyEncoder

WARM = ("red", "orange", "yellow", "pink", "brown")


def make_images(root: Path, colours: Sequence[str] = tuple(COLOURS), per_colour: int = 3,
                seed: int = 0, broken: bool = True) -> list[Path]:
    """Noisy colour squares in ``warm/`` and ``cold/`` sub-folders, plus one undecodable file."""
    rng = np.random.default_rng(seed)
    paths = []
    for name in colours:
        rgb = np.array(COLOURS[name][0])
        folder = root / ("warm" if name in WARM else "cold")
        folder.mkdir(parents=True, exist_ok=True)
        for j in range(per_colour):
            noise = rng.integers(-25, 25, (32, 32, 3))
            pixels = np.clip(rgb + noise, 0, 255).astype(np.uint8)
            path = folder / f"{name}_{j:02d}.png"
            Image.fromarray(pixels).save(path)
            paths.append(path)
    if broken:
        (root / "broken.jpg").write_bytes(b"this is not a jpeg")
    return paths


class CountingEncoder(ToyEncoder):
    """The toy encoder, counting how many images it was asked to encode."""

    def __init__(self) -> None:
        super().__init__()
        self.encoded = 0

    def iter_image_batches(self, images, **kwargs) -> Iterator[ImageBatch]:  # type: ignore[override]
        self.encoded += len(images)
        return super().iter_image_batches(images, **kwargs)


@pytest.fixture(scope="session")
def image_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("images")
    make_images(root)
    return root


@pytest.fixture(scope="session")
def built_path(image_folder: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("colls") / "base"
    Collection.build(image_folder, model=ToyEncoder(), out=out, progress=False)
    return out


@pytest.fixture
def coll(built_path: Path, tmp_path: Path) -> Collection:
    """A private copy of the session collection (tests may change it)."""
    target = tmp_path / "coll"
    shutil.copytree(built_path, target)
    return Collection.open(target, model=ToyEncoder())


# ------------------------------------------------------------------------------------ build
def test_items_follow_the_contract(coll: Collection, image_folder: Path):
    items = coll.items
    assert list(items.columns[:12]) == ["id", "kind", "path", "text", "lang", "title", "bytes",
                                        "width", "height", "sha256", "error", "deleted"]
    assert (items["id"].to_numpy() == np.arange(len(items))).all()
    assert len(items) == len(COLOURS) * 3 + 1
    broken = items[items["path"].str.endswith("broken.jpg")].iloc[0]
    assert "not an image" in broken["error"]
    good = items[items["error"].isna()]
    assert (good["width"] == 32).all() and (good["height"] == 32).all()
    assert set(good["folder"]) == {"warm", "cold"}
    assert all(Path(p).is_absolute() and Path(p).is_file() for p in good["path"])
    red = good[good["path"].str.endswith("red_01.png")].iloc[0]
    assert red["title"] == "red"
    assert red["bytes"] == (image_folder / "warm" / "red_01.png").stat().st_size


def test_coords_and_vectors(coll: Collection):
    coords = coll.coords
    assert coords.shape == (len(coll.items), 2) and coords.dtype == np.float32
    failed = coll.items["error"].notna().to_numpy()
    assert np.isnan(coords[failed]).all() and np.isfinite(coords[~failed]).all()
    ids, vectors = coll.vectors("image")
    assert ids.tolist() == np.flatnonzero(~failed).tolist()
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=2e-3)
    with pytest.raises(ValueError, match="kind"):
        coll.vectors("audio")


def test_manifest_records_model_and_params(coll: Collection):
    manifest = coll.manifest
    assert manifest["format_version"] == 2 and manifest["precision"] == "float16"
    assert manifest["model"]["fingerprint"] == ToyEncoder().fingerprint
    assert manifest["dim"] == coll.dim == 32
    assert manifest["index"]["image"]["M"] == 16
    assert manifest["index"]["image"]["ef"] is None  # auto: grows with the item count
    assert manifest["projection"]["method"] == "pca"
    assert manifest["counts"] == {"items": 34, "images": 34, "texts": 0, "failed": 1,
                                  "deleted": 0, "live": 33}
    assert "numpy" in manifest["versions"] and "created" in manifest


def test_float32_precision_on_request(image_folder: Path, tmp_path: Path):
    coll = Collection.build(image_folder, model="toy", out=tmp_path / "c", progress=False,
                            precision="float32")
    reopened = Collection.open(tmp_path / "c")
    assert reopened._embeddings.dtype == np.float32
    np.testing.assert_array_equal(reopened.vectors()[1], coll.vectors()[1])
    with pytest.raises(ValueError, match="precision"):
        Collection.build(image_folder, model="toy", out=tmp_path / "d", precision="int8")


def test_progress_shows_rate_and_eta(image_folder: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]):
    Collection.build(image_folder, model="toy", out=tmp_path / "c", progress=True)
    err = capsys.readouterr().err
    assert "hashing" in err and "encoding" in err and "img/s" in err and "<" in err
    assert "indexing" in err


def test_build_refuses_a_folder_of_other_files(image_folder: Path, tmp_path: Path):
    (tmp_path / "notes.txt").write_text("mine")
    with pytest.raises(CollectionError, match="not empty and not a collection"):
        Collection.build(image_folder, model="toy", out=tmp_path, progress=False)
    assert (tmp_path / "notes.txt").read_text() == "mine"


# ----------------------------------------------------------------------------------- search
def test_search_text_in_any_language(coll: Collection):
    for query in ("red", "rot", "красный", "赤"):
        hits = coll.search(query, k=3)
        assert list(hits.columns[:6]) == ["rank", "id", "path", "score", "x", "y"]
        assert hits["rank"].tolist() == [1, 2, 3]
        assert (hits["title"] == "red").all(), query
        assert hits["score"].is_monotonic_decreasing


def test_search_by_image_id_and_vector_agree(coll: Collection):
    items = coll.items
    target = items[items["path"].str.endswith("blue_02.png")].iloc[0]
    by_path = coll.search(Path(target["path"]), k=4)
    by_str = coll.search(target["path"], k=4)
    by_bytes = coll.search(Path(target["path"]).read_bytes(), k=4)
    by_id = coll.search(int(target["id"]), k=4)
    by_vector = coll.search(coll.vectors()[1][coll.vectors()[0] == target["id"]][0], k=4)
    for hits in (by_path, by_str, by_bytes, by_id, by_vector):
        assert hits["id"].iloc[0] == target["id"]
        assert hits["score"].iloc[0] == pytest.approx(1.0, abs=2e-3)
        assert hits["id"].tolist() == by_id["id"].tolist()
    assert by_id[["x", "y"]].iloc[0].tolist() == pytest.approx(coll.coords[target["id"]].tolist())


def test_list_of_queries_is_one_batch_with_a_query_column(coll: Collection):
    queries = ["green", "blau", 5]
    batch = coll.search(queries, k=2)
    assert batch.columns[0] == "query"
    assert batch["query"].tolist() == ["green", "green", "blau", "blau", "id 5", "id 5"]
    for query in queries:
        single = coll.search(query, k=2)
        part = batch[batch["query"] == (query if isinstance(query, str) else f"id {query}")]
        assert part["id"].tolist() == single["id"].tolist()
        np.testing.assert_allclose(part["score"], single["score"], atol=1e-6)
    assert coll.encode_query(queries).shape == (3, 32)


def test_where_filters_on_metadata(coll: Collection):
    for where in ({"folder": "cold"}, {"folder": ["cold"]}, "folder == 'cold'",
                  lambda items: (items["folder"] == "cold").to_numpy(),
                  (coll.items["folder"] == "cold").to_numpy()):
        hits = coll.search("red", k=5, where=where)
        assert len(hits) == 5 and (hits["folder"] == "cold").all()
    none = coll.search("red", k=5, where={"folder": "nowhere"})
    assert none.empty
    with pytest.raises(KeyError, match="no column 'colour'"):
        coll.search("red", where={"colour": "red"})
    with pytest.raises(ValueError, match="one bool per item"):
        coll.search("red", where=np.ones(3, dtype=bool))


@pytest.mark.parametrize(("query", "error", "match"), [
    ([], ValueError, "empty"),
    (3.5, TypeError, "unsupported query type"),
    (10_000, KeyError, "no item with id 10000"),
    (np.zeros(32, np.float32), ValueError, "non-zero"),
    (np.ones(7, np.float32), ValueError, r"shape \(32,\)"),
])
def test_bad_queries_are_named(coll: Collection, query: object, error: type, match: str):
    with pytest.raises(error, match=match):
        coll.search(query)


def test_failed_item_id_and_missing_text_index_are_errors(coll: Collection):
    broken = int(coll.items["error"].notna().to_numpy().argmax())
    with pytest.raises(ValueError, match="no embedding"):
        coll.search(broken)
    with pytest.raises(CollectionError, match="no text items"):
        coll.search("red", kind="text")


def test_index_recall_and_placement(coll: Collection):
    assert coll.index_recall(sample=100, k=5) >= 0.98
    ids, vectors = coll.vectors()
    xy, stretch = coll.place(vectors[:4])
    # An item's own vector has itself as nearest neighbour at similarity 1: it lands on itself.
    np.testing.assert_allclose(xy, coll.coords[ids[:4]], atol=1e-3)
    assert stretch.shape == (4,) and np.isfinite(stretch).all()


# ------------------------------------------------------------------------------ open / copy
def test_reopen_gives_the_same_answers(built_path: Path):
    first = Collection.open(built_path)
    second = Collection.open(built_path)
    assert first._encoder is None  # the model loads lazily, on the first text query
    pd.testing.assert_frame_equal(first.search("gelb", k=5), second.search("gelb", k=5))
    np.testing.assert_array_equal(first.coords, second.coords)


def test_copied_collection_opens_elsewhere(built_path: Path, tmp_path: Path):
    copy = tmp_path / "moved" / "coll"
    shutil.copytree(built_path, copy)
    original, moved = Collection.open(built_path), Collection.open(copy)
    pd.testing.assert_frame_equal(original.search("blue", k=4), moved.search("blue", k=4))
    assert moved.path == copy.resolve()


def test_wrong_model_is_a_clear_error(built_path: Path):
    with pytest.raises(ModelMismatchError, match="encoded with 'toy'"):
        Collection.open(built_path, model=ToyEncoder(seed=1))
    with pytest.raises(ModelMismatchError, match="dim 48"):
        Collection.open(built_path, model=ToyEncoder(dim=48))


def test_lazy_model_is_checked_too(coll: Collection):
    manifest = json.loads((coll.path / MANIFEST).read_text())
    manifest["model"]["fingerprint"] = "0" * 32
    (coll.path / MANIFEST).write_text(json.dumps(manifest))
    reopened = Collection.open(coll.path)
    reopened.search(3)  # an id query needs no model
    with pytest.raises(ModelMismatchError, match="0000"):
        reopened.search("red")


# ---------------------------------------------------------------------------- cache / grow
def test_rebuild_encodes_only_new_files_and_knows_renamed_ones(tmp_path: Path):
    images = tmp_path / "images"
    make_images(images, colours=("red", "green", "blue"), broken=False)
    encoder = CountingEncoder()
    Collection.build(images, model=encoder, out=tmp_path / "c", progress=False)
    assert encoder.encoded == 9
    make_images(images / "more", colours=("pink", "grey"), per_colour=5, seed=7, broken=False)
    (images / "warm" / "red_00.png").rename(images / "renamed_red.png")
    shutil.move(images / "cold" / "blue_01.png", images / "more" / "moved_blue.png")
    encoder.encoded = 0
    coll = Collection.build(images, model=encoder, out=tmp_path / "c", progress=False)
    assert encoder.encoded == 10
    encoder.encoded = 0
    Collection.build(images, model=encoder, out=tmp_path / "c", progress=False)
    assert encoder.encoded == 0
    paths = coll.items["path"].str.replace(str(images), "", regex=False).tolist()
    assert "/renamed_red.png" in paths and "/more/moved_blue.png" in paths
    assert len(paths) == 19 and "/warm/red_00.png" not in paths


def test_identical_files_are_encoded_once(tmp_path: Path):
    images = tmp_path / "images"
    make_images(images, colours=("red",), per_colour=1, broken=False)
    shutil.copy(images / "warm" / "red_00.png", images / "copy.png")
    encoder = CountingEncoder()
    coll = Collection.build(images, model=encoder, out=tmp_path / "c", progress=False)
    assert encoder.encoded == 1 and len(coll.vectors()[0]) == 2


def test_add_equals_a_full_rebuild(tmp_path: Path):
    images = tmp_path / "images"
    paths = make_images(images, broken=False)
    first, rest = paths[::2], paths[1::2]
    grown = Collection.build(first, model="toy", out=tmp_path / "grown", progress=False)
    encoder = CountingEncoder()
    grown = Collection.open(tmp_path / "grown", model=encoder)
    new_ids = grown.add(rest, progress=False)
    assert encoder.encoded == len(rest)
    assert new_ids.tolist() == list(range(len(first), len(paths)))
    full = Collection.build(paths, model="toy", out=tmp_path / "full", progress=False)
    by_path = {p: i for i, p in enumerate(full.items["path"])}
    order = [by_path[p] for p in grown.items["path"]]
    np.testing.assert_array_equal(grown._embeddings, full._embeddings[order])
    assert np.isfinite(grown.coords).all() and np.isfinite(grown.stretch).all()
    for query in ("red", "blau", Path(rest[3])):
        a, b = grown.search(query, k=8), full.search(query, k=8)
        assert a["path"].tolist() == b["path"].tolist()
        np.testing.assert_allclose(a["score"], b["score"], atol=1e-6)
    reopened = Collection.open(tmp_path / "grown")
    pd.testing.assert_frame_equal(reopened.search("red", k=8), grown.search("red", k=8))


def test_add_skips_known_files_and_replaces_changed_ones(coll: Collection, image_folder: Path,
                                                         tmp_path: Path):
    assert len(coll.add(image_folder, progress=False)) == 0
    changed = tmp_path / "changed.png"
    make_images(tmp_path / "src", colours=("red",), per_colour=1, broken=False)
    shutil.copy(tmp_path / "src" / "warm" / "red_00.png", changed)
    first = coll.add([changed], progress=False)
    Image.new("RGB", (32, 32), COLOURS["green"][0]).save(changed)
    second = coll.add([changed], progress=False)
    items = coll.items
    assert items.loc[first[0], "deleted"] and not items.loc[second[0], "deleted"]
    assert coll.search(str(changed), k=1)["id"].iloc[0] == second[0]


def test_remove_hides_items_everywhere(coll: Collection):
    hits = coll.search("red", k=3)
    gone = hits["id"].tolist()[:2]
    coll.remove(gone)
    assert not set(gone) & set(coll.search("red", k=10)["id"])
    assert np.isnan(coll.coords[gone]).all()
    reopened = Collection.open(coll.path)
    assert reopened.items.loc[gone, "deleted"].all()
    assert not set(gone) & set(reopened.search(3, k=40)["id"])
    assert reopened.manifest["counts"]["deleted"] == 2
    with pytest.raises(KeyError, match="no items with id"):
        coll.remove([999])


def test_text_items_have_their_own_index_on_the_same_map(coll: Collection):
    ids = coll.add_texts(["red", "rot", "rouge", "blue sky"], lang=["en", "de", "fr", "en"],
                         source="captions")
    items = coll.items.loc[ids]
    assert (items["kind"] == "text").all() and items["path"].isna().all()
    assert items["lang"].tolist() == ["en", "de", "fr", "en"]
    assert (items["source"] == "captions").all()
    assert np.isfinite(coll.coords[ids]).all()
    hits = coll.search("красный", k=3, kind="text")
    assert set(hits["text"]) == {"red", "rot", "rouge"} and "lang" in hits.columns
    image_hits = coll.search("red", k=40)
    assert not set(ids) & set(image_hits["id"])
    reopened = Collection.open(coll.path)
    pd.testing.assert_frame_equal(reopened.search("red", k=2, kind="text"),
                                  coll.search("red", k=2, kind="text"))
    with pytest.raises(ValueError, match="2 values for 1 texts"):
        coll.add_texts("x", lang=["en", "de"])


# ----------------------------------------------------------------------------------- damage
def _damage(path: Path, how: str) -> None:
    manifest = json.loads((path / MANIFEST).read_text())
    files = manifest["files"]
    if how == "truncated index":
        target = path / files["index_image"]["name"]
        target.write_bytes(target.read_bytes()[:500])
    elif how == "truncated index, manifest size fixed":
        target = path / files["index_image"]["name"]
        target.write_bytes(target.read_bytes()[:500])
        files["index_image"]["bytes"] = 500
    elif how == "missing embeddings":
        (path / files["embeddings"]["name"]).unlink()
    elif how == "not json":
        (path / MANIFEST).write_text("{ this is not json")
    elif how == "newer format":
        manifest["format_version"] = 99
    elif how == "wrong dim":
        manifest["dim"] = 64
    elif how == "wrong count":
        manifest["counts"]["items"] = 7
    elif how == "escaping file name":
        files["items"]["name"] = "../items.parquet"
    elif how == "no model":
        del manifest["model"]
    elif how == "pickled embeddings":
        target = path / files["embeddings"]["name"]
        np.save(target, np.array([{"evil": 1}], dtype=object), allow_pickle=True)
        files["embeddings"]["bytes"] = target.stat().st_size
    if how != "not json":
        (path / MANIFEST).write_text(json.dumps(manifest))


@pytest.mark.parametrize(("how", "match"), [
    ("missing embeddings", "collection file missing"),
    ("not json", "not valid JSON"),
    ("newer format", "format 99"),
    ("wrong dim", "embeddings has shape"),
    ("wrong count", "items table has 34 rows, the manifest says 7"),
    ("escaping file name", "bad file name"),
    ("no model", "missing key"),
    ("pickled embeddings", "damaged embeddings file"),
])
def test_damaged_collection_is_a_clear_error(built_path: Path, tmp_path: Path, how: str,
                                             match: str):
    copy = tmp_path / "coll"
    shutil.copytree(built_path, copy)
    _damage(copy, how)
    with pytest.raises(CollectionError, match=match):
        Collection.open(copy)


@pytest.mark.parametrize(("how", "match"), [
    ("truncated index", "truncated or replaced"),
    ("truncated index, manifest size fixed",
     "checksum is [0-9a-f]{32}, the manifest's field 'files.index_image.xxh3_128' says"),
])
def test_damaged_index_is_rebuilt_from_the_embeddings(built_path: Path, tmp_path: Path, how: str,
                                                      match: str):
    from mclip_explorer.errors import DamageWarning

    copy = tmp_path / "coll"
    shutil.copytree(built_path, copy)
    _damage(copy, how)
    with pytest.warns(DamageWarning, match=match):
        damaged = Collection.open(copy)
    # Same hits; scores within float16 rounding (the rebuilt index holds the stored vectors).
    pd.testing.assert_frame_equal(damaged.search("red", k=5),
                                  Collection.open(built_path).search("red", k=5),
                                  check_exact=False, atol=2e-3)


def test_stale_copy_cannot_overwrite_a_newer_state(coll: Collection):
    other = Collection.open(coll.path)
    other.remove([1])
    with pytest.raises(CollectionError, match="changed by another process"):
        coll.remove([2])
    assert Collection.open(coll.path).items["deleted"].tolist()[1:3] == [True, False]
    # The refused object now shows what is on disk, not its lost change, and can go on.
    assert coll.items["deleted"].tolist()[1:3] == [True, False]
    coll.remove([2])
    assert Collection.open(coll.path).items["deleted"].tolist()[1:3] == [True, True]


def test_a_second_writer_is_refused_while_one_commits(coll: Collection):
    from mclip_explorer.collection.store import write_lock

    with write_lock(coll.path), pytest.raises(CollectionError, match="another process"):
        coll.add_texts("red")
    assert "text" not in coll._indexes and len(coll.items) == 34  # the lost change is undone


def test_not_a_collection(tmp_path: Path):
    with pytest.raises(CollectionError, match="collection folder not found"):
        Collection.open(tmp_path / "nope")
    with pytest.raises(CollectionError, match=r"no manifest\.json"):
        Collection.open(tmp_path)


def test_unchanged_files_are_not_read_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    from mclip_explorer.collection import building

    images = tmp_path / "images"
    make_images(images, colours=("red", "blue"), broken=False)
    Collection.build(images, model="toy", out=tmp_path / "c", progress=False)
    reads: list[object] = []
    real_read = building._read
    monkeypatch.setattr(building, "_read", lambda payload: reads.append(payload) or
                        real_read(payload))
    Collection.build(images, model="toy", out=tmp_path / "c", progress=False)
    assert reads == []
    target = images / "warm" / "red_00.png"
    target.write_bytes((images / "cold" / "blue_00.png").read_bytes())
    coll = Collection.build(images, model="toy", out=tmp_path / "c", progress=False)
    assert reads == [str(target)]
    row = coll.items[coll.items["path"] == str(target)].iloc[0]
    hits = coll.search(int(row["id"]), k=2)  # now the same pixels as blue_00: a tie at 1.0
    assert set(hits["title"]) == {"red", "blue"} and hits["score"].min() > 0.999
    # A new mtime alone is enough to read a file again (a same-size edit is never served stale).
    reads.clear()
    stat = target.stat()
    os.utime(target, ns=(stat.st_atime_ns, stat.st_mtime_ns + 10**9))
    Collection.build(images, model="toy", out=tmp_path / "c", progress=False)
    assert reads == [str(target)]
