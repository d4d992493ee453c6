"""Beyond RAM: memory-mapped float16 store, format 1 still opening, parallel chunked index adds,
the map fitted on a sample with the other images placed (small N, tiny thresholds)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mclip_explorer.collection import Collection, building, layout
from mclip_explorer.collection.index import VectorIndex
from mclip_explorer.collection.projection import pca_preview
from mclip_explorer.collection.store import MANIFEST
from mclip_explorer.models.toy import ToyEncoder
from tests.test_collection import make_images
from tests.test_projection import blobs

DIM = 32  # the toy encoder's size, so the collections below also take toy text queries
N = 600
SAMPLE = 150


def assemble(out: Path, vectors: np.ndarray, **kwargs: Any) -> Collection:
    """A collection of precomputed vectors through the build path after encoding."""
    frame = pd.DataFrame({"path": [f"item-{i}.jpg" for i in range(len(vectors))]})
    frame["kind"] = "image"
    out.mkdir(parents=True)
    options: dict[str, Any] = {"device": None, "precision": "float16", "map_method": "auto",
                               "map_sample": SAMPLE, "progress": False}
    options.update(kwargs)
    return Collection._assemble(out, frame, vectors, ToyEncoder(dim=DIM), **options)


def unit(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.fixture(scope="module")
def data() -> tuple[np.ndarray, np.ndarray]:
    return blobs(N, dim=DIM, clusters=5, seed=3)


@pytest.fixture(scope="module")
def sampled(data: tuple[np.ndarray, np.ndarray],
            tmp_path_factory: pytest.TempPathFactory) -> Collection:
    return assemble(tmp_path_factory.mktemp("sampled") / "c", data[0])


# ------------------------------------------------------------------------ store and format
def test_embeddings_are_float16_and_memory_mapped(sampled: Collection):
    emb_name = sampled.manifest["files"]["embeddings"]["name"]
    for coll in (sampled, Collection.open(sampled.path)):  # after the build's commit, on open
        assert isinstance(coll._embeddings, np.memmap) and coll._embeddings.dtype == np.float16
        assert Path(coll._embeddings.filename).name == emb_name
    in_ram = Collection.open(sampled.path, memory_map=False)
    assert not isinstance(in_ram._embeddings, np.memmap)
    np.testing.assert_array_equal(in_ram._embeddings, sampled._embeddings)
    assert sampled.manifest["format_version"] == 2 and sampled.manifest["precision"] == "float16"


def test_a_memory_mapped_collection_grows_and_stays_mapped(tmp_path: Path):
    make_images(tmp_path / "img", per_colour=2, broken=False)
    paths = sorted((tmp_path / "img").rglob("*.png"))
    Collection.build(paths[:10], model=ToyEncoder(), out=tmp_path / "c", progress=False)
    coll = Collection.open(tmp_path / "c", model=ToyEncoder())
    before = np.array(coll._embeddings)
    coll.add(paths[10:], progress=False)
    assert isinstance(coll._embeddings, np.memmap) and len(coll._embeddings) == len(paths)
    np.testing.assert_array_equal(coll._embeddings[:10], before)  # old rows unchanged
    reopened = Collection.open(tmp_path / "c")
    np.testing.assert_array_equal(reopened._embeddings, coll._embeddings)


def test_a_format_1_float32_collection_still_opens(tmp_path: Path):
    make_images(tmp_path / "img", per_colour=2)
    out = tmp_path / "old"
    built = Collection.build(tmp_path / "img", model=ToyEncoder(), out=out, precision="float32",
                             progress=False)
    expected = built.search("red", k=5)
    manifest = json.loads((out / MANIFEST).read_text())
    manifest["format_version"] = 1  # what this version's predecessor wrote
    (out / MANIFEST).write_text(json.dumps(manifest))
    old = Collection.open(out, model=ToyEncoder())
    assert old.manifest["format_version"] == 1
    assert isinstance(old._embeddings, np.memmap) and old._embeddings.dtype == np.float32
    pd.testing.assert_frame_equal(old.search("red", k=5), expected)
    new_ids = old.add_texts(["blue"])  # and it can still be changed
    assert np.isfinite(old.coords[new_ids]).all()


def test_search_over_float16_ranks_like_exact_search_over_the_same_float16(tmp_path: Path):
    every, _ = blobs(3200, dim=DIM, clusters=8, seed=5)
    x, queries = every[:3000], unit(every[3000:])  # held-out queries from the same clusters
    coll = assemble(tmp_path / "c", x, map_method="pca")
    stored = unit(np.asarray(coll._embeddings, dtype=np.float32))
    assert not np.array_equal(stored.astype(np.float32), x)  # float16 really rounded them
    ids, scores = coll.neighbours(queries, 10)
    exact = stored @ queries.T
    best = np.argsort(-exact, axis=0, kind="stable")[:10].T
    recall = np.mean([len(np.intersect1d(a, b)) / 10 for a, b in zip(ids, best, strict=True)])
    assert recall >= 0.99
    same = (ids == best).all(axis=1)
    assert same.mean() >= 0.95  # the same order, not only the same set
    np.testing.assert_allclose(scores[same], np.take_along_axis(exact.T, best, 1)[same],
                               atol=1e-5)


# ------------------------------------------------------------------------------ the index
def test_index_is_added_in_parallel_chunks_read_by_id(tmp_path: Path, monkeypatch):
    x, _ = blobs(3000, dim=DIM, seed=7)
    store = np.lib.format.open_memmap(tmp_path / "v.npy", mode="w+", dtype=np.float16,
                                      shape=x.shape)
    store[:] = x
    ids = np.arange(0, 3000, 2, dtype=np.int64)  # every other row: rows are read by id
    calls: list[tuple[int, int]] = []
    original = VectorIndex.add

    def spy(self: VectorIndex, add_ids: np.ndarray, vectors: np.ndarray) -> None:
        calls.append((len(add_ids), self.num_threads))
        original(self, add_ids, vectors)

    monkeypatch.setattr(VectorIndex, "add", spy)
    index = VectorIndex(DIM, num_threads=2)
    building.index_vectors(index, ids, store, chunk=400, parallel_min=0)
    assert [c[0] for c in calls] == [400, 400, 400, 300] and {c[1] for c in calls} == {2}
    assert index.num_threads == 2 and index._index.get_max_elements() == len(ids)  # one resize
    np.testing.assert_array_equal(index.ids, ids)
    queries = unit(x[ids[:100]] + 0.01)
    got, _ = index.query(queries, 5)
    best = np.argsort(-(unit(store[ids].astype(np.float32)) @ queries.T), axis=0)[:5].T
    assert np.mean([len(np.intersect1d(a, ids[b])) / 5 for a, b in zip(got, best,
                                                                      strict=True)]) >= 0.99
    calls.clear()
    building.index_vectors(VectorIndex(DIM, num_threads=2), ids, store, chunk=400)
    assert {c[1] for c in calls} == {1}  # small builds: one thread, a reproducible graph


# ------------------------------------------------------------------------------------ the map
def _exact_place(vectors: np.ndarray, base: np.ndarray, base_xy: np.ndarray,
                 k: int = 10) -> tuple[np.ndarray, np.ndarray]:
    """Inverse-squared-cosine-distance mean of the k exactly nearest base items' positions."""
    sims = unit(vectors) @ unit(base).T
    near = np.argsort(-sims, axis=1, kind="stable")[:, :k]
    s = np.take_along_axis(sims, near, 1)
    w = np.maximum(1 - s, 1e-6) ** -2.0
    return (w[..., None] * base_xy[near]).sum(1) / w.sum(1)[:, None], near


def test_large_maps_fit_a_sample_and_place_the_rest(sampled: Collection,
                                                    data: tuple[np.ndarray, np.ndarray]):
    _, labels = data
    params = sampled.manifest["projection"]
    assert params["sample"] == SAMPLE and params["placed"] == N - SAMPLE
    stretch, coords = sampled.stretch, sampled.coords
    fitted = np.flatnonzero(stretch == 0)
    placed = np.flatnonzero(stretch != 0)
    assert len(fitted) == SAMPLE and np.isfinite(coords).all() and np.isfinite(stretch).all()
    stored = np.asarray(sampled._embeddings, dtype=np.float32)
    # The sample is laid out by the fit alone (here PCA: SAMPLE is below UMAP's threshold).
    np.testing.assert_allclose(coords[fitted], pca_preview(unit(stored[fitted])), atol=1e-4)
    # The rest sit where their exactly nearest sampled items put them, inside their box.
    xy, near = _exact_place(stored[placed], stored[fitted], coords[fitted])
    np.testing.assert_allclose(coords[placed], xy, atol=1e-4)
    box = coords[fitted][near]
    assert ((coords[placed] >= box.min(1) - 1e-5) & (coords[placed] <= box.max(1) + 1e-5)).all()
    # ... which is next to their own cluster on the map.
    d = np.linalg.norm(coords[placed][:, None] - coords[fitted][None], axis=2)
    assert (labels[fitted][d.argmin(1)] == labels[placed]).mean() >= 0.95


def test_the_sampled_map_is_seeded(sampled: Collection, data: tuple[np.ndarray, np.ndarray],
                                   tmp_path: Path):
    again = assemble(tmp_path / "a", data[0])
    np.testing.assert_array_equal(again.coords, sampled.coords)
    np.testing.assert_array_equal(again.stretch, sampled.stretch)
    other = layout.first_map(again._index("image"), again._embeddings,
                             np.arange(N, dtype=np.int64), "auto", False, sample_max=SAMPLE,
                             seed=1)
    assert not np.array_equal(other[1] == 0, sampled.stretch == 0)


def test_the_sample_is_fitted_on_its_own_knn_graph(data: tuple[np.ndarray, np.ndarray],
                                                   tmp_path: Path, monkeypatch):
    seen: dict[str, Any] = {}
    original = layout.fit_map

    def spy(vectors: np.ndarray, **kwargs: Any) -> Any:
        seen["vectors"], seen["knn"] = np.array(vectors), kwargs["knn"]
        return original(vectors, **kwargs)

    monkeypatch.setattr(layout, "fit_map", spy)
    assemble(tmp_path / "c", data[0], map_sample=SAMPLE)
    knn_ids, _ = seen["knn"]
    sims = unit(seen["vectors"]) @ unit(seen["vectors"]).T
    exact = np.argsort(-sims, axis=1, kind="stable")[:, :knn_ids.shape[1]]
    assert knn_ids.shape == (SAMPLE, 16)
    np.testing.assert_array_equal(knn_ids[:, 0], np.arange(SAMPLE))  # each item first
    overlap = np.mean([len(np.intersect1d(a, b)) / 16 for a, b in zip(knn_ids, exact,
                                                                      strict=True)])
    assert overlap >= 0.99


def test_small_maps_and_pca_are_not_sampled(data: tuple[np.ndarray, np.ndarray],
                                            tmp_path: Path):
    whole = assemble(tmp_path / "w", data[0][:SAMPLE])
    assert "sample" not in whole.manifest["projection"] and (whole.stretch == 0).all()
    pca = assemble(tmp_path / "p", data[0], map_method="pca")
    assert "sample" not in pca.manifest["projection"] and (pca.stretch == 0).all()
    with pytest.raises(ValueError, match="map sample size"):
        assemble(tmp_path / "bad", data[0], map_sample=1)


def test_added_items_are_placed_from_their_nearest_images(sampled: Collection, tmp_path: Path):
    target = tmp_path / "copy"
    shutil.copytree(sampled.path, target)
    coll = Collection.open(target, model=ToyEncoder(dim=DIM))
    before = coll.coords.copy()
    new = coll.add_texts(["red", "blau", "vert"])
    stored = np.asarray(coll._embeddings, dtype=np.float32)
    xy, _ = _exact_place(stored[new], stored[:N], before)
    np.testing.assert_allclose(coll.coords[new], xy, atol=1e-4)
    np.testing.assert_array_equal(coll.coords[:N], before)  # no refit
