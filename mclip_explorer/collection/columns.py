"""The items table's own columns and their roles: the one list of each.

Sources, loading, search results and the widget all derive their column lists from here, so a new
own column is added in one place.
"""

from __future__ import annotations

from collections.abc import Iterable

# Columns every items table has, in this order; user metadata columns follow.
COLUMNS = ("id", "kind", "path", "text", "lang", "title", "bytes", "width", "height", "sha256",
           "error", "deleted")
STRING_COLUMNS = ("kind", "path", "text", "lang", "title", "sha256", "error")  # str or None
COUNT_COLUMNS = ("bytes", "width", "height")  # nullable integers
FACET_COLUMNS = ("kind", "lang", "width", "height")  # worth colouring a map by, like metadata
EXPORTED_COLUMNS = ("id", "lang", "title")  # own columns an export hands to other tools
SOURCE_COLUMNS = ("title",)  # the only own column a source's metadata may also provide


def metadata_columns(columns: Iterable[str]) -> list[str]:
    """The user metadata columns among ``columns`` (everything that is not an own column)."""
    return [c for c in columns if c not in COLUMNS]
