"""Sources a collection is built from: folders, globs, lists, frames (``local``) and, for scale,
sharded datasets read by the engines.
"""

from __future__ import annotations

from mclip_explorer.collection.sources.local import read_source, text_items, title_from_name

__all__ = ["read_source", "text_items", "title_from_name"]
