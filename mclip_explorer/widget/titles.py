"""What the gallery and the hover card call an item.

An item's caption, text or WebDataset key when it has one, else its file name. The ``title``
column derived from a file name (``emperor_penguin_01.png`` -> ``emperor penguin``) reads well in
tables but collapses camera names (``IMG_0001.jpg``, ``IMG_0002.jpg`` -> ``IMG``), so it is used
only when a user supplied it. The front end shortens long titles in the middle and shows the
whole text on hover, always as text, never as HTML.
"""

from __future__ import annotations

from pathlib import PurePath
from typing import Any

from mclip_explorer.collection.sources import title_from_name

# In this order: what a dataset says about the item beats what its file is called.
CAPTION_COLUMNS = ("caption", "text", "key", "__key__")


def item_title(row: Any, item_id: int) -> str:
    """The display title of one item.

    Args:
        row: The item's row of ``collection.items`` (a mapping with ``.get``).
        item_id: The item's id, for items that have nothing else to show.

    Returns:
        The caption, text or key; else a title the user gave; else the file name; else
        ``"item <id>"``.
    """
    for column in CAPTION_COLUMNS:
        value = _text(row.get(column))
        if value:
            return value
    title, path = _text(row.get("title")), _text(row.get("path"))
    if path:
        if title and title != title_from_name(path):
            return title
        return PurePath(path).name
    return title or f"item {item_id}"


def _text(value: Any) -> str:
    return value.strip() if isinstance(value, str) else ""
