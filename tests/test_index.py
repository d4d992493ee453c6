"""VectorIndex: the hnswlib wrapper (add, delete, grow, filtered search, kNN graph, files)."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from mclip_explorer.collection import index as index_module
from mclip_explorer.collection.index import VectorIndex
from mclip_explorer.errors import CollectionError


def clustered(n: int, dim: int = 512, *, clusters: int = 50, local_dim: int = 12,
              seed: int = 0) -> np.ndarray:
    """CLIP-like unit vectors: clusters in a common cone, each a low-dimensional patch plus noise.

    Calibrated on real image embeddings' statistics: nearest-neighbour cosine about 0.94, 10th
    neighbour about 0.90, median pair about 0.54. Uniform random vectors have no neighbours
    worth the name and make every ANN index look broken, so recall is never judged on them.
    """
    rng = np.random.default_rng(seed)
    common = rng.normal(size=dim)
    centers = rng.normal(size=(clusters, dim)) + 1.5 * common
    bases = rng.normal(size=(clusters, local_dim, dim)) / np.sqrt(local_dim)
    label = rng.integers(0, clusters, n)
    z = rng.normal(size=(n, local_dim))
    x = centers[label] + np.einsum("nl,nld->nd", z, bases[label]) + 0.15 * rng.normal(
        size=(n, dim))
    x = x.astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    x = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def exact_topk(queries: np.ndarray, base: np.ndarray, base_ids: np.ndarray, k: int) -> np.ndarray:
    sims = queries @ base.T
    return base_ids[np.argsort(-sims, axis=1, kind="stable")[:, :k]]


@pytest.fixture(scope="session")
def big() -> tuple[np.ndarray, np.ndarray, VectorIndex]:
    """8,000 clustered 512-d items at default parameters, and 500 held-out queries."""
    data = clustered(8500)
    base, queries = data[:8000], data[8000:]
    index = VectorIndex(512, num_threads=1)  # one thread: the same graph on every run
    index.add(np.arange(8000), base)
    return base, queries, index


@pytest.fixture()
def small() -> tuple[np.ndarray, VectorIndex]:
    vectors = clustered(300, 32, clusters=6, local_dim=4)
    index = VectorIndex(32)
    index.add(np.arange(300) * 2 + 5, vectors)  # sparse ids: nothing may assume id == row
    return vectors, index


# ------------------------------------------------------------------------- add / query / ids
def test_query_finds_items_themselves_with_cosine_scores(small):
    vectors, index = small
    ids, scores = index.query(vectors[:20], 3)
    assert ids.dtype == np.int64 and scores.dtype == np.float32 and ids.shape == (20, 3)
    assert (ids[:, 0] == np.arange(20) * 2 + 5).all()
    np.testing.assert_allclose(scores[:, 0], 1.0, atol=1e-5)
    expected = np.einsum("nd,nkd->nk", vectors[:20], vectors[(ids - 5) // 2])
    np.testing.assert_allclose(scores, expected, atol=1e-5)
    assert (np.diff(scores, axis=1) <= 1e-6).all()


def test_single_vector_query_and_len_and_contains(small):
    vectors, index = small
    ids, _ = index.query(vectors[7], 1)
    assert ids.shape == (1, 1) and ids[0, 0] == 19
    assert len(index) == 300 and 19 in index and 6 not in index and "x" not in index
    assert (index.ids == np.arange(300) * 2 + 5).all()


def test_mark_deleted_hides_items(small):
    vectors, index = small
    index.mark_deleted([5, 7])
    index.mark_deleted(np.array([7]))  # again: ignored
    assert len(index) == 298 and 5 not in index
    assert not np.isin([5, 7], index.ids).any()
    ids, _ = index.query(vectors[:2], 10)
    assert not np.isin(ids, [5, 7]).any()
    assert index.params["count"] == 300 and index.params["live"] == 298
    with pytest.raises(KeyError, match="not in the index: 6"):
        index.mark_deleted([6])


def test_fewer_live_items_than_k_pads(small):
    vectors, index = small
    ids, scores = index.query(vectors[:2], 310)
    assert (ids[:, :300] >= 0).all() and (ids[:, 300:] == -1).all()
    assert np.isfinite(scores[:, :300]).all() and np.isnan(scores[:, 300:]).all()
    empty = VectorIndex(8)
    ids, scores = empty.query(unit(1, 8), 4)
    assert (ids == -1).all() and np.isnan(scores).all()


def test_growth_beyond_initial_capacity():
    vectors = clustered(2500, 16, clusters=8, local_dim=4)
    index = VectorIndex(16)
    for start in range(0, 2500, 700):
        index.add(np.arange(start, min(start + 700, 2500)), vectors[start:start + 700])
    assert len(index) == 2500 and index._index.get_max_elements() >= 2500
    ids, _ = index.query(vectors[[0, 1234, 2499]], 1)
    assert ids[:, 0].tolist() == [0, 1234, 2499]


@pytest.mark.parametrize(
    ("ids", "vectors", "message"),
    [
        ([1, 1], unit(2, 8), "repeated"),
        ([1], unit(2, 8), "1 ids for 2 vectors"),
        ([-1], unit(1, 8), "non-negative"),
        ([0.5], unit(1, 8), "integers"),
        ([1], unit(1, 9), r"shape \(n, 8\)"),
        ([1], unit(1, 8) * 3, "row 0 has norm 3"),
        ([1, 2], np.array([[np.nan] * 8, [1] + [0] * 7], dtype=np.float32), "row 0"),
        ([1], np.ones((1, 8), dtype=np.int64), "floating point"),
    ],
)
def test_bad_input_is_named(ids, vectors, message):
    index = VectorIndex(8)
    with pytest.raises(ValueError, match=message):
        index.add(np.asarray(ids), vectors)


def test_ids_are_never_reused():
    index = VectorIndex(8)
    index.add([3], unit(1, 8))
    index.mark_deleted([3])
    with pytest.raises(ValueError, match="never reused"):
        index.add([3], unit(1, 8, seed=1))


@pytest.mark.parametrize("kwargs", [{"dim": 0}, {"dim": 8, "M": 1}, {"dim": 8, "ef": 0},
                                    {"dim": 8, "ef_construction": True}])
def test_bad_parameters(kwargs):
    with pytest.raises(ValueError):
        VectorIndex(**kwargs)


def test_params_are_json_for_the_manifest(small):
    _, index = small
    params = json.loads(json.dumps(index.params))
    assert params["space"] == "ip" and params["dim"] == 32 and params["hnswlib"] == "0.8.0"
    assert {"M", "ef_construction", "ef", "count"} <= params.keys()


def test_concurrent_adds_and_queries_do_not_crash():
    vectors = clustered(3000, 16, clusters=8, local_dim=4)
    index = VectorIndex(16)
    index.add(np.arange(100), vectors[:100])
    errors: list[BaseException] = []

    def writer() -> None:
        try:
            for start in range(100, 3000, 100):
                index.add(np.arange(start, start + 100), vectors[start:start + 100])
        except BaseException as error:  # noqa: BLE001  (re-raised in the main thread)
            errors.append(error)

    thread = threading.Thread(target=writer)
    thread.start()
    while thread.is_alive():
        ids, _ = index.query(vectors[:5], 5)
        assert (ids[:, 0] == np.arange(5)).all()
    thread.join()
    assert not errors and len(index) == 3000


# ----------------------------------------------------------------------------------- recall
def test_default_parameters_reach_recall_098_on_clustered_embeddings(big):
    base, queries, index = big
    assert index.exact_recall(queries, sample=500, k=10) >= 0.98
    assert index.exact_recall(base, sample=500, k=10) >= 0.98
    assert index.exact_recall(queries, sample=100, vectors_by_id=base) == index.exact_recall(
        queries, sample=100)


def test_recall_measurement_detects_a_weak_index(big):
    base, queries, _ = big
    weak = VectorIndex(512, M=2, ef_construction=2, ef=1, num_threads=1)
    weak.add(np.arange(len(base)), base)
    recall = weak.exact_recall(queries, sample=500, k=10)
    assert recall < 0.9
    got, _ = weak.query(queries[:50], 10)
    hits = np.mean([len(np.intersect1d(g, e)) / 10 for g, e in
                    zip(got, exact_topk(queries[:50], base, np.arange(len(base)), 10),
                        strict=True)])
    assert abs(hits - weak.exact_recall(queries[:50], k=10)) < 1e-9


# ---------------------------------------------------------------------------------- filters
def test_selective_filter_is_exact(big, monkeypatch):
    base, queries, index = big
    allowed = np.arange(0, 8000, 7)[:index_module.BRUTE_FORCE_MAX]
    monkeypatch.setattr(VectorIndex, "_overfetch", None)  # must not be reached
    ids, scores = index.query(queries[:20], 10, allowed_ids=allowed, vectors_by_id=base)
    assert np.isin(ids, allowed).all()
    assert (ids == exact_topk(queries[:20], base[allowed], allowed, 10)).all()
    assert np.isfinite(scores).all()
    # Without the caller's vectors only tiny filters are brute-forced (from hnswlib's copy).
    tiny = allowed[: index_module.BRUTE_FORCE_MAX_STORED]
    ids, _ = index.query(queries[:20], 10, allowed_ids=tiny)
    assert (ids == exact_topk(queries[:20], base[tiny], tiny, 10)).all()


def test_vectors_by_id_is_checked(big):
    base, queries, index = big
    with pytest.raises(ValueError, match="vectors_by_id has 10 rows"):
        index.query(queries[:1], 10, allowed_ids=[3, 50], vectors_by_id=base[:10])
    with pytest.raises(ValueError, match=r"shape \(N, 512\)"):
        index.knn_graph(3, vectors_by_id=base[:, :10])


def test_broad_filter_overfetches_and_fills_k(big, monkeypatch):
    base, queries, index = big
    monkeypatch.setattr(index_module, "BRUTE_FORCE_MAX", 100)  # force the graph path
    allowed = np.flatnonzero(np.arange(8000) % 10 < 3)  # 30 % of the items
    ids, _ = index.query(queries[:50], 10, allowed_ids=allowed)
    assert (ids >= 0).all() and np.isin(ids, allowed).all()
    exact = exact_topk(queries[:50], base[allowed], allowed, 10)
    recall = np.mean([len(np.intersect1d(a, b)) for a, b in zip(ids, exact, strict=True)]) / 10
    assert recall >= 0.98


def test_filter_of_far_items_widens_until_k_found(big, monkeypatch):
    base, queries, index = big
    monkeypatch.setattr(index_module, "BRUTE_FORCE_MAX", 100)
    far = np.argsort(base @ queries[0])[:300]  # the 300 items least like the query
    rounds: list[int] = []
    knn = index._knn
    monkeypatch.setattr(index, "_knn", lambda v, k, ef: rounds.append(k) or knn(v, k, ef))
    ids, _ = index.query(queries[:1], 10, allowed_ids=far)
    assert len(rounds) > 1 and rounds == sorted(rounds)
    assert (ids >= 0).all() and np.isin(ids, far).all()
    exact = exact_topk(queries[:1], base[far], far, 10)
    assert len(np.intersect1d(ids, exact)) >= 9


def test_filter_ignores_unknown_and_deleted_ids_and_pads(small):
    vectors, index = small
    index.mark_deleted([7])
    ids, scores = index.query(vectors[:1], 5, allowed_ids=[5, 7, 6, 9, 10_000])
    assert ids[0].tolist() == [5, 9, -1, -1, -1]
    assert np.isnan(scores[0, 2:]).all()
    ids, _ = index.query(vectors[:1], 5, allowed_ids=[])
    assert (ids == -1).all()


# -------------------------------------------------------------------------------- kNN graph
def test_knn_graph_matches_brute_force_self_first(small):
    vectors, index = small
    index.mark_deleted([5])
    ids, sims = index.knn_graph(8)
    by_id = np.zeros((index.ids.max() + 1, 32), dtype=np.float32)
    by_id[index.ids] = vectors[(index.ids - 5) // 2]
    given_ids, given_sims = index.knn_graph(8, vectors_by_id=by_id)
    assert (given_ids == ids).all() and np.allclose(given_sims, sims, atol=1e-6)
    live = index.ids
    assert ids.shape == (299, 8) and (ids[:, 0] == live).all()
    np.testing.assert_allclose(sims[:, 0], 1.0)
    base = vectors[(live - 5) // 2]
    exact = exact_topk(base, base, live, 8)
    assert (np.sort(ids, axis=1) == np.sort(exact, axis=1)).all()
    np.testing.assert_allclose(sims, np.einsum("nd,nkd->nk", base, vectors[(ids - 5) // 2]),
                               atol=1e-5)


def test_knn_graph_keeps_self_first_among_duplicates():
    vector = unit(1, 8)
    index = VectorIndex(8)
    index.add(np.arange(4), np.repeat(vector, 4, axis=0))
    ids, _ = index.knn_graph(4)
    assert (ids[:, 0] == np.arange(4)).all()
    assert all(sorted(row) == [0, 1, 2, 3] for row in ids.tolist())


def test_knn_graph_pads_when_k_exceeds_items():
    index = VectorIndex(8)
    index.add(np.arange(3), unit(3, 8))
    ids, sims = index.knn_graph(5)
    assert (ids[:, 3:] == -1).all() and np.isnan(sims[:, 3:]).all() and (ids[:, :3] >= 0).all()


# ------------------------------------------------------------------------------------ files
def test_save_load_round_trip(small, tmp_path):
    vectors, index = small
    index.mark_deleted([9, 11])
    path = tmp_path / "index.hnsw"
    index.save(path)
    assert [p.name for p in tmp_path.iterdir()] == ["index.hnsw"]  # no temp file left
    params = json.loads(json.dumps(index.params))
    loaded = VectorIndex.load(path, params)
    assert loaded.params == index.params
    assert (loaded.ids == index.ids).all() and 9 not in loaded
    a, sa = index.query(vectors[:30], 5)
    b, sb = loaded.query(vectors[:30], 5)
    assert (a == b).all() and np.allclose(sa, sb)
    loaded.add([10_001], vectors[:1])  # a loaded index keeps growing
    assert len(loaded) == 299


def test_save_replaces_atomically(small, tmp_path):
    _, index = small
    path = tmp_path / "index.hnsw"
    path.write_bytes(b"old")
    index.save(path)
    assert VectorIndex.load(path, index.params).ids.tolist() == index.ids.tolist()


def _saved(small, tmp_path):
    _, index = small
    path = tmp_path / "index.hnsw"
    index.save(path)
    return path, index.params


@pytest.mark.parametrize("keep", [0.0, 0.05, 0.5, 0.97, -1])
def test_truncated_file_is_a_collection_error(small, tmp_path, keep):
    path, params = _saved(small, tmp_path)
    data = path.read_bytes()
    cut = len(data) - 1 if keep == -1 else int(len(data) * keep)
    path.write_bytes(data[:cut])
    with pytest.raises(CollectionError, match=r"index file .* (truncated|cannot be read)"):
        VectorIndex.load(path, params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"dim": 64}, "dim=32, M=16; the manifest's fields 'index.dim', 'index.M' say dim=64"),
        ({"M": 8}, "M=16; the manifest's fields 'index.dim', 'index.M' say dim=32, M=8"),
        ({"count": 301}, "holds 300 items, the manifest's field 'index.count' says 301"),
        ({"live": 12}, "holds 300 live items, the manifest's field 'index.live' says 12"),
        ({"space": "l2"}, "space 'l2' is not supported"),
        ({"dim": None}, "incomplete"),
    ],
)
def test_mismatching_manifest_is_a_collection_error(small, tmp_path, change, message):
    path, params = _saved(small, tmp_path)
    with pytest.raises(CollectionError, match=message):
        VectorIndex.load(path, {**params, **change})


def test_missing_params_key_and_missing_file(small, tmp_path):
    path, params = _saved(small, tmp_path)
    with pytest.raises(CollectionError, match="incomplete"):
        VectorIndex.load(path, {k: v for k, v in params.items() if k != "ef"})
    with pytest.raises(CollectionError, match="missing"):
        VectorIndex.load(tmp_path / "nope.hnsw", params)


def test_garbage_file_is_a_collection_error(small, tmp_path):
    path, params = _saved(small, tmp_path)
    path.write_bytes(np.random.default_rng(0).bytes(path.stat().st_size))
    with pytest.raises(CollectionError):
        VectorIndex.load(path, params)


def test_rows_hnswlib_cannot_fill_are_padded_not_an_error(small, monkeypatch):
    vectors, index = small
    real = index._index

    class Sparse:
        """hnswlib as on a graph where only 5 items are reachable: it refuses larger k."""

        def __getattr__(self, name):
            return getattr(real, name)

        def knn_query(self, data, k, num_threads=1):
            if k > 5:
                raise RuntimeError("Cannot return the results in a contiguous 2D array.")
            return real.knn_query(data, k=k, num_threads=num_threads)

    monkeypatch.setattr(index, "_index", Sparse())
    ids, scores = index.query(vectors[:3], 10)
    assert (ids[:, 5:] == -1).all() and np.isnan(scores[:, 5:]).all()
    assert (ids[:, :5] >= 0).all() and (ids[:, 0] == [5, 7, 9]).all()


def test_default_search_breadth_grows_with_the_index(small, tmp_path):
    _, index = small
    assert index.ef is None and index.params["ef"] is None
    assert index.search_ef == index_module.auto_ef(300) == 64
    assert index_module.auto_ef(100_000) == 128 and index_module.auto_ef(10**6) >= 500
    assert index_module.auto_ef(10**8) == 512
    path = tmp_path / "index.hnsw"
    index.save(path)
    assert VectorIndex.load(path, json.loads(json.dumps(index.params))).ef is None
    fixed = VectorIndex(32, ef=200)
    assert fixed.search_ef == 200 and fixed.params["ef"] == 200


def _records_end(data: bytes, start: int, count: int) -> int:
    """Reference walk of hnswlib's link-list records: uint32 size, then that many bytes."""
    pos = start
    for _ in range(count):
        pos += 4 + int.from_bytes(data[pos:pos + 4], "little")
    return pos


def test_a_written_index_is_checked_to_its_last_byte(tmp_path):
    """hnswlib ignores write errors, so save() walks the file; any cut or extra byte fails."""
    from mclip_explorer.collection._hnsw_file import HEADER_BYTES, check_complete

    vectors = clustered(2000, 32, clusters=6, local_dim=4)
    index = VectorIndex(32, M=4)  # small M: many items on upper levels, long link tails
    index.add(np.arange(2000), vectors)
    path = tmp_path / "index.hnsw"
    index.save(path)
    data = path.read_bytes()
    per_element = int(np.frombuffer(data[24:32], "<u8")[0])
    start = HEADER_BYTES + 2000 * per_element
    assert _records_end(data, start, 2000) == len(data) > start + 4 * 2000  # the premise
    check_complete(path, dim=32, m=4, count=2000)
    for cut in (start + 1, start + 4 * 37, (start + len(data)) // 2, len(data) - 4,
                len(data) - 1):
        path.write_bytes(data[:cut])
        with pytest.raises(CollectionError, match=r"incomplete|truncated"):
            check_complete(path, dim=32, m=4, count=2000)
    path.write_bytes(data + bytes(4))
    with pytest.raises(CollectionError, match="incomplete"):
        check_complete(path, dim=32, m=4, count=2000)
