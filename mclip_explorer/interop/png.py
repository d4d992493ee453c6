"""A static picture of a map, drawn kernel-side with NumPy and Pillow (no browser, no network).

Used where no JavaScript runs: the image/png fallback of the widget in saved notebooks, and the
Embedding Atlas / HTML exports' previews. Points are splatted into a pixel grid in one vectorised
pass, so a million points cost about as much as a thousand.
"""

from __future__ import annotations

import io

import numpy as np

# Tableau 10 (plotly's default colour sequence, which the widget's map uses).
PALETTE = np.array([
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
], dtype=np.uint8)
BACKGROUND = (255, 255, 255)
MARGIN = 8


def render_map(coords: np.ndarray, codes: np.ndarray | None = None, *, width: int = 640,
               height: int = 420, point: int = 2) -> np.ndarray:
    """Draw points as ``point``-pixel squares; returns an ``(height, width, 3)`` uint8 image.

    Args:
        coords: ``(n, 2)`` positions; rows with NaN are skipped.
        codes: ``(n,)`` category codes (colour = ``PALETTE[code % 10]``), or None for one colour.
        width: Picture width in pixels.
        height: Picture height in pixels.
        point: Side of each point's square in pixels.
    """
    if width < 2 * MARGIN + 1 or height < 2 * MARGIN + 1:
        raise ValueError(f"picture too small: {width}x{height}")
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = BACKGROUND
    xy = np.asarray(coords, dtype=np.float64).reshape(-1, 2)
    keep = np.isfinite(xy).all(axis=1)
    if not keep.any():
        return image
    xy = xy[keep]
    colour = PALETTE[(np.zeros(len(xy), np.int64) if codes is None
                      else np.asarray(codes, np.int64)[keep]) % len(PALETTE)]
    low, high = xy.min(axis=0), xy.max(axis=0)
    span = np.where(high > low, high - low, 1.0)
    inner = np.array([width - 2 * MARGIN - point, height - 2 * MARGIN - point], np.float64)
    scale = float(np.min(inner / span))  # one scale for both axes: the map's shape is kept
    offset = MARGIN + (inner - span * scale) / 2
    px = ((xy - low) * scale + offset).astype(np.int64)
    col, row = px[:, 0], height - point - px[:, 1]  # y grows upwards on the map
    for dy in range(point):
        for dx in range(point):
            image[np.clip(row + dy, 0, height - 1), np.clip(col + dx, 0, width - 1)] = colour
    return image


def to_png(image: np.ndarray) -> bytes:
    """Encode an ``(h, w, 3)`` uint8 array as PNG bytes."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(image, mode="RGB").save(buffer, format="PNG", optimize=True)
    return buffer.getvalue()


def map_png(coords: np.ndarray, codes: np.ndarray | None = None, **kwargs: int) -> bytes:
    """:func:`render_map` encoded as PNG."""
    return to_png(render_map(coords, codes, **kwargs))
