"""Level of detail for big maps: a grid index over 2-D points, viewport samples, density grids.

Plain numpy over float32 coordinates (no widget code here), used by the explorer widget when the
map holds more points than a browser draws smoothly:

* :class:`MapIndex` sorts the points into a ``G x G`` grid once. A viewport query returns every
  point inside it when they fit the budget, else the budget's worth of points in a fixed
  *priority* order: one representative per cell of a coarse-to-fine quadtree first (so sparse
  regions and outliers always show), then more points per fine cell. The priorities are fixed
  at build time, so panning keeps the points already shown and only adds or drops others.
* :class:`GridCounts` is the counting pass alone (the first paint's density and the cells the
  index then reuses); :func:`sample_view` answers a viewport from it while the index is built.
* :meth:`MapIndex.density` sums the grid's counts over a viewport into at most ``max_bins``
  bins per axis: the zoomed-out overview drawn under the sample.
* :func:`in_box` and :func:`in_polygon` select over all points (box and lasso selection are
  computed here, not over the points the browser happens to draw).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

MAX_GRID = 1024  # cells per axis: a 1M-cell count grid (8 MB) serves any viewport
MIN_GRID = 8
SCAN_CHUNK = 1 << 18  # priority-ordered points checked per step when most points are in view
RANK_BITS = 44  # a point's rank: random bits over its index (at most 32 bits: ids are uint32)
RANK_MASK = np.uint64((1 << RANK_BITS) - 1)
KEY_MAX = (1 << 16) - 1  # priority keys above this (depth > 65,000 in one cell) tie


@dataclass(frozen=True)
class Density:
    """Point counts on a regular grid: ``counts[row, col]`` covers ``x0 + col * dx`` ... ."""

    counts: np.ndarray  # float32 (rows, cols), row 0 at y0
    x0: float
    y0: float
    dx: float
    dy: float


def grid_size(n: int) -> int:
    """Cells per axis for ``n`` points: a power of two with about 4 points per cell."""
    side = math.sqrt(max(n, 1) / 4)
    return int(min(MAX_GRID, max(MIN_GRID, 2 ** math.ceil(math.log2(max(side, 1))))))


class GridCounts:
    """Point counts on a ``G x G`` grid over 2-D points: one counting pass, no sorting.

    Args:
        xy: ``(n, 2)`` finite coordinates (fewer than ``2**32`` points: ids are uint32).
        grid: Cells per axis (a power of two; default from :func:`grid_size`).
    """

    def __init__(self, xy: np.ndarray, grid: int | None = None) -> None:
        xy = np.ascontiguousarray(xy, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"coordinates must have shape (n, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError("coordinates must be finite")
        n = len(xy)
        if n >= 2**32:
            raise ValueError(f"at most 2**32 - 1 points, got {n}")
        g = grid_size(n) if grid is None else int(grid)
        if g < 1 or g & (g - 1):
            raise ValueError(f"grid must be a power of two, got {g}")
        self.xy = xy
        self.n = n
        self.grid = g
        # Per column: numpy reduces a column ~40x faster than axis 0 of (n, 2).
        x, y = xy[:, 0], xy[:, 1]
        ends = [int(x.argmin()), int(x.argmax()), int(y.argmin()), int(y.argmax())] if n else []
        self.extremes = np.unique(np.asarray(ends, np.int64))
        """The points at the map's left, right, bottom and top edges."""
        lo = np.array([x[ends[0]], y[ends[2]]] if n else [0, 0], np.float64)
        hi = np.array([x[ends[1]], y[ends[3]]] if n else [1, 1], np.float64)
        self.lo = lo
        self._span = (float(lo[0]), float(hi[0]), float(lo[1]), float(hi[1]))  # of the points
        # A little margin so the maximum falls inside the last cell.
        self.cell_size = np.maximum(hi - lo, 1e-9) * (1 + 1e-6) / g
        self.cell = self._cells(xy)  # row-major cell of each point; the index sorts by it
        self.counts = np.bincount(self.cell, minlength=g * g).reshape(g, g)  # [row (y), col]

    def density(self, bounds: tuple[float, float, float, float] | None,
                max_bins: int = 256) -> Density:
        """Point counts over ``bounds``, summed from the grid into at most ``max_bins`` per axis.

        The bins are whole grid cells (or blocks of them), so the grid may reach a little past
        ``bounds``; zoomed in beyond the grid's resolution the cells show as blocks.
        """
        bounds = self.bounds() if bounds is None else bounds
        cols, rows = self._cell_range(bounds)
        block = self.counts[rows[0]:rows[1], cols[0]:cols[1]]
        step = max(1, math.ceil(max((*block.shape, 1)) / max_bins))
        h = -(-block.shape[0] // step) * step
        w = -(-block.shape[1] // step) * step
        padded = np.zeros((h, w), np.float32)
        padded[:block.shape[0], :block.shape[1]] = block
        summed = padded.reshape(h // step, step, w // step, step).sum(axis=(1, 3))
        size = self.cell_size * step
        return Density(summed.astype(np.float32), float(self.lo[0] + cols[0] * self.cell_size[0]),
                       float(self.lo[1] + rows[0] * self.cell_size[1]), float(size[0]),
                       float(size[1]))

    def covers_all(self, bounds: tuple[float, float, float, float] | None) -> bool:
        """Whether ``bounds`` (``None``: the whole map) hold every point."""
        if bounds is None:
            return True
        x0, x1, y0, y1 = _ordered(bounds)
        return x0 <= self._span[0] and x1 >= self._span[1] and y0 <= self._span[2] and (
            y1 >= self._span[3])

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, x1, y0, y1)`` of all points."""
        hi = self.lo + self.cell_size * self.grid
        return float(self.lo[0]), float(hi[0]), float(self.lo[1]), float(hi[1])

    def _cells(self, xy: np.ndarray) -> np.ndarray:
        # float32 in place: at 10M points float64 temporaries cost more than the counting.
        scaled = xy - self.lo.astype(np.float32)
        scaled *= (1 / self.cell_size).astype(np.float32)
        np.clip(scaled, 0, self.grid - 1, out=scaled)  # >= 0 up to rounding; max in last cell
        cells = scaled.astype(np.uint32)  # truncation == floor
        cell = cells[:, 1] * np.uint32(self.grid)
        cell += cells[:, 0]
        return cell

    def _cell_range(self, bounds: tuple[float, float, float, float]) -> tuple[
            tuple[int, int], tuple[int, int]]:
        """Half-open column and row ranges of the cells that ``bounds`` touches."""
        x0, x1, y0, y1 = _ordered(bounds)
        g = self.grid

        def span(a: float, b: float, axis: int) -> tuple[int, int]:
            # One cell of slack each side: points were binned in float32.
            lo = math.floor((a - self.lo[axis]) / self.cell_size[axis]) - 1
            hi = math.floor((b - self.lo[axis]) / self.cell_size[axis]) + 2
            return min(max(lo, 0), g), min(max(hi, 0), g)

        return span(x0, x1, 0), span(y0, y1, 1)


class MapIndex(GridCounts):
    """A grid index over 2-D points with a fixed, spatially stratified priority order.

    Each point gets a random *rank* (random high bits over its index, so no two tie). Points
    are sorted by cell, then rank; a cell's representative is its lowest-ranked point. Both
    orders come from sorting packed ``uint64`` values (``key << 44 | rank``) instead of
    arg-sorting keys: numpy sorts plain integers several times faster than it arg-sorts them,
    and everything else is one linear pass, so 10M points are indexed in under a second.

    Args:
        xy: ``(n, 2)`` finite coordinates.
        grid: Cells per axis (a power of two; default from :func:`grid_size`).
        seed: Seed of the random ranks (fixed: the same map gives the same samples).
        counts: The same points already counted (:class:`GridCounts` of ``xy``): its cells
            are reused instead of computed again (``xy`` and ``grid`` are then ignored).
        first: Points that come first in the priority order (the sample already drawn, so a
            view of the whole map gets the same points again: nothing to redraw).
    """

    def __init__(self, xy: np.ndarray, grid: int | None = None, seed: int = 0, *,
                 counts: GridCounts | None = None, first: np.ndarray | None = None) -> None:
        if counts is None:
            super().__init__(xy, grid)
        else:
            self.__dict__.update(vars(counts))
        n, g = self.n, self.grid
        bits = max(1, (n - 1).bit_length())  # of a point's index, the rank's low bits
        index_mask = np.uint64((1 << bits) - 1)
        packed = np.random.default_rng(seed).integers(0, 1 << (RANK_BITS - bits), n,
                                                      dtype=np.uint64)
        packed <<= np.uint64(bits)
        packed |= np.arange(n, dtype=np.uint64)  # = rank
        packed |= self.cell.astype(np.uint64) << np.uint64(RANK_BITS)
        head_values = packed[np.asarray([] if first is None else first, np.int64)]
        packed.sort()  # by cell, then by rank
        dtype = np.int32 if n < 2**31 else np.int64
        self.order = (packed & index_mask).astype(dtype)
        flat = self.counts.ravel()
        self.starts = np.concatenate([[0], np.cumsum(flat)]).astype(np.int64)
        leads = self.starts[:-1][flat > 0]  # sorted position of each occupied cell's first
        head = np.searchsorted(packed, head_values)  # sorted positions of the `first` points
        packed &= RANK_MASK  # the ranks, in cell order
        reps = np.full(g * g, np.iinfo(np.uint64).max, np.uint64)
        reps[flat > 0] = packed[leads]
        # Priority: a representative first appears at its quadtree level; the other points
        # follow, the shallowest in their cell first (level L + depth); ties by rank.
        key = np.arange(n, dtype=np.int64)
        key -= np.repeat(self.starts[:-1], flat)  # depth in its cell
        key += int(math.log2(g)) + 1
        np.minimum(key, KEY_MAX, out=key)
        key[leads] = _levels(reps.reshape(g, g))[flat > 0] + 1
        key[head] = 0
        packed |= key.astype(np.uint64) << np.uint64(RANK_BITS)
        del key
        packed.sort()
        self.by_priority = (packed & index_mask).astype(dtype)
        del packed
        self.priority = np.empty(n, dtype)
        self.priority[self.by_priority] = np.arange(n, dtype=dtype)
        del self.cell  # 40 MB at 10M points; queries use order and starts

    # ------------------------------------------------------------------------- queries
    def query(self, bounds: tuple[float, float, float, float] | None, budget: int,
              pinned: np.ndarray | None = None) -> tuple[np.ndarray, bool]:
        """Points to draw for a viewport.

        Args:
            bounds: ``(x0, x1, y0, y1)`` in map coordinates; ``None``: the whole map.
            budget: Most points to return (besides ``pinned``).
            pinned: Point indices always returned (query hits, highlights, the selection).

        Returns:
            ``(indices, complete)``: sorted point indices, and whether they are every point
            inside ``bounds``. A view of the whole map (``bounds`` None or around every point)
            also holds its extreme points (:attr:`GridCounts.extremes`): a view fitted to the
            drawn points shows all of it.
        """
        rows, complete = self.pick(bounds, budget)
        return _with_pinned(rows, pinned, self.extremes if self.covers_all(bounds) else None), (
            complete)

    def pick(self, bounds: tuple[float, float, float, float] | None, budget: int) -> tuple[
            np.ndarray, bool]:
        """:meth:`query` without the pinned and extreme points (indices not sorted)."""
        _check_budget(budget)
        bounds = self.bounds() if bounds is None else bounds
        cols, rows = self._cell_range(bounds)
        estimate = int(self.counts[rows[0]:rows[1], cols[0]:cols[1]].sum())
        if estimate <= max(4 * budget, 1 << 20):
            inside = self.inside(bounds)
            complete = len(inside) <= budget
            if not complete:
                best = np.argpartition(self.priority[inside], budget - 1)[:budget]
                inside = inside[best]
        else:  # most points are in view: walk the priority order instead of the grid
            inside, complete = self._scan(bounds, budget), False
        return inside, complete

    def inside(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Indices of every point inside ``bounds`` (edges included), from the grid."""
        cols, rows = self._cell_range(bounds)
        if cols[0] >= cols[1] or rows[0] >= rows[1]:
            return np.empty(0, self.order.dtype)
        g = self.grid
        parts = [self.order[self.starts[r * g + cols[0]]:self.starts[r * g + cols[1]]]
                 for r in range(rows[0], rows[1])]
        candidates = np.concatenate(parts) if parts else np.empty(0, self.order.dtype)
        return np.asarray(candidates[in_box(self.xy[candidates], bounds)])

    def _scan(self, bounds: tuple[float, float, float, float], budget: int) -> np.ndarray:
        found: list[np.ndarray] = []
        total = 0
        for start in range(0, self.n, SCAN_CHUNK):
            chunk = self.by_priority[start:start + SCAN_CHUNK]
            hit = chunk[in_box(self.xy[chunk], bounds)]
            found.append(hit[:budget - total])
            total += len(found[-1])
            if total >= budget:
                break
        return np.concatenate(found) if found else np.empty(0, self.order.dtype)


def _levels(reps: np.ndarray) -> np.ndarray:
    """Quadtree level at which each fine cell's representative first represents a cell.

    Level ``l`` has ``2**l`` cells per axis; a coarse cell's representative is the lowest rank
    among its fine cells' representatives (``reps``: ``(G, G)`` ranks, the maximum for empty
    cells). Min-pooling the grid level by level: a few passes over ``G * G`` values.
    """
    g = len(reps)
    top = int(math.log2(g))
    level = np.full(g * g, top, np.int64)
    pooled = reps
    for lev in range(top - 1, -1, -1):
        side, block = 1 << lev, g >> lev
        pooled = pooled.reshape(side, 2, side, 2).min(axis=(1, 3))
        wins = reps.reshape(side, block, side, block) == pooled[:, None, :, None]
        level[wins.reshape(-1)] = lev
    return level


def sample_view(counts: GridCounts, bounds: tuple[float, float, float, float] | None,
                budget: int, pinned: np.ndarray | None = None,
                seed: int = 0) -> tuple[np.ndarray, bool]:
    """A viewport's points without the full index (while it is built): exact membership.

    Every point inside ``bounds`` when they fit the budget; else the stratified sample of a
    random subset of ``8 * budget`` of them (sorting that few is cheap), so a lone outlier may
    be missing until the full index answers (the map's extreme points are always there).

    Returns:
        ``(indices, complete)`` as :meth:`MapIndex.query`.
    """
    rows, complete = stratified_sample(counts, bounds, budget, seed)
    return _with_pinned(rows, pinned, counts.extremes if counts.covers_all(bounds) else None), (
        complete)


def stratified_sample(counts: GridCounts, bounds: tuple[float, float, float, float] | None,
                      budget: int, seed: int = 0) -> tuple[np.ndarray, bool]:
    """:func:`sample_view` without the pinned and extreme points.

    Any ``bounds`` around every point give the same sample: the whole map's.
    """
    _check_budget(budget)
    inside = (np.arange(counts.n) if bounds is None or counts.covers_all(bounds)
              else np.flatnonzero(in_box(counts.xy, bounds)))
    complete = len(inside) <= budget
    if not complete:
        if len(inside) > 8 * budget:
            rng = np.random.default_rng(seed)
            inside = inside[np.unique(rng.integers(0, len(inside), 8 * budget))]
        sample = MapIndex(counts.xy[inside], seed=seed)
        rows, _ = sample.pick(None, budget)
        inside = inside[np.sort(rows)]
    return inside, complete


def _check_budget(budget: int) -> None:
    if budget < 1:
        raise ValueError(f"budget must be at least 1, got {budget}")


def _with_pinned(rows: np.ndarray, *pinned: np.ndarray | None) -> np.ndarray:
    more = [np.asarray(p, dtype=rows.dtype) for p in pinned if p is not None and len(p)]
    return np.unique(np.concatenate([rows, *more]) if more else rows)


def _ordered(bounds: tuple[float, float, float, float]) -> tuple[float, float, float, float]:
    x0, x1, y0, y1 = (float(v) for v in bounds)
    if not all(math.isfinite(v) for v in (x0, x1, y0, y1)):
        raise ValueError(f"bounds must be finite numbers, got {bounds}")
    return min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)


def in_box(xy: np.ndarray, bounds: tuple[float, float, float, float]) -> np.ndarray:
    """Mask of the points inside ``(x0, x1, y0, y1)``, edges included, in either order."""
    x0, x1, y0, y1 = _ordered(bounds)
    x, y = xy[:, 0], xy[:, 1]
    return (x >= x0) & (x <= x1) & (y >= y0) & (y <= y1)


def in_polygon(xy: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Mask of the points inside a polygon (even-odd rule; it closes itself).

    Args:
        xy: ``(n, 2)`` points.
        polygon: ``(m, 2)`` vertices; fewer than 3 select nothing.
    """
    poly = np.asarray(polygon, dtype=np.float64)
    if poly.ndim != 2 or poly.shape[1] != 2:
        raise ValueError(f"a polygon must have shape (m, 2), got {poly.shape}")
    if not np.isfinite(poly).all():
        raise ValueError("polygon vertices must be finite")
    out = np.zeros(len(xy), bool)
    if len(poly) < 3:
        return out
    lo, hi = poly.min(axis=0), poly.max(axis=0)
    near = np.flatnonzero(in_box(xy, (lo[0], hi[0], lo[1], hi[1])))
    px = xy[near, 0].astype(np.float64)
    py = xy[near, 1].astype(np.float64)
    hit = np.zeros(len(near), bool)
    for (xi, yi), (xj, yj) in zip(poly, np.roll(poly, 1, axis=0), strict=True):
        crosses = (yi > py) != (yj > py)
        if not crosses.any():
            continue
        with np.errstate(divide="ignore", invalid="ignore"):
            at = (xj - xi) * (py - yi) / (yj - yi) + xi
        hit ^= crosses & (px < at)
    out[near] = hit
    return out
