"""Rebuild the bundled sample collection from Debian's ``openclipart-png`` package.

Run ``apt-get install openclipart-png`` then ``python -m mclip_explorer.data.make_sample``. The
choice is deterministic (evenly spaced files of each chosen category, in sorted order), so a rerun
on the same package version writes the same images. Openclip art is public domain (see
``/usr/share/doc/openclipart-png/copyright``).
"""

from __future__ import annotations

import argparse
import shutil
from pathlib import Path

from PIL import Image

from mclip_explorer.errors import BadImageError
from mclip_explorer.images import load_image

SOURCE = Path("/usr/share/openclipart/png")
TARGET = Path(__file__).parent / "sample"
CATEGORIES = ("animals", "buildings", "education", "electronics", "food", "geography", "office",
              "people", "plants", "recreation", "science", "tools", "transportation")
PER_CATEGORY = 24
SIDE = 256  # longest side in pixels: enough for thumbnails and every model's input
MAX_SOURCE_BYTES = 4_000_000  # skips the few giant (100+ megapixel) files
QUALITY = 80


def choose(source: Path, category: str, count: int) -> list[Path]:
    """Evenly spaced files of one category, in sorted order."""
    files = sorted(p for p in (source / category).rglob("*.png")
                   if p.stat().st_size <= MAX_SOURCE_BYTES)
    if len(files) <= count:
        return files
    step = len(files) / count
    return [files[int(i * step)] for i in range(count)]


def convert(src: Path, dst: Path) -> None:
    """Composite on white (done by ``load_image``), downscale, save as WebP."""
    image = load_image(src)
    image.thumbnail((SIDE, SIDE), Image.Resampling.LANCZOS)
    dst.parent.mkdir(parents=True, exist_ok=True)
    image.save(dst, format="WEBP", quality=QUALITY, method=6)


def main() -> None:
    """Write ``mclip_explorer/data/sample/<category>/<subcategory>/<name>.webp``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=SOURCE)
    parser.add_argument("--per-category", type=int, default=PER_CATEGORY)
    parser.add_argument("--out", type=Path, default=TARGET)
    args = parser.parse_args()
    if args.out.exists():
        shutil.rmtree(args.out)
    written = 0
    for category in CATEGORIES:
        for src in choose(args.source, category, args.per_category):
            relative = src.relative_to(args.source).with_suffix(".webp")
            try:
                convert(src, args.out / relative)
            except BadImageError as exc:  # a few package files are decompression bombs
                print(f"skipped {exc}")
                continue
            written += 1
    total = sum(p.stat().st_size for p in args.out.rglob("*.webp"))
    print(f"wrote {written} images, {total / 1e6:.1f} MB, to {args.out}")


if __name__ == "__main__":
    main()
