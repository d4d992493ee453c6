"""``Collection.export``: hand a collection to another tool (layouts in docs/interop.md).

This module gathers plain arrays and tables from a collection and writes them through the format
writers of :mod:`mclip_explorer.interop`; every output lands atomically: the writers write each
file through :func:`mclip_explorer._files.atomic_write` (verified), and a folder is filled
beside its target and renamed into place.
"""

from __future__ import annotations

import io
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer._files import fsync_folder
from mclip_explorer.collection import store
from mclip_explorer.collection.thumbnails import ThumbnailError
from mclip_explorer.errors import CollectionError

if TYPE_CHECKING:
    import pandas as pd

    from mclip_explorer.collection.core import Collection

FORMATS = ("clip-retrieval", "embedding-atlas", "fiftyone", "html")
NEIGHBORS = 15  # Embedding Atlas computes 15 neighbours itself (umap's default)
_CHUNK = 65536  # rows of vectors queried at a time: float32 copies stay small
# Collection bookkeeping that means nothing to another tool.
_INTERNAL = ("kind", "path", "text", "bytes", "width", "height", "sha256", "error", "deleted",
             "image_id")


def export(coll: Collection, format: str, path: str | Path, **options: Any) -> Path:
    """Write ``coll`` as ``format`` at ``path``; returns the path written.

    Formats and their options:

    - ``"clip-retrieval"`` (a folder): ``img_emb/``, ``text_emb/`` (when every image has an
      imported caption vector), ``metadata/``; option ``rows_per_file`` (default 10**6).
    - ``"embedding-atlas"`` (one ``.parquet``): options ``neighbors`` (15), ``thumb_size`` (64,
      0 for no images).
    - ``"fiftyone"`` (a FiftyOne dataset exported to a folder; needs ``pip install fiftyone``):
      option ``name``.
    - ``"html"`` (one offline ``.html``): option ``thumb_size`` (64, 0 for none).

    Raises:
        ValueError: Unknown format or option.
        CollectionError: A folder target that exists and is not empty.
    """
    writers: dict[str, Callable[..., Path]] = {
        "clip-retrieval": _clip_retrieval, "embedding-atlas": _atlas, "fiftyone": _fiftyone,
        "html": _html}
    if format not in writers:
        raise ValueError(f"unknown export format {format!r}; choose from {list(FORMATS)}")
    return writers[format](coll, Path(path).expanduser().resolve(), **options)


# ------------------------------------------------------------------------------- formats
def _clip_retrieval(coll: Collection, dest: Path, *, rows_per_file: int = 10**6) -> Path:
    from mclip_explorer.interop import clip_retrieval

    items = coll.items
    ids, vectors = coll.vectors("image")
    rows = items.iloc[ids].reset_index(drop=True)
    meta = _metadata(rows).drop(columns=["image_path", "caption"], errors="ignore")
    meta.insert(0, "mclip_id", rows["id"].to_numpy())
    meta.insert(0, "image_path", _image_paths(rows))
    if rows["text"].notna().any():
        meta.insert(1, "caption", rows["text"].to_numpy())
    texts = _paired_texts(coll, items, ids)

    def write(tmp: Path) -> None:
        clip_retrieval.write_folder(tmp, vectors, meta, texts, rows_per_file=rows_per_file)
        back = clip_retrieval.read_folder(tmp)  # verify before the rename makes it visible
        if back.images.shape != vectors.shape or len(back.metadata) != len(meta):
            raise CollectionError(f"export to {dest} did not read back as written")

    return _write_folder(dest, write)


def _atlas(coll: Collection, dest: Path, *, neighbors: int = NEIGHBORS,
           thumb_size: int = 64) -> Path:
    from mclip_explorer.interop import atlas

    items, ids = _mapped(coll)
    rows = items.iloc[ids].reset_index(drop=True)
    row_of = np.full(len(items), -1, dtype=np.int64)
    row_of[ids] = np.arange(len(ids))
    nb_rows, nb_dist = _neighbour_rows(coll, ids, row_of, min(neighbors, len(ids) - 1))
    frame = _metadata(rows)
    frame.insert(0, "id", rows["id"].to_numpy())
    frame.insert(1, "kind", rows["kind"].to_numpy())
    frame.insert(2, "text", _labels(rows))
    images = _thumbs(coll, rows, thumb_size, "JPEG") if thumb_size else None
    table = atlas.atlas_table(frame, coll.coords[ids], nb_rows, nb_dist, images)
    atlas.write_table(dest, table)
    return dest


def _neighbour_rows(coll: Collection, ids: np.ndarray, row_of: np.ndarray,
                    k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest other exported rows of each exported item, over images and texts.

    Embedding Atlas needs the same number of neighbours on every row, so the lists are merged
    across both indexes (a caption's nearest items may be images) rather than kept per kind.
    """
    rows = np.full((len(ids), max(k, 0)), -1, dtype=np.int64)
    dist = np.full(rows.shape, np.nan, dtype=np.float32)
    kinds = [kind for kind in ("image", "text") if kind in coll._indexes]
    if k < 1 or not kinds:
        return rows, dist
    for start in range(0, len(ids), _CHUNK):
        chunk = ids[start:start + _CHUNK]
        vectors = coll._embeddings[chunk]
        found = [coll.neighbours(vectors, k + 1, kind=kind) for kind in kinds]
        hits = np.concatenate([f[0] for f in found], axis=1)
        sims = np.concatenate([f[1] for f in found], axis=1)
        hit_rows = np.where(hits >= 0, row_of[np.maximum(hits, 0)], -1)
        bad = (hit_rows < 0) | (hits == chunk[:, None]) | ~np.isfinite(sims)
        order = np.argsort(np.where(bad, np.inf, -sims), axis=1, kind="stable")[:, :k]
        picked = np.take_along_axis(hit_rows, order, axis=1)
        ok = ~np.take_along_axis(bad, order, axis=1)
        rows[start:start + len(chunk)] = np.where(ok, picked, -1)
        dist[start:start + len(chunk)] = np.where(
            ok, 1.0 - np.take_along_axis(sims, order, axis=1), np.nan)
    return rows, dist


def _html(coll: Collection, dest: Path, *, thumb_size: int = 64, title: str | None = None) -> Path:
    from mclip_explorer.interop import html

    items, ids = _mapped(coll)
    rows = items.iloc[ids].reset_index(drop=True)
    thumbs = _thumbs(coll, rows, thumb_size, "WEBP") if thumb_size else [None] * len(rows)
    page = html.render(coll.coords[ids], rows["id"].tolist(), _labels(rows),
                       rows["kind"].tolist(), thumbs, title=title or coll.path.name,
                       subtitle=f"{len(rows)} items, model {coll.model_name}")
    html.write(dest, page)
    return dest


def _fiftyone(coll: Collection, dest: Path, *, name: str | None = None) -> Path:
    from mclip_explorer.interop import fiftyone

    items = coll.items
    ids, vectors = coll.vectors("image")
    rows = items.iloc[ids].reset_index(drop=True)
    xy = coll.coords[ids]
    placeholder = None
    paths = list(rows["path"])
    if any(not isinstance(p, str) for p in paths):
        placeholder = _placeholder(coll)
        paths = [p if isinstance(p, str) else str(placeholder) for p in paths]
    meta = _metadata(rows)
    meta.insert(0, "mclip_id", rows["id"].to_numpy())
    meta.insert(1, "caption", rows["text"].to_numpy())
    name = name or f"mclip-{coll.path.name}-{uuid.uuid4().hex[:6]}"
    return _write_folder(dest, lambda tmp: fiftyone.export_dataset(tmp, paths, vectors, xy, meta,
                                                                   name=name))


# ------------------------------------------------------------------------------- helpers
def _mapped(coll: Collection) -> tuple[pd.DataFrame, np.ndarray]:
    """Items and the ids of live items that are on the map (images and texts)."""
    items = coll.items
    ok = np.isfinite(coll.coords).all(axis=1) & ~items["deleted"].to_numpy(bool) & items[
        "error"].isna().to_numpy()
    return items, np.flatnonzero(ok)


def _metadata(rows: pd.DataFrame) -> pd.DataFrame:
    """The user metadata of ``rows`` (plus ``lang``/``title`` where set)."""
    keep = [c for c in rows.columns if c not in _INTERNAL and c != "id"
            and not (c in ("lang", "title") and rows[c].isna().all())]
    return rows[keep].drop(columns=["mclip_id"], errors="ignore").reset_index(drop=True)


def _image_paths(rows: pd.DataFrame) -> list[str | None]:
    """The local file, else what the source called the image (a WebDataset key, a URL)."""
    source = rows["image_path"] if "image_path" in rows.columns else None
    return [p if isinstance(p, str) else (
        str(source.iat[i]) if source is not None and isinstance(source.iat[i], str) else None)
        for i, p in enumerate(rows["path"])]


def _labels(rows: pd.DataFrame) -> list[str]:
    out = []
    for row in rows.itertuples(index=False):
        label = next((v for v in (getattr(row, "text", None), getattr(row, "title", None))
                      if isinstance(v, str) and v), None)
        if label is None:
            path = getattr(row, "path", None)
            label = Path(path).name if isinstance(path, str) else f"item {row.id}"
        out.append(label)
    return out


def _paired_texts(coll: Collection, items: pd.DataFrame, ids: np.ndarray) -> np.ndarray | None:
    """Caption vectors aligned with image ``ids`` when every image has one (else None)."""
    if "image_id" not in items.columns:
        return None
    texts = items[(items["kind"] == "text") & ~items["deleted"] & items["image_id"].notna()]
    by_image = dict(zip(texts["image_id"].astype(int), texts["id"], strict=True))
    if not all(int(i) in by_image for i in ids):
        return None
    text_ids, vectors = coll.vectors("text")
    position = {int(t): p for p, t in enumerate(text_ids)}
    return vectors[[position[int(by_image[int(i)])] for i in ids]]


def _thumbs(coll: Collection, rows: pd.DataFrame, size: int, fmt: str) -> list[bytes | None]:
    """Thumbnails per row (None for text items and unreadable images), re-encoded as ``fmt``."""
    from PIL import Image

    out: list[bytes | None] = []
    for item_id, kind in zip(rows["id"], rows["kind"], strict=True):
        if kind != "image":
            out.append(None)
            continue
        try:
            data = coll.thumbnail(int(item_id), size)
        except ThumbnailError:
            out.append(None)  # no local file: the viewer shows its own placeholder
            continue
        if fmt != "WEBP":
            with Image.open(io.BytesIO(data)) as image:
                buffer = io.BytesIO()
                image.convert("RGB").save(buffer, format=fmt, quality=85)
                data = buffer.getvalue()
        out.append(data)
    return out


def _placeholder(coll: Collection) -> Path:
    """A grey picture for items whose image is not a local file (FiftyOne needs a filepath)."""
    from PIL import Image

    target = coll.path / "thumbs" / "placeholder.png"
    if not target.is_file():
        buffer = io.BytesIO()
        Image.new("RGB", (64, 64), (200, 200, 200)).save(buffer, format="PNG")
        store.save_bytes(target, buffer.getvalue())
    return target


def _write_folder(dest: Path, write: Callable[[Path], object]) -> Path:
    """Fill a new folder beside ``dest``, then rename it to ``dest`` (absent or empty)."""
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise CollectionError(f"export target exists and is not an empty folder: {dest}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.parent / f".{dest.name}.{uuid.uuid4().hex[:8]}.tmp"
    tmp.mkdir()
    try:
        write(tmp)
        if dest.exists():
            dest.rmdir()
        tmp.replace(dest)
        fsync_folder(dest.parent)  # the rename itself survives a crash
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest
