"""``explore()``: one call from a collection, its folder or a folder of images to the map."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.collection.store import MANIFEST

if TYPE_CHECKING:
    from mclip_explorer.models import Encoder
    from mclip_explorer.widget.explorer import ExplorerWidget

DEFAULT_MODEL = "clip-ViT-B-32-multilingual-v1"


def explore(
    collection_or_path_or_images: Any,
    model: str | Encoder | None = None,
    out: str | Path | None = None,
    *,
    progress: bool = True,
    background: bool = False,
    **kwargs: Any,
) -> ExplorerWidget:
    """Show the explorer widget of a collection, building the collection first if needed.

    Args:
        collection_or_path_or_images: A :class:`Collection`; a collection folder; a folder of
            images (built into ``out``, or reused if ``out`` already holds its collection); or
            any other source :meth:`Collection.build` accepts (a glob, a list of paths...).
        model: Model name or :class:`Encoder`. For a new collection it defaults to
            ``clip-ViT-B-32-multilingual-v1``; an existing collection uses its own model.
        out: Collection folder for a build. Default for a folder ``photos/`` is the sibling
            ``photos.mclip/`` (never inside the image folder, whose scan would pick up the
            thumbnails; bundled or read-only folders go to ``~/.cache/mclip-explorer``, see
            :func:`default_out`); for other sources a new temporary folder.
        progress: Show a progress bar while building.
        background: Return the widget at once and build (or update) the collection in a
            background process: the widget shows progress, an ETA and a Cancel button, its
            items become searchable step by step, and the map fills in (a provisional layout
            first, the final map at the end). Running the same call again resumes. Needs a
            model *name* and a running kernel (the widget updates from its event loop).
        **kwargs: Widget options (``color_by``, ``k``, ``thumb_size``).

    Returns:
        The widget; display it (it is the last expression of a cell) to see the map.
    """
    from mclip_explorer.collection import Collection
    from mclip_explorer.widget.explorer import ExplorerWidget

    source = collection_or_path_or_images
    if isinstance(source, Collection):
        return ExplorerWidget(source, **kwargs)
    if isinstance(source, (str, Path)) and (Path(source).expanduser() / MANIFEST).is_file():
        return ExplorerWidget(Collection.open(Path(source).expanduser(), model=model), **kwargs)
    target = Path(out).expanduser() if out is not None else default_out(source)
    if background:
        return _explore_in_background(source, model, target, kwargs)
    if (target / MANIFEST).is_file():
        # Reuse: encode (and place on the existing map) only the files that are new or changed.
        coll = Collection.open(target, model=model)
        coll.add(source, progress=progress)
    else:
        coll = Collection.build(source, model=model or DEFAULT_MODEL, out=target,
                                progress=progress)
    return ExplorerWidget(coll, **kwargs)


def default_out(source: Any) -> Path:
    """Where ``explore()`` keeps the collection of a source it builds (see ``explore``).

    A folder's collection goes beside it (``photos/`` -> ``photos.mclip/``), except for folders
    inside this package (the bundled sample) or beside which nothing can be written: those go to
    ``$MCLIP_EXPLORER_CACHE`` (default ``~/.cache/mclip-explorer``), one folder per source path.
    """
    if isinstance(source, (str, Path)) and Path(source).expanduser().is_dir():
        folder = Path(source).expanduser().resolve()
        package = Path(__file__).resolve().parent.parent
        if not folder.is_relative_to(package) and os.access(folder.parent, os.W_OK):
            return folder.parent / f"{folder.name}.mclip"
        digest = hashlib.sha256(str(folder).encode()).hexdigest()[:8]
        return cache_home() / f"{folder.name}-{digest}.mclip"
    return Path(tempfile.mkdtemp(prefix="mclip-explorer-"))


def cache_home() -> Path:
    """The folder for collections of read-only or bundled sources."""
    from mclip_explorer._files import user_cache_dir

    return user_cache_dir()


def _explore_in_background(source: Any, model: Any, target: Path,
                           kwargs: dict[str, Any]) -> ExplorerWidget:
    from mclip_explorer.collection import Collection
    from mclip_explorer.widget.background import BackgroundBuild, PendingCollection
    from mclip_explorer.widget.explorer import ExplorerWidget

    if model is not None and not isinstance(model, str):
        raise TypeError("a background build takes the model by name (it is loaded in another "
                        f"process), got {type(model).__name__}")
    if (target / MANIFEST).is_file():
        coll: Any = Collection.open(target)
        name = model or coll.model_name
    else:
        name = model or DEFAULT_MODEL
        coll = PendingCollection(name)
    widget = ExplorerWidget(coll, **kwargs)
    build = BackgroundBuild(source, name, target)
    widget._follow(build)
    build.start()
    return widget
