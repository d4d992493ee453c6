"""Level of detail (mclip_explorer.widget.lod) against brute force over the same points."""

from __future__ import annotations

import numpy as np
import pytest

from mclip_explorer.widget.lod import (
    GridCounts,
    MapIndex,
    grid_size,
    in_box,
    in_polygon,
    sample_view,
    stratified_sample,
)


def clustered(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    centres = rng.uniform(-10, 10, (12, 2))
    xy = centres[rng.integers(0, 12, n)] + 0.5 * rng.standard_normal((n, 2))
    return xy.astype(np.float32)


def brute_box(xy: np.ndarray, x0: float, x1: float, y0: float, y1: float) -> np.ndarray:
    return np.array([i for i, (x, y) in enumerate(xy.tolist()) if x0 <= x <= x1 and y0 <= y <= y1],
                    dtype=np.int64)


@pytest.fixture(scope="module")
def points() -> np.ndarray:
    xy = clustered(20_000)
    xy[:5] = [[40, 40], [41, 40], [-40, 35], [-39, -38], [38, -41]]  # lone outliers
    return xy


@pytest.fixture(scope="module")
def index(points: np.ndarray) -> MapIndex:
    return MapIndex(points)


def test_a_viewport_that_fits_the_budget_gets_every_point_inside(
        points: np.ndarray, index: MapIndex) -> None:
    bounds = (-3.0, 1.5, 2.0, 6.0)
    expected = brute_box(points, *bounds)
    got, complete = index.query(bounds, budget=len(expected))
    assert complete
    np.testing.assert_array_equal(got, expected)
    got, complete = index.query(bounds, budget=len(expected) - 1)
    assert not complete and len(got) == len(expected) - 1
    assert set(got.tolist()) <= set(expected.tolist())


def test_the_sample_is_bounded_stratified_and_keeps_outliers(
        points: np.ndarray, index: MapIndex) -> None:
    got, complete = index.query(None, budget=500)
    assert not complete and len(got) == 500
    assert {0, 1, 2, 3, 4} <= set(got.tolist()), "lone points must survive the sampling"
    # Stratified: every occupied 8x8 block of the map is represented.
    lo, hi = points.min(axis=0), points.max(axis=0) + 1e-3
    cells = lambda ix: {tuple(c) for c in ((points[ix] - lo) / (hi - lo) * 8).astype(int)}  # noqa: E731
    assert cells(got) == cells(np.arange(len(points)))


def test_the_same_view_gives_the_same_points_and_panning_keeps_most(index: MapIndex) -> None:
    a, _ = index.query((-12, 8, -12, 8), budget=2000)
    b, _ = index.query((-12, 8, -12, 8), budget=2000)
    c, _ = index.query((-11, 9, -12, 8), budget=2000)
    np.testing.assert_array_equal(a, b)
    assert len(np.intersect1d(a, c)) > 0.8 * len(a)


def test_pinned_points_are_always_returned(index: MapIndex) -> None:
    pinned = np.array([7, 19_999, 12_345])
    got, _ = index.query((100, 101, 100, 101), budget=10, pinned=pinned)
    np.testing.assert_array_equal(got, np.sort(pinned))


def test_scan_path_for_huge_views_stays_inside_and_bounded() -> None:
    xy = clustered(300_000, seed=3)
    index = MapIndex(xy)
    bounds = (-20.0, 20.0, -20.0, 4.0)
    got, complete = index.query(bounds, budget=10)  # estimate >> 4 * budget: priority scan
    assert not complete and len(got) == 10
    assert in_box(xy[got], bounds).all()
    # Around every point: the whole map's sample, with its 4 extreme points.
    got, _ = index.query((-20.0, 20.0, -20.0, 20.0), budget=10)
    ends = {int(xy[:, 0].argmin()), int(xy[:, 0].argmax()), int(xy[:, 1].argmin()),
            int(xy[:, 1].argmax())}
    assert 10 <= len(got) <= 14 and ends <= set(got.tolist())


def test_density_counts_match_a_histogram(points: np.ndarray, index: MapIndex) -> None:
    d = index.density(None, max_bins=64)
    assert d.counts.shape[0] <= 64 and d.counts.shape[1] <= 64
    assert d.counts.sum() == len(points)
    xe = d.x0 + d.dx * np.arange(d.counts.shape[1] + 1)
    ye = d.y0 + d.dy * np.arange(d.counts.shape[0] + 1)
    hist, _, _ = np.histogram2d(points[:, 1], points[:, 0], bins=[ye, xe])
    # Points within float rounding of a bin edge may land on either side; the rest agree.
    assert np.abs(hist - d.counts).sum() <= 2
    zoomed = index.density((-3.0, 1.5, 2.0, 6.0))
    assert zoomed.counts.sum() >= len(brute_box(points, -3.0, 1.5, 2.0, 6.0))


def winding(px: float, py: float, poly: list[tuple[float, float]]) -> bool:
    """Independent reference: the winding number (not the even-odd rule under test)."""
    def left(a: tuple[float, float], b: tuple[float, float]) -> float:
        return (b[0] - a[0]) * (py - a[1]) - (px - a[0]) * (b[1] - a[1])

    wn = 0
    for a, b in zip(poly, poly[1:] + poly[:1], strict=True):
        if a[1] <= py < b[1] and left(a, b) > 0:
            wn += 1
        elif b[1] <= py < a[1] and left(a, b) < 0:
            wn -= 1
    return wn != 0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lasso_selection_matches_a_brute_force(seed: int) -> None:
    rng = np.random.default_rng(seed)
    xy = rng.uniform(-5, 5, (3000, 2)).astype(np.float32)
    # A random star-shaped (simple) polygon, like a hand-drawn lasso.
    angles = np.sort(rng.uniform(0, 2 * np.pi, 40))
    radii = rng.uniform(1.5, 4.5, 40)
    poly = np.stack([np.cos(angles) * radii, np.sin(angles) * radii], axis=1)
    poly += rng.uniform(-1, 1, 2)
    mask = in_polygon(xy, poly)
    expected = [winding(x, y, [tuple(p) for p in poly.tolist()]) for x, y in xy.tolist()]
    assert mask.tolist() == expected
    assert 0 < mask.sum() < len(xy)


def test_degenerate_and_bad_polygons() -> None:
    xy = np.zeros((3, 2), np.float32)
    assert not in_polygon(xy, np.array([[0, 0], [1, 1]])).any()
    with pytest.raises(ValueError, match="finite"):
        in_polygon(xy, np.array([[0, 0], [1, np.nan], [1, 0]]))
    with pytest.raises(ValueError, match="shape"):
        in_polygon(xy, np.zeros((4, 3)))


def test_box_in_either_drag_direction(points: np.ndarray) -> None:
    np.testing.assert_array_equal(np.flatnonzero(in_box(points, (1.5, -3, 6, 2))),
                                  brute_box(points, -3, 1.5, 2, 6))


def test_bad_input_is_refused() -> None:
    with pytest.raises(ValueError, match="finite"):
        MapIndex(np.array([[0, np.inf]], np.float32))
    with pytest.raises(ValueError, match="shape"):
        MapIndex(np.zeros((4, 3), np.float32))
    with pytest.raises(ValueError, match="power of two"):
        MapIndex(np.zeros((4, 2), np.float32), grid=12)
    with pytest.raises(ValueError, match="budget"):
        MapIndex(np.zeros((4, 2), np.float32)).query(None, 0)
    assert grid_size(10) == 8 and grid_size(10**9) == 1024


def test_the_first_view_without_the_full_index(points: np.ndarray, index: MapIndex) -> None:
    counts = GridCounts(points)  # one counting pass
    rows, complete = sample_view(counts, None, budget=200, pinned=np.array([3, 4]))
    density = counts.density(None)
    full = index.density(None)
    np.testing.assert_array_equal(density.counts, full.counts)  # every point counted
    assert (density.x0, density.y0, density.dx, density.dy) == (full.x0, full.y0, full.dx,
                                                                full.dy)
    # The budget, the pinned points and the map's 4 extreme points (a view fitted to the drawn
    # points is the whole map).
    ends = {int(points[:, 0].argmin()), int(points[:, 0].argmax()), int(points[:, 1].argmin()),
            int(points[:, 1].argmax())}
    assert not complete and 200 <= len(rows) <= 206 and {3, 4} | ends <= set(rows.tolist())
    assert len(np.unique(rows)) == len(rows) and rows.max() < len(points)
    # Spread over the map: every 16x16 block holding at least 1 % of the points has a sample.
    lo, hi = points.min(axis=0), points.max(axis=0) + 1e-3
    block = [tuple(c) for c in ((points - lo) / (hi - lo) * 16).astype(int).tolist()]
    counts: dict[tuple[int, ...], int] = {}
    for b in block:
        counts[b] = counts.get(b, 0) + 1
    busy = {b for b, c in counts.items() if c >= len(points) // 100}
    assert len(busy) >= 8 and busy <= {block[i] for i in rows.tolist()}
    small, complete = sample_view(GridCounts(points[:100]), None, budget=200)
    assert complete and small.tolist() == list(range(100))


def test_the_priority_order_is_a_quadtree_of_representatives() -> None:
    """At every level of the quadtree, the first points of the priority order hold exactly one
    point per occupied cell: cells counted here from integer cell centres, independently."""
    rng = np.random.default_rng(4)
    g = 64
    centres = rng.integers(0, g, (40, 2))
    cells = np.clip(centres[rng.integers(0, 40, 6000)] + rng.integers(-3, 4, (6000, 2)), 0, g - 1)
    xy = np.concatenate([cells + 0.5, [[0, 0], [g, g]]]).astype(np.float32)  # corners fix lo/hi
    cells = np.concatenate([cells, [[0, 0], [g - 1, g - 1]]])
    index = MapIndex(xy, grid=g, seed=3)
    assert sorted(index.by_priority.tolist()) == list(range(len(xy)))
    np.testing.assert_array_equal(index.priority[index.by_priority], np.arange(len(xy)))
    for level in range(7):
        coarse = [tuple(c) for c in (cells >> (6 - level)).tolist()]
        occupied = set(coarse)
        first = index.by_priority[:len(occupied)]
        assert {coarse[i] for i in first.tolist()} == occupied, f"level {level}"
        got, _ = index.query(None, budget=len(occupied))  # the same set through a query
        assert {coarse[i] for i in got.tolist()} == occupied
    # Within a fine cell the priority order follows the cell's own (random) order.
    fine = cells[:, 1] * g + cells[:, 0]
    for cell in np.unique(fine)[:50]:
        in_cell = index.order[index.starts[cell]:index.starts[cell + 1]]
        assert sorted(in_cell.tolist()) == np.flatnonzero(fine == cell).tolist()
        ranked = [i for i in index.by_priority.tolist() if fine[i] == cell]
        assert ranked == in_cell.tolist()


def test_an_index_from_counted_cells_equals_one_from_points(points: np.ndarray,
                                                            index: MapIndex) -> None:
    counts = GridCounts(points)
    again = MapIndex(points, counts=counts)
    for name in ("order", "starts", "by_priority", "priority", "counts"):
        np.testing.assert_array_equal(getattr(again, name), getattr(index, name))
    assert hasattr(counts, "cell")  # the counts stay usable while the index is built


def test_a_viewport_sample_without_the_index(points: np.ndarray) -> None:
    counts = GridCounts(points)
    bounds = (-3.0, 1.5, 2.0, 6.0)
    expected = brute_box(points, *bounds)
    got, complete = sample_view(counts, bounds, budget=len(expected))
    assert complete
    np.testing.assert_array_equal(got, expected)
    got, complete = sample_view(counts, bounds, budget=40, pinned=np.array([0, 1]))
    assert not complete and len(got) == 42 and {0, 1} <= set(got.tolist())
    assert set(got.tolist()) - {0, 1} <= set(expected.tolist())
    wide = (-15.0, 15.0, -15.0, 15.0)  # more than 8 x the budget inside: a random subset
    got, complete = sample_view(counts, wide, budget=100)
    assert not complete and len(got) == 100 and in_box(points[got], wide).all()
    with pytest.raises(ValueError, match="budget"):
        sample_view(counts, None, 0)


def test_the_points_drawn_first_come_back_for_the_whole_map(points: np.ndarray) -> None:
    """An index told which sample is drawn already answers any view of the whole map with it
    (nothing to redraw after the first pan)."""
    counts = GridCounts(points)
    head, _ = stratified_sample(counts, None, budget=300)  # what the first paint drew
    assert len(head) == 300
    index = MapIndex(points, counts=counts, first=head)
    again, _ = index.query(None, budget=len(head))
    np.testing.assert_array_equal(again, np.union1d(head, counts.extremes))
    around, _ = index.query((-60.0, 60.0, -60.0, 60.0), budget=len(head))
    np.testing.assert_array_equal(around, again)
    np.testing.assert_array_equal(np.sort(index.by_priority[:len(head)]), np.sort(head))
    assert sorted(index.by_priority.tolist()) == list(range(len(points)))
    bounds = (-3.0, 1.5, 2.0, 6.0)  # other views: as without a head, inside and bounded
    got, complete = index.query(bounds, budget=20)
    assert not complete and len(got) == 20 and in_box(points[got], bounds).all()
