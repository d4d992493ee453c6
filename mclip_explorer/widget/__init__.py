"""The widget layer: :func:`explore`, :class:`ExplorerWidget`, its views and wire codecs.

It sits on top of every other layer (collection, analysis, models) and nothing below imports it.
"""

from __future__ import annotations

from mclip_explorer.widget.api import explore
from mclip_explorer.widget.compare import CompareView, compare_view
from mclip_explorer.widget.explorer import ExplorerWidget

__all__ = ["CompareView", "ExplorerWidget", "compare_view", "explore"]
