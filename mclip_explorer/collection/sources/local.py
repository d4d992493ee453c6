"""Turn what a user hands ``Collection.build``/``add`` into a table of items to encode.

Accepted sources: a folder (recursive, by image extension), a glob pattern, a list of paths (or
encoded bytes / PIL images), a pandas DataFrame with a ``path`` column plus metadata columns, and a
Hugging Face ``datasets.Dataset`` with an image column (optional dependency).
"""

from __future__ import annotations

import glob
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.collection import columns
from mclip_explorer.errors import SourceError
from mclip_explorer.images import IMAGE_EXTENSIONS, is_image_path

if TYPE_CHECKING:
    import pandas as pd

# Columns the collection owns; a user metadata column of the same name would be ambiguous.
RESERVED = tuple(c for c in columns.COLUMNS if c not in columns.SOURCE_COLUMNS)
_GLOB_CHARS = re.compile(r"[*?\[]")
_TRAILING_NUMBER = re.compile(r"[\s_-]*\d+$")


@dataclass
class SourceItems:
    """Items of one source, in a stable order.

    Attributes:
        frame: One row per item: ``path`` (absolute str, or None for in-memory images),
            ``title`` and user metadata columns.
        payloads: What to read for each row: a path string, encoded bytes or a PIL image.
        description: A short human name of the source for messages.
    """

    frame: pd.DataFrame
    payloads: list[Any]
    description: str


def read_source(source: Any, *, image_column: str | None = None) -> SourceItems:
    """Resolve any accepted source to :class:`SourceItems`.

    Args:
        source: See the module docstring.
        image_column: For a ``datasets.Dataset``: the column holding images (default: the first
            column of type ``Image``, else one called ``image``).

    Raises:
        SourceError: The source does not exist, has an unsupported type, or holds no images.
    """
    import pandas as pd

    if isinstance(source, (str, Path)):
        items = _from_path_like(source)
    elif isinstance(source, pd.DataFrame):
        items = _from_frame(source)
    elif _is_hf_dataset(source):
        items = _from_hf_dataset(source, image_column)
    elif isinstance(source, Sequence) and not isinstance(source, (bytes, bytearray)):
        items = _from_list(list(source))
    else:
        raise SourceError(
            f"unsupported source type {type(source).__name__}: give a folder, a glob pattern, a "
            "list of paths, a DataFrame with a 'path' column or a datasets.Dataset"
        )
    if not items.payloads:
        raise SourceError(f"no images found in {items.description}")
    return items


def text_items(texts: str | Sequence[str], lang: Any, metadata: dict[str, Any]) -> pd.DataFrame:
    """Rows of text items: ``kind``, ``path`` (None), ``text``, ``lang`` and metadata columns.

    Args:
        texts: One text or a list of texts.
        lang: One language code for all texts, or one per text (or None).
        metadata: Column -> one value for all texts, or one per text.

    Raises:
        ValueError: No texts, a non-string text, a clash with a collection column, or a
            per-text list of the wrong length.
    """
    import pandas as pd

    texts = [texts] if isinstance(texts, str) else list(texts)
    if not texts or not all(isinstance(t, str) for t in texts):
        raise ValueError("texts must be a non-empty string or list of strings")
    clashes = [c for c in metadata if c in RESERVED]
    if clashes:
        raise ValueError(f"metadata names {clashes} clash with collection columns")
    frame = pd.DataFrame({"kind": "text", "path": None, "text": texts}, index=range(len(texts)))
    for name, value in {"lang": lang, **metadata}.items():
        if isinstance(value, (list, tuple, pd.Series)) or hasattr(value, "__array__"):
            if len(value) != len(texts):
                raise ValueError(f"{name} has {len(value)} values for {len(texts)} texts")
            frame[name] = list(value)
        else:
            frame[name] = value
    return frame


def title_from_name(path: str | Path) -> str:
    """A readable title from a file name: ``emperor_penguin_01.png`` -> ``emperor penguin``."""
    stem = _TRAILING_NUMBER.sub("", Path(path).stem) or Path(path).stem
    return re.sub(r"[\s_-]+", " ", stem).strip()


def _from_path_like(source: str | Path) -> SourceItems:
    text = str(source)
    path = Path(text).expanduser()
    if isinstance(source, str) and _GLOB_CHARS.search(text) and not path.exists():
        matches = sorted(glob.glob(str(path), recursive=True))  # noqa: PTH207 - absolute patterns
        files = [Path(m).resolve() for m in matches if Path(m).is_file() and is_image_path(Path(m))]
        return _file_items(files, None, f"glob {text!r}")
    if not path.exists():
        raise SourceError(f"folder not found: {path}")
    if path.is_file():
        return _file_items([path.resolve()], None, str(path))
    root = path.resolve()
    # sorted() on relative POSIX paths: the order (and so the ids) do not depend on the OS.
    files = sorted(
        (p for p in root.rglob("*") if p.is_file() and is_image_path(p)),
        key=lambda p: p.relative_to(root).as_posix(),
    )
    extensions = " ".join(sorted(IMAGE_EXTENSIONS))
    return _file_items(files, root, f"folder {root} (looked for {extensions})")


def _file_items(files: list[Path], root: Path | None, description: str) -> SourceItems:
    import pandas as pd

    rows: dict[str, list[Any]] = {"path": [str(f) for f in files],
                                  "title": [title_from_name(f) for f in files]}
    if root is not None:
        rows["folder"] = ["" if f.parent == root else f.parent.relative_to(root).as_posix()
                          for f in files]
    return SourceItems(pd.DataFrame(rows), [str(f) for f in files], description)


def _from_list(values: list[Any]) -> SourceItems:
    import pandas as pd
    from PIL import Image

    paths: list[str | None] = []
    titles: list[str | None] = []
    payloads: list[Any] = []
    for position, value in enumerate(values):
        if isinstance(value, (str, Path)):
            resolved = str(Path(value).expanduser().resolve())
            paths.append(resolved)
            titles.append(title_from_name(resolved))
            payloads.append(resolved)
        elif isinstance(value, (bytes, bytearray, memoryview, Image.Image)):
            paths.append(None)
            titles.append(None)
            payloads.append(bytes(value) if not isinstance(value, Image.Image) else value)
        else:
            raise SourceError(
                f"source[{position}] is {type(value).__name__}; a list source holds paths, "
                "encoded image bytes or PIL images"
            )
    frame = pd.DataFrame({"path": pd.Series(paths, dtype=object),
                          "title": pd.Series(titles, dtype=object)})
    return SourceItems(frame, payloads, f"a list of {len(values)} item(s)")


def _from_frame(frame: pd.DataFrame) -> SourceItems:
    if "path" not in frame.columns:
        raise SourceError(
            f"DataFrame source needs a 'path' column; it has {', '.join(map(str, frame.columns))}"
        )
    clashes = [c for c in frame.columns if c in RESERVED and c != "path"]
    if clashes:
        raise SourceError(f"DataFrame columns {clashes} clash with collection columns; rename them")
    out = frame.reset_index(drop=True).copy()
    paths: list[str] = []
    for position, value in enumerate(out["path"]):
        if not isinstance(value, (str, Path)) or not str(value):
            raise SourceError(f"DataFrame row {position}: path must be a file path, got {value!r}")
        paths.append(str(Path(value).expanduser().resolve()))
    out["path"] = paths
    if "title" not in out.columns:
        out.insert(1, "title", [title_from_name(p) for p in paths])
    return SourceItems(out, list(paths), f"a DataFrame of {len(out)} row(s)")


def _is_hf_dataset(source: Any) -> bool:
    return type(source).__module__.startswith("datasets.") and hasattr(source, "features")


def _from_hf_dataset(dataset: Any, image_column: str | None) -> SourceItems:
    import pandas as pd

    column = image_column or _guess_image_column(dataset)
    if column not in dataset.column_names:
        raise SourceError(f"dataset has no column {column!r}; it has {dataset.column_names}")
    # Undecoded access yields {"bytes", "path"} dicts: the original encoded bytes hash stably.
    raw = dataset.cast_column(column, _image_feature(decode=False)) if _is_image_feature(
        dataset.features[column]) else dataset
    payloads: list[Any] = []
    for position, value in enumerate(raw[column]):
        if isinstance(value, dict) and value.get("bytes"):
            payloads.append(bytes(value["bytes"]))
        elif isinstance(value, dict) and value.get("path"):
            payloads.append(str(Path(value["path"]).resolve()))
        elif value is not None and hasattr(value, "convert"):  # a decoded PIL image
            payloads.append(value)
        else:
            raise SourceError(f"dataset row {position}: column {column!r} holds no image")
    metadata = {
        name: dataset[name] for name in dataset.column_names
        if name != column and name not in RESERVED and _is_scalar_feature(dataset.features[name])
    }
    frame = pd.DataFrame({"path": pd.Series([None] * len(payloads), dtype=object),
                          "title": pd.Series([None] * len(payloads), dtype=object), **metadata})
    if "title" in metadata:
        frame["title"] = metadata["title"]
    return SourceItems(frame, payloads, f"dataset column {column!r} ({len(payloads)} rows)")


def _guess_image_column(dataset: Any) -> str:
    for name, feature in dataset.features.items():
        if _is_image_feature(feature):
            return str(name)
    if "image" in dataset.column_names:
        return "image"
    raise SourceError(
        f"dataset has no Image column (columns: {dataset.column_names}); pass image_column="
    )


def _image_feature(decode: bool) -> Any:
    import datasets

    return datasets.Image(decode=decode)


def _is_image_feature(feature: Any) -> bool:
    return type(feature).__name__ == "Image"


def _is_scalar_feature(feature: Any) -> bool:
    return type(feature).__name__ in ("Value", "ClassLabel")
