"""Small generated coloured images and their toy-model collection, shared by the widget tests."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw

from mclip_explorer.models.toy import COLOURS

PER_COLOUR = 4


def make_images(folder: Path, per_colour: int = PER_COLOUR) -> pd.DataFrame:
    """Write ``per_colour`` PNGs per toy colour (a plain field with a varying patch).

    Returns:
        A source DataFrame: ``path`` plus the metadata columns ``colour`` and ``shade``.
    """
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(7)
    rows = []
    for name, (rgb, _) in COLOURS.items():
        for i in range(per_colour):
            image = Image.new("RGB", (64, 48), rgb)
            draw = ImageDraw.Draw(image)
            x, y = (int(v) for v in rng.integers(0, 40, size=2))
            patch = (255, 255, 255) if sum(rgb) < 380 else (30, 30, 30)
            draw.rectangle((x, y % 30, x + 8 + 4 * i, y % 30 + 10), fill=patch)
            path = folder / f"{name}_{i}.png"
            image.save(path)
            rows.append({"path": str(path), "colour": name, "shade": "dark" if sum(rgb) < 380
                         else "light"})
    return pd.DataFrame(rows)


def build_collection(root: Path):  # -> Collection (import kept lazy for the test collection)
    """Build the toy collection of :func:`make_images` plus three text items, under ``root``."""
    from mclip_explorer import Collection
    from mclip_explorer.models import load_model

    source = make_images(root / "images")
    coll = Collection.build(source, model=load_model("toy"), out=root / "coll", progress=False)
    coll.add_texts(["a red car", "ein blaues Haus", "زهرة صفراء"], lang=["en", "de", "ar"])
    return coll
