"""The modality gap: images and texts of a CLIP space live in two separate cones.

Liang et al. (*Mind the Gap*, NeurIPS 2022) show that the image and text embeddings of a
contrastive model occupy two narrow cones whose centroids are far apart. This module measures the
gap (centroids, gap vector, mean cosines within and across modalities) and builds the
gap-corrected view: each modality shifted so that both centroids meet, ready to project.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import pandas as pd

from mclip_explorer.analysis._common import as_ids, as_unit, item_vectors, n_items

Method = Literal["pca", "umap"]


@dataclass(frozen=True)
class ModalityGap:
    """The measured gap between the image and the text cloud of one space.

    Attributes:
        image_centroid: Mean of the unit image vectors, ``(dim,)``.
        text_centroid: Mean of the unit text vectors, ``(dim,)``.
        gap: ``image_centroid - text_centroid``, the vector the correction removes.
        gap_norm: Euclidean length of ``gap``.
        cosines: One row per pair type (``image-image``, ``text-text``, ``image-text``) with the
            mean cosine before (``mean``) and after (``mean_corrected``) the correction, and the
            number of pairs it averages.
        ids: Item ids of the rows of ``vectors`` and ``corrected`` (images first, then texts).
        kinds: ``"image"`` or ``"text"`` per row.
        vectors: The unit vectors as stored.
        corrected: The same items with the gap removed (each modality moved by half the gap
            towards the other, then re-normalised).
        n_items: Length of the id space, so :meth:`coords` can return one row per item.
    """

    image_centroid: np.ndarray
    text_centroid: np.ndarray
    gap: np.ndarray
    gap_norm: float
    cosines: pd.DataFrame
    ids: np.ndarray
    kinds: np.ndarray
    vectors: np.ndarray
    corrected: np.ndarray
    n_items: int

    def cosine_samples(
        self, n: int = 2000, *, seed: int = 0, corrected: bool = False
    ) -> pd.DataFrame:
        """Random pair cosines per pair type, for histograms.

        Args:
            n: Pairs drawn per pair type (with replacement).
            seed: Random seed, so a notebook shows the same histogram every run.
            corrected: Sample the gap-corrected vectors instead of the stored ones.

        Returns:
            Columns ``pair`` (``image-image``, ``text-text``, ``image-text``) and ``cosine``.
        """
        rng = np.random.default_rng(seed)
        data = self.corrected if corrected else self.vectors
        image = np.flatnonzero(self.kinds == "image")
        text = np.flatnonzero(self.kinds == "text")
        frames = []
        for pair, left, right in (
            ("image-image", image, image),
            ("text-text", text, text),
            ("image-text", image, text),
        ):
            if len(left) == 0 or len(right) == 0:
                continue
            a = rng.choice(left, n)
            b = rng.choice(right, n)
            if left is right and len(left) > 1:
                # A vector paired with itself (cosine 1) is not a pair; redraw those.
                same = a == b
                while same.any():
                    b[same] = rng.choice(right, int(same.sum()))
                    same = a == b
            cos = np.einsum("ij,ij->i", data[a], data[b])
            frames.append(pd.DataFrame({"pair": pair, "cosine": cos}))
        return pd.concat(frames, ignore_index=True)

    def coords(
        self, *, corrected: bool = True, method: Method = "pca", seed: int = 0
    ) -> np.ndarray:
        """A 2-D map of images and texts together, one row per item id (NaN for other items).

        The raw and the corrected view are each projected with the same method; the corrected
        view is then rotated and scaled onto the raw one (orthogonal Procrustes), so toggling
        between them moves points only as far as the correction moves them.

        Args:
            corrected: Project the gap-corrected vectors (``False``: the stored ones).
            method: ``"pca"`` (instant, linear, shows the gap as one direction) or ``"umap"``.
            seed: Random seed for UMAP.

        Returns:
            ``(n_items, 2)`` float32.
        """
        raw = _project(self.vectors, method, seed)
        xy = raw
        if corrected:
            xy = _procrustes(_project(self.corrected, method, seed), raw)
        out = np.full((self.n_items, 2), np.nan, dtype=np.float32)
        out[self.ids] = xy
        return out


def modality_gap(coll: Any) -> ModalityGap:
    """Measure the modality gap of a collection that holds both images and text items.

    Args:
        coll: A :class:`~mclip_explorer.Collection` with at least one image and one text item
            (add texts with ``coll.add_texts``).

    Returns:
        A :class:`ModalityGap`.
    """
    image_ids, image_vectors = item_vectors(coll, "image")
    text_ids, text_vectors = item_vectors(coll, "text")
    if len(text_ids) == 0:
        raise ValueError(
            "the collection has no text items, so there is no gap to measure; add captions or "
            "labels first with coll.add_texts([...], lang=...)"
        )
    return gap_from_vectors(image_ids, image_vectors, text_ids, text_vectors, n_items=n_items(coll))


def gap_from_vectors(
    image_ids: Any,
    image_vectors: Any,
    text_ids: Any,
    text_vectors: Any,
    *,
    n_items: int | None = None,
) -> ModalityGap:
    """The array-level core of :func:`modality_gap`.

    Args:
        image_ids: ``(n_img,)`` ids of the image vectors.
        image_vectors: ``(n_img, dim)`` image embeddings (normalised here).
        text_ids: ``(n_txt,)`` ids of the text vectors.
        text_vectors: ``(n_txt, dim)`` text embeddings (normalised here).
        n_items: Length of the id space (default: largest id + 1).

    Returns:
        A :class:`ModalityGap`.
    """
    image = as_unit(image_vectors, "image_vectors")
    text = as_unit(text_vectors, "text_vectors")
    if len(image) == 0 or len(text) == 0:
        raise ValueError(f"need at least one image and one text, got {len(image)} and {len(text)}")
    if image.shape[1] != text.shape[1]:
        raise ValueError(
            f"image and text vectors differ in dim: {image.shape[1]} vs {text.shape[1]}"
        )
    ids = np.concatenate(
        [as_ids(image_ids, len(image), "image_ids"), as_ids(text_ids, len(text), "text_ids")]
    )
    if len(np.unique(ids)) != len(ids):
        raise ValueError("an id appears among both the image and the text ids")
    image_centroid = image.mean(axis=0)
    text_centroid = text.mean(axis=0)
    gap = image_centroid - text_centroid
    # Meet in the middle, so neither modality is privileged; re-normalise to stay on the sphere.
    corrected_image = as_unit(image - gap / 2)
    corrected_text = as_unit(text + gap / 2)
    rows = []
    for pair, a, b, ca, cb in (
        ("image-image", image, image, corrected_image, corrected_image),
        ("text-text", text, text, corrected_text, corrected_text),
        ("image-text", image, text, corrected_image, corrected_text),
    ):
        same = a is b
        pairs = len(a) * (len(a) - 1) // 2 if same else len(a) * len(b)
        rows.append(
            {
                "pair": pair,
                "mean": _mean_cosine(a, b, same),
                "mean_corrected": _mean_cosine(ca, cb, same),
                "pairs": pairs,
            }
        )
    size = int(ids.max()) + 1 if n_items is None else int(n_items)
    if ids.max() >= size:
        raise ValueError(f"id {int(ids.max())} is outside n_items={size}")
    return ModalityGap(
        image_centroid=image_centroid,
        text_centroid=text_centroid,
        gap=gap,
        gap_norm=float(np.linalg.norm(gap)),
        cosines=pd.DataFrame(rows),
        ids=ids,
        kinds=np.array(["image"] * len(image) + ["text"] * len(text)),
        vectors=np.concatenate([image, text]),
        corrected=np.concatenate([corrected_image, corrected_text]),
        n_items=size,
    )


def _mean_cosine(a: np.ndarray, b: np.ndarray, same: bool) -> float:
    """Mean pairwise cosine of unit rows in O(n dim): the dot product of the row sums."""
    sa, sb = a.sum(axis=0, dtype=np.float64), b.sum(axis=0, dtype=np.float64)
    if not same:
        return float(sa @ sb / (len(a) * len(b)))
    if len(a) < 2:
        return float("nan")
    # Sum over ordered pairs minus the diagonal (each row with itself), halved implicitly.
    self_dots = float(np.einsum("ij,ij->", a, a, dtype=np.float64))
    return float((sa @ sa - self_dots) / (len(a) * (len(a) - 1)))


def _project(vectors: np.ndarray, method: Method, seed: int) -> np.ndarray:
    if method == "pca":
        centred = vectors - vectors.mean(axis=0)
        _, _, vt = np.linalg.svd(centred.astype(np.float64), full_matrices=False)
        xy = centred @ vt[:2].T
        if xy.shape[1] < 2:
            xy = np.pad(xy, ((0, 0), (0, 2 - xy.shape[1])))
        return np.asarray(xy, dtype=np.float32)
    if method == "umap":
        import umap

        reducer = umap.UMAP(
            n_jobs=1,
            n_components=2,
            metric="cosine",
            random_state=seed,
            n_neighbors=min(15, max(2, len(vectors) - 1)),
        )
        return np.asarray(reducer.fit_transform(vectors), dtype=np.float32)
    raise ValueError(f"method must be 'pca' or 'umap', got {method!r}")


def _procrustes(source: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rotate/reflect and scale ``source`` onto ``target`` (both centred first)."""
    s = source - source.mean(axis=0)
    t = target - target.mean(axis=0)
    u, sigma, vt = np.linalg.svd(s.T.astype(np.float64) @ t, full_matrices=False)
    rotation = u @ vt
    scale = sigma.sum() / max(float((s**2).sum()), 1e-12)
    return np.asarray(scale * s @ rotation + target.mean(axis=0), dtype=np.float32)
