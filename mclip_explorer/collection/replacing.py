"""Whether a build may write over the collection already in its ``out`` folder.

Rebuilding from the same source resumes (only new or changed files are encoded); a build from
another source would silently replace the collection, so it is refused unless asked for.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from mclip_explorer.collection import store
from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    from mclip_explorer.collection.sources.local import SourceItems


def check_replace(folder: Path, items: SourceItems, *, overwrite: bool) -> None:
    """Refuse to build ``items`` into ``folder`` when it holds a collection of another source.

    Two sources are the same when they share at least one image file, so a folder that grew or
    lost files still resumes. Sources without file paths (bytes, PIL images) are not compared,
    and a damaged collection is left to the build, which replaces it as before.

    Raises:
        CollectionError: ``folder`` holds a collection of none of these files and ``overwrite``
            is false.
    """
    if overwrite or not (folder / store.MANIFEST).is_file():
        return
    import pandas as pd

    try:
        manifest = store.read_manifest(folder)
        stored = pd.read_parquet(folder / manifest["files"]["items"]["name"],
                                 columns=["kind", "path"])
    except (CollectionError, OSError, ValueError, KeyError, TypeError):
        return
    old = {p for p in store.absolute_paths(stored["path"][stored["kind"] == "image"], folder)
           if p}
    new = {p for p in items.frame["path"] if isinstance(p, str) and p}
    if not old or not new or old & new:
        return
    raise CollectionError(
        f"{folder} already holds a collection of {len(old)} images from {_where(old)}, none of "
        f"them in {items.description}; building there would replace it. Pass overwrite=True "
        "(command line: --overwrite) to replace it, or choose another out folder."
    )


def _where(paths: set[str]) -> str:
    try:
        return os.path.commonpath(sorted(paths))
    except ValueError:  # paths on different drives
        return f"{len(paths)} files"
