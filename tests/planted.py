"""Collections with planted structure, for checking that each analysis view finds what we put in.

Every image is drawn here from the toy model's palette, so the toy encoder (colour histogram for
images, colour words for texts) gives a space whose structure we know in advance:

* ``pair`` images: two colour halves, one per unordered pair of ``PALETTE`` (28 distinct items);
* ``duplicate`` images: a resized copy, a JPEG re-encoding and a noisy copy of three pairs;
* ``outlier`` images: solid colours outside the palette (nothing else shares their colour);
* one ``hub`` image: stripes of every palette colour, moderately close to every colour query.

``BlindLanguageToy`` is the toy model with a text tower that fails on purpose for Greek: any text
with a Greek letter becomes deterministic noise. ``GapToy`` adds a known offset to every text.
"""

from __future__ import annotations

import hashlib
import itertools
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image

from mclip_explorer.models.toy import COLOURS, ToyEncoder

PALETTE = ("red", "orange", "yellow", "green", "blue", "purple", "pink", "brown")
OUTLIER_COLOURS = ("grey", "white")
# The palette's colour words in four languages, all in the toy lexicon.
WORDS = {
    "en": dict(zip(PALETTE, ("red", "orange", "yellow", "green", "blue", "purple", "pink",
                             "brown"), strict=True)),
    "de": dict(zip(PALETTE, ("rot", "orange", "gelb", "grün", "blau", "lila", "rosa", "braun"),
                   strict=True)),
    "fr": dict(zip(PALETTE, ("rouge", "orange", "jaune", "vert", "bleu", "violet", "rose",
                             "marron"), strict=True)),
    "el": dict(zip(PALETTE, ("κόκκινο", "πορτοκαλί", "κίτρινο", "πράσινο", "μπλε", "μωβ", "ροζ",
                             "καφέ"), strict=True)),
}
AND = {"en": "and", "de": "und", "fr": "et", "el": "και"}
BROKEN_LANGUAGE = "el"
SIZE = 96


def rgb(colour: str) -> tuple[int, int, int]:
    """The toy palette's RGB for a colour name."""
    return COLOURS[colour][0]


def pair_image(left: str, right: str, size: int = SIZE) -> Image.Image:
    """Left half one colour, right half the other."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    pixels[:, : size // 2] = rgb(left)
    pixels[:, size // 2 :] = rgb(right)
    return Image.fromarray(pixels)


def stripes_image(colours: tuple[str, ...], size: int = SIZE) -> Image.Image:
    """Vertical stripes, one per colour, equal widths."""
    pixels = np.empty((size, size, 3), dtype=np.uint8)
    for i, colour in enumerate(colours):
        pixels[:, i * size // len(colours) : (i + 1) * size // len(colours)] = rgb(colour)
    return Image.fromarray(pixels)


def solid_image(colour: str, size: int = SIZE, shade: int = 0) -> Image.Image:
    """One flat colour, optionally shifted by ``shade`` in every channel."""
    value = np.clip(np.array(rgb(colour)) + shade, 0, 255).astype(np.uint8)
    return Image.fromarray(np.broadcast_to(value, (size, size, 3)).copy())


def planted_images(folder: Path) -> pd.DataFrame:
    """Write the planted image set into ``folder``; one row per file with what it is.

    Returns:
        Columns ``path``, ``role`` (pair/duplicate/outlier/hub), ``left``, ``right`` (pair
        colours, else None), ``group`` (the duplicate group's original path, else None).
    """
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for left, right in itertools.combinations(PALETTE, 2):
        path = folder / f"pair_{left}_{right}.png"
        pair_image(left, right).save(path)
        rows.append({"path": str(path), "role": "pair", "left": left, "right": right})
    originals = {("red", "blue"): "small", ("green", "yellow"): "jpeg",
                 ("purple", "orange"): "noise"}
    for (left, right), how in originals.items():
        a, b = sorted((left, right), key=PALETTE.index)
        original = str(folder / f"pair_{a}_{b}.png")
        image = pair_image(a, b)
        if how == "small":
            path = folder / f"copy_{a}_{b}_small.png"
            image.resize((SIZE // 2, SIZE // 2)).save(path)
        elif how == "jpeg":
            path = folder / f"copy_{a}_{b}.jpg"
            image.save(path, quality=60)
        else:
            path = folder / f"copy_{a}_{b}_noisy.png"
            noise = np.random.default_rng(1).normal(0, 6, (SIZE, SIZE, 3))
            Image.fromarray(np.clip(np.asarray(image) + noise, 0, 255).astype(np.uint8)).save(path)
        rows.append({"path": str(path), "role": "duplicate", "left": a, "right": b,
                     "group": original})
        next(r for r in rows if r["path"] == original)["group"] = original
    for colour in OUTLIER_COLOURS:
        path = folder / f"solid_{colour}.png"
        solid_image(colour).save(path)
        rows.append({"path": str(path), "role": "outlier", "left": colour, "right": colour})
    path = folder / "stripes_all.png"
    stripes_image(PALETTE).save(path)
    rows.append({"path": str(path), "role": "hub"})
    return pd.DataFrame(rows, columns=["path", "role", "left", "right", "group"])


def solid_images(folder: Path) -> pd.DataFrame:
    """Three shades of every palette colour: a clean zero-shot set. Columns ``path``, ``colour``."""
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for colour in PALETTE:
        for shade in (-12, 0, 12):
            path = folder / f"{colour}_{shade + 12}.png"
            solid_image(colour, shade=shade).save(path)
            rows.append({"path": str(path), "colour": colour})
    return pd.DataFrame(rows)


def captions_for(items: pd.DataFrame, langs: tuple[str, ...] = tuple(WORDS)) -> pd.DataFrame:
    """Parallel captions ("red and blue", "rot und blau"...) for the original pair images.

    Args:
        items: A collection's ``items`` joined with :func:`planted_images` (needs ``id``,
            ``role``, ``left``, ``right``).
        langs: Caption languages.
    """
    rows = []
    for item in items[items["role"] == "pair"].itertuples():
        for lang in langs:
            text = f"{WORDS[lang][item.left]} {AND[lang]} {WORDS[lang][item.right]}"
            rows.append({"item_id": int(item.id), "lang": lang, "text": text})
    return pd.DataFrame(rows)


class BlindLanguageToy(ToyEncoder):
    """The toy model, except that its text tower returns noise for any text with a Greek letter."""

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        vectors = super()._encode_text_batch(texts)
        for i, text in enumerate(texts):
            if any("\u0370" <= ch <= "\u03ff" for ch in text):
                seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
                vectors[i] = np.random.default_rng(seed).standard_normal(self.dim)
        return vectors

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"blind-el:{super().fingerprint}".encode()).hexdigest()[:32]


class GapToy(ToyEncoder):
    """The toy model with every text embedding pushed along one fixed axis by ``offset``."""

    def __init__(self, offset: float) -> None:
        super().__init__()
        self.offset = offset
        self.axis = np.zeros(self.dim, dtype=np.float32)
        self.axis[-3] = 1.0  # a hashed-trigram slot: images never use it much

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        vectors = super()._encode_text_batch(texts)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / norms + self.offset * self.axis

    @property
    def fingerprint(self) -> str:
        return hashlib.sha256(f"gap:{self.offset}:{super().fingerprint}".encode()).hexdigest()[:32]
