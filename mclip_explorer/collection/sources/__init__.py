"""Sources a collection is built from.

Folders, globs, lists and frames live in ``local``; sharded datasets for scale sit beside it.
"""

from __future__ import annotations

from mclip_explorer.collection.sources.local import read_source, text_items, title_from_name

__all__ = ["read_source", "text_items", "title_from_name"]
