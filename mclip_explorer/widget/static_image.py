"""The widget's static picture: a PNG of its map added to its display bundle.

A notebook saved and exported (``jupyter nbconvert --to html``) without a running kernel cannot
draw the live widget; when no widget state is stored, nbconvert falls back to the next output
type, so an ``image/png`` in the same bundle shows the map offline (drawn by
:mod:`mclip_explorer.interop.png`, no browser and no network involved).
"""

from __future__ import annotations

import base64
import logging
from typing import Any

import numpy as np

from mclip_explorer.interop.png import map_png
from mclip_explorer.widget.codecs import encode_column

PNG = "image/png"
MAX_PICTURE_POINTS = 250_000  # a 640 x 420 picture: ~1 point per pixel already
_log = logging.getLogger(__name__)


def with_static_map(bundle: Any, widget: Any) -> Any:
    """Add ``image/png`` of ``widget``'s map to a ``_repr_mimebundle_`` result (dict or pair)."""
    if bundle is None:
        return None
    data, metadata = bundle if isinstance(bundle, tuple) else (bundle, None)
    try:
        png = map_picture(widget)
    except Exception:  # noqa: BLE001 - a missing picture must never stop the live widget
        _log.exception("could not draw the static map")
        return bundle
    data = {**data, PNG: base64.b64encode(png).decode("ascii")}
    return data if metadata is None else (data, metadata)


def map_picture(widget: Any) -> bytes:
    """PNG of the points the widget shows, coloured by its current ``color_by`` column.

    Above ``MAX_PICTURE_POINTS`` an even stride of them is drawn: a picture a few hundred pixels
    wide looks the same, and a 10M-point map is displayed seconds sooner.
    """
    ids = np.asarray(widget._point_ids)
    if len(ids) > MAX_PICTURE_POINTS:
        ids = ids[::-(-len(ids) // MAX_PICTURE_POINTS)]
    codes = getattr(widget, "_colours", (np.empty(0),))[0]  # the widget's own, per item
    if len(codes) != len(widget._items):
        values, _ = widget._colour_source(widget.color_by)
        codes, _ = encode_column(values)
    return map_png(np.asarray(widget._map_coords)[ids], np.asarray(codes)[ids])
