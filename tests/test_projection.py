"""The map: PCA preview and fallback, UMAP on the hnswlib kNN graph, placement of new points."""

from __future__ import annotations

import json

import numpy as np
import pytest

from mclip_explorer.collection import projection
from mclip_explorer.collection.index import VectorIndex
from mclip_explorer.collection.projection import PCA_MAX, fit_map, map_scale, pca_preview, place

N_UMAP = PCA_MAX + 40  # just above the PCA threshold: the smallest map UMAP draws


def blobs(n: int, dim: int = 64, clusters: int = 6, seed: int = 0) -> tuple[np.ndarray,
                                                                            np.ndarray]:
    """Well-separated unit-vector clusters with their labels."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(clusters, dim))
    labels = np.arange(n) % clusters
    x = (centers[labels] + 0.35 * rng.normal(size=(n, dim))).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True), labels


@pytest.fixture(scope="session")
def umap_map():
    """One UMAP fit on the hnswlib graph of N_UMAP items with sparse ids (pays numba's compile)."""
    x, labels = blobs(N_UMAP + 60)
    x, held_x, labels, held_labels = x[:N_UMAP], x[N_UMAP:], labels[:N_UMAP], labels[N_UMAP:]
    ids = np.arange(N_UMAP, dtype=np.int64) * 3
    index = VectorIndex(x.shape[1])
    index.add(ids, x)
    knn = index.knn_graph(15)
    coords, params = fit_map(x, knn=knn, ids=ids, progress=False)
    return x, ids, labels, index, knn, coords, params, held_x, held_labels


# ------------------------------------------------------------------------------------- PCA
def test_pca_preview_finds_the_main_axis_and_is_deterministic(monkeypatch):
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 16)) * 0.05
    x[:, 3] += np.where(np.arange(400) < 200, -1.0, 1.0)  # two groups apart along one axis
    coords = pca_preview(x.astype(np.float32))
    assert coords.shape == (400, 2) and coords.dtype == np.float32
    assert coords[:200, 0].max() < coords[200:, 0].min() or \
        coords[:200, 0].min() > coords[200:, 0].max()
    monkeypatch.setattr(projection, "_PCA_CHUNK", 37)  # the chunked path gives the same map
    np.testing.assert_allclose(pca_preview(x.astype(np.float32)), coords, atol=1e-4)
    np.testing.assert_array_equal(pca_preview(x.astype(np.float32)[::-1])[::-1],
                                  pca_preview(x.astype(np.float32)))


def test_auto_uses_pca_below_the_threshold():
    x, _ = blobs(PCA_MAX - 1)
    coords, params = fit_map(x, progress=False)
    assert params["method"] == "pca" and params["n"] == PCA_MAX - 1
    np.testing.assert_array_equal(coords, pca_preview(x))
    assert params["scale"] > 0
    json.dumps(params)


def test_tiny_and_empty_inputs():
    coords, params = fit_map(np.ones((1, 4), dtype=np.float32), method="umap", progress=False)
    assert coords.shape == (1, 2) and params["method"] == "pca"
    assert pca_preview(np.empty((0, 4), dtype=np.float32)).shape == (0, 2)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"method": "tsne"}, "method must be"),
        ({"method": "umap", "n_neighbors": 1}, "n_neighbors must be"),
        ({"method": "umap", "knn": (np.zeros((3, 15), int), np.zeros((3, 15)))}, r"\(50, k\)"),
        ({"method": "umap", "n_neighbors": 15,
          "knn": (np.zeros((50, 5), int), np.zeros((50, 5)))}, "at least"),
    ],
)
def test_bad_arguments_are_named(kwargs, message):
    x, _ = blobs(50)
    with pytest.raises(ValueError, match=message):
        fit_map(x, progress=False, **kwargs)


def test_non_finite_rows_are_named():
    x, _ = blobs(20)
    x[7, 3] = np.nan
    with pytest.raises(ValueError, match="row 7"):
        fit_map(x, progress=False)


def test_knn_with_padding_or_without_self_first_is_rejected():
    x, _ = blobs(30)
    index = VectorIndex(x.shape[1])
    index.add(np.arange(30), x)
    ids, sims = index.knn_graph(5)
    padded = ids.copy()
    padded[4, 2] = -1
    with pytest.raises(ValueError, match="knn row 4 has padding"):
        projection._knn_to_umap(padded, sims, None, 30, 5)
    with pytest.raises(ValueError, match="start with the item itself"):
        projection._knn_to_umap(ids[:, ::-1], sims[:, ::-1], None, 30, 5)


# ------------------------------------------------------------------------------------ UMAP
def test_umap_above_the_threshold_uses_the_given_graph(umap_map):
    _, _, labels, _, _, coords, params, _, _ = umap_map
    assert params["method"] == "umap" and params["knn"] == "hnswlib"
    assert params["n"] == N_UMAP and params["metric"] == "cosine"
    assert coords.shape == (N_UMAP, 2) and coords.dtype == np.float32
    assert np.isfinite(coords).all()
    # The map keeps the clusters: an item's nearest map neighbours share its label.
    near = np.argsort(((coords[:, None] - coords[None]) ** 2).sum(-1), axis=1)[:, 1:11]
    assert (labels[near] == labels[:, None]).mean() > 0.95
    json.dumps(params)


def test_umap_is_reproducible_and_makes_no_second_knn_pass(umap_map, monkeypatch):
    import umap.umap_

    x, ids, _, _, knn, coords, _, _, _ = umap_map

    def forbidden(*args, **kwargs):
        raise AssertionError("UMAP ran its own nearest-neighbour search")

    monkeypatch.setattr(umap.umap_, "nearest_neighbors", forbidden)
    again, _ = fit_map(x, knn=knn, ids=ids, progress=False)
    np.testing.assert_array_equal(again, coords)
    other, _ = fit_map(x, knn=knn, ids=ids, random_state=1, progress=False)
    assert not np.allclose(other, coords)


def test_umap_without_a_graph_builds_the_same_one_itself(umap_map):
    x, _, _, _, _, _, _, _, _ = umap_map
    own, params = fit_map(x, progress=False)
    # Added on one thread, as fit_map's own graph is: a multi-threaded graph depends on timing.
    index = VectorIndex(x.shape[1], num_threads=1)
    index.add(np.arange(len(x)), x)
    given, _ = fit_map(x, knn=index.knn_graph(15), progress=False)
    np.testing.assert_array_equal(own, given)
    assert params["method"] == "umap"


def test_first_fit_shows_the_compile_stage(umap_map, capsys, monkeypatch):
    x, ids, _, _, knn, _, _, _, _ = umap_map
    monkeypatch.setattr(projection, "_umap_fitted_in_process", False)
    _, params = fit_map(x, knn=knn, ids=ids, progress=True)
    assert "numba compiles" in capsys.readouterr().err and params["cold_compile"]
    _, params = fit_map(x, knn=knn, ids=ids, progress=True)
    assert "numba" not in capsys.readouterr().err and not params["cold_compile"]


# ----------------------------------------------------------------------------------- place
def test_a_point_equal_to_an_item_lands_on_it(umap_map):
    x, ids, _, index, _, coords, params, _, _ = umap_map
    by_id = np.full((ids.max() + 1, 2), np.nan, dtype=np.float32)
    by_id[ids] = coords
    nn_ids, nn_sims = index.query(x[[0, 100, 333]], 10)
    xy, stretch = place(nn_ids, nn_sims, by_id, scale=params["scale"])
    np.testing.assert_allclose(xy, coords[[0, 100, 333]], atol=1e-4)
    assert xy.dtype == np.float32 and stretch.dtype == np.float32
    assert np.isfinite(stretch).all() and (stretch > 0).all()


def test_new_points_land_in_their_cluster_and_ambiguous_ones_stretch(umap_map):
    x, ids, labels, index, _, coords, params, held_x, held_labels = umap_map
    by_id = np.full((ids.max() + 1, 2), np.nan, dtype=np.float32)
    by_id[ids] = coords
    xy, stretch = place(*index.query(held_x, 10), by_id, scale=params["scale"])
    nearest = np.argmin(((xy[:, None] - coords[None]) ** 2).sum(-1), axis=1)
    assert (labels[nearest] == held_labels).mean() > 0.95
    # Halfway between two clusters the true neighbours sit in two places on the map.
    a, b = x[labels == 0][:20], x[labels == 1][:20]
    mid = (a + b) / np.linalg.norm(a + b, axis=1, keepdims=True)
    _, torn = place(*index.query(mid, 10), by_id, scale=params["scale"])
    assert np.median(torn) > 3 * np.median(stretch)


def test_place_stretch_grows_with_scatter_and_ignores_padding():
    coords = np.array([[0, 0], [0.1, 0], [0, 0.1], [10, 0], [0, 10], [np.nan, np.nan]],
                      dtype=np.float32)
    sims = np.array([[0.9, 0.9, 0.9]], dtype=np.float32)
    _, tight = place(np.array([[0, 1, 2]]), sims, coords, scale=1.0)
    _, loose = place(np.array([[0, 3, 4]]), sims, coords, scale=1.0)
    assert loose[0] > 10 * tight[0]
    xy, _ = place(np.array([[0, 3, 4]]), sims, coords, scale=1.0)
    np.testing.assert_allclose(xy[0], [10 / 3, 10 / 3], atol=1e-5)  # equal sims: the mean
    padded_xy, padded_stretch = place(np.array([[0, 1, 2, -1, 5, 3]]),
                                      np.array([[0.9, 0.9, 0.9, np.nan, 0.99, np.nan]]),
                                      coords, scale=1.0)
    np.testing.assert_allclose(padded_xy, place(np.array([[0, 1, 2]]), sims, coords,
                                                scale=1.0)[0])
    np.testing.assert_allclose(padded_stretch, tight)
    none_xy, none_stretch = place(np.array([[-1, 5]]), np.array([[np.nan, 0.5]]), coords,
                                  scale=1.0)
    assert np.isnan(none_xy).all() and np.isnan(none_stretch).all()


def test_place_weights_closer_neighbours_more():
    coords = np.array([[0, 0], [1, 0]], dtype=np.float32)
    xy, _ = place(np.array([[0, 1]]), np.array([[0.9, 0.5]]), coords, scale=1.0)
    assert 0 < xy[0, 0] < 0.5 and xy[0, 1] == 0
    # (1 - 0.9) ** -2 = 100 against (1 - 0.5) ** -2 = 4.
    np.testing.assert_allclose(xy[0, 0], 4 / 104, rtol=1e-5)


def test_place_bad_input():
    coords = np.zeros((3, 2), dtype=np.float32)
    with pytest.raises(ValueError, match="no map position"):
        place(np.array([[5]]), np.array([[0.5]]), coords, scale=1.0)
    with pytest.raises(ValueError, match="two \\(n, k\\) arrays"):
        place(np.array([[1, 2]]), np.array([[0.5]]), coords)
    with pytest.raises(ValueError, match="coords_by_id"):
        place(np.array([[1]]), np.array([[0.5]]), np.zeros((3, 3)))


def test_map_scale_on_a_grid_and_default_scale():
    grid = np.stack(np.meshgrid(np.arange(60), np.arange(60)), -1).reshape(-1, 2)
    grid = grid.astype(np.float32)
    assert map_scale(grid, k=4) == pytest.approx(1.0)
    _, with_default = place(np.array([[0, 1, 60, 61]]), np.full((1, 4), 0.8), grid)
    _, explicit = place(np.array([[0, 1, 60, 61]]), np.full((1, 4), 0.8), grid,
                        scale=map_scale(grid, k=4))
    np.testing.assert_allclose(with_default, explicit)
    assert np.isnan(map_scale(np.full((3, 2), np.nan)))
