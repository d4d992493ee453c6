"""Level of detail for big maps: a grid index over 2-D points, viewport samples, density grids.

Plain numpy over float32 coordinates (no widget code here), used by the explorer widget when the
map holds more points than a browser draws smoothly:

* :class:`MapIndex` sorts the points into a ``G x G`` grid once. A viewport query returns every
  point inside it when they fit the budget, else the budget's worth of points in a fixed
  *priority* order: one representative per cell of a coarse-to-fine quadtree first (so sparse
  regions and outliers always show), then more points per fine cell. The priorities are fixed
  at build time, so panning keeps the points already shown and only adds or drops others.
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
        xy: ``(n, 2)`` finite coordinates.
        grid: Cells per axis (a power of two; default from :func:`grid_size`).
    """

    def __init__(self, xy: np.ndarray, grid: int | None = None) -> None:
        xy = np.ascontiguousarray(xy, dtype=np.float32)
        if xy.ndim != 2 or xy.shape[1] != 2:
            raise ValueError(f"coordinates must have shape (n, 2), got {xy.shape}")
        if not np.isfinite(xy).all():
            raise ValueError("coordinates must be finite")
        n = len(xy)
        g = grid_size(n) if grid is None else int(grid)
        if g < 1 or g & (g - 1):
            raise ValueError(f"grid must be a power of two, got {g}")
        self.xy = xy
        self.n = n
        self.grid = g
        lo = xy.min(axis=0) if n else np.zeros(2, np.float32)
        hi = xy.max(axis=0) if n else np.ones(2, np.float32)
        self.lo = lo.astype(np.float64)
        # A little margin so the maximum falls inside the last cell.
        self.cell_size = np.maximum((hi - lo).astype(np.float64), 1e-9) * (1 + 1e-6) / g
        self._cx, self._cy = self._cells(xy)
        self._cell = self._cy * g + self._cx
        self.counts = np.bincount(self._cell, minlength=g * g).reshape(g, g)  # [row (y), col]

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

    def bounds(self) -> tuple[float, float, float, float]:
        """``(x0, x1, y0, y1)`` of all points."""
        hi = self.lo + self.cell_size * self.grid
        return float(self.lo[0]), float(hi[0]), float(self.lo[1]), float(hi[1])

    def _cells(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # float32 in place: at 10M points float64 temporaries cost more than the sorts.
        scaled = xy - self.lo.astype(np.float32)
        scaled *= (1 / self.cell_size).astype(np.float32)
        cells = scaled.astype(np.int32)  # truncation == floor: scaled >= 0 up to rounding
        np.clip(cells, 0, self.grid - 1, out=cells)
        return cells[:, 0].astype(np.int64), cells[:, 1].astype(np.int64)

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

    Args:
        xy: ``(n, 2)`` finite coordinates.
        grid: Cells per axis (a power of two; default from :func:`grid_size`).
        seed: Seed of the random tie-break inside each cell (fixed: the same map gives the
            same samples).
    """

    def __init__(self, xy: np.ndarray, grid: int | None = None, seed: int = 0) -> None:
        super().__init__(xy, grid)
        n, cell, cx, cy = self.n, self._cell, self._cx, self._cy
        rank = np.random.default_rng(seed).permutation(n)
        # By cell, then at random within a cell (one int64 key: faster than lexsort).
        order = np.argsort(cell * max(n, 1) + rank)
        self.starts = np.concatenate([[0], np.cumsum(self.counts.ravel())]).astype(np.int64)
        self.order = order.astype(np.int32 if n < 2**31 else np.int64)
        depth = np.empty(n, np.int64)
        depth[order] = np.arange(n) - self.starts[cell[order]]
        key = self._levels(cx, cy, rank, depth == 0) + depth  # reps: level, others: L + depth
        self.by_priority = np.argsort(key * max(n, 1) + rank).astype(self.order.dtype)
        self.priority = np.empty(n, self.order.dtype)
        self.priority[self.by_priority] = np.arange(n, dtype=self.order.dtype)
        del self._cx, self._cy, self._cell  # 240 MB at 10M points

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
            inside ``bounds``.
        """
        if budget < 1:
            raise ValueError(f"budget must be at least 1, got {budget}")
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
        if pinned is not None and len(pinned):
            inside = np.concatenate([inside, np.asarray(pinned, dtype=inside.dtype)])
        return np.unique(inside), complete

    def inside(self, bounds: tuple[float, float, float, float]) -> np.ndarray:
        """Indices of every point inside ``bounds`` (edges included), from the grid."""
        cols, rows = self._cell_range(bounds)
        if cols[0] >= cols[1] or rows[0] >= rows[1]:
            return np.empty(0, self.order.dtype)
        g = self.grid
        parts = [self.order[self.starts[r * g + cols[0]]:self.starts[r * g + cols[1]]]
                 for r in range(rows[0], rows[1])]
        candidates = np.concatenate(parts) if parts else np.empty(0, self.order.dtype)
        return candidates[in_box(self.xy[candidates], bounds)]

    def _levels(self, cx: np.ndarray, cy: np.ndarray, rank: np.ndarray,
                rep: np.ndarray) -> np.ndarray:
        """Quadtree level at which each fine cell's representative first represents a cell.

        Level ``l`` has ``2**l`` cells per axis; the representative of a cell is its point of
        lowest random rank. Returns one value per point (only representatives' values count).
        """
        top = int(math.log2(self.grid))
        level = np.full(len(rank), top, np.int64)
        reps = np.flatnonzero(rep)
        for lev in range(top - 1, -1, -1):
            shift = top - lev
            coarse = (cy[reps] >> shift) * (1 << lev) + (cx[reps] >> shift)
            lowest = np.full(1 << (2 * lev), np.iinfo(np.int64).max)
            np.minimum.at(lowest, coarse, rank[reps])
            level[reps[rank[reps] == lowest[coarse]]] = lev
        return level

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


def overview(xy: np.ndarray, budget: int, pinned: np.ndarray | None = None,
             seed: int = 0) -> tuple[np.ndarray, bool, Density]:
    """A first view without the full index: every point's density, and a sample.

    The density comes from one counting pass over all points (the same grid as
    ``MapIndex(xy)``); the sample is the stratified sample of a random subset of ``8 * budget``
    points (sorting that is cheap), so lone outliers may only appear once the full index
    answers the first viewport request.

    Returns:
        ``(indices, complete, density)`` as :meth:`MapIndex.query` and ``density(None)``.
    """
    counts = GridCounts(xy)
    if counts.n <= 8 * budget:
        index = MapIndex(counts.xy, counts.grid, seed)
        rows, complete = index.query(None, budget, pinned)
        return rows, complete, counts.density(None)
    subset = np.unique(np.random.default_rng(seed).integers(0, counts.n, 8 * budget))
    rows, _ = MapIndex(counts.xy[subset], seed=seed).query(None, budget)
    rows = subset[rows]
    if pinned is not None and len(pinned):
        rows = np.unique(np.concatenate([rows, np.asarray(pinned, dtype=rows.dtype)]))
    return rows, False, counts.density(None)


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
