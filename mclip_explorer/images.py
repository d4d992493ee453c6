"""Turn whatever a user calls an image into an RGB ``PIL.Image``, or a clear reason why not.

Runs inside DataLoader worker processes, so it must stay picklable and import only PIL/NumPy.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mclip_explorer.errors import BadImageError

ImageInput = Union[str, Path, bytes, bytearray, memoryview, Image.Image]

# Above this a decode is refused, not attempted: a 40k x 40k PNG would take gigabytes.
MAX_PIXELS = 178_956_970  # PIL's own default limit (2 x its warning threshold)

IMAGE_EXTENSIONS = frozenset(
    {".jpg", ".jpeg", ".png", ".gif", ".bmp", ".tif", ".tiff", ".webp", ".ppm", ".pgm"}
)

BACKGROUND = (255, 255, 255)


def load_image(item: ImageInput) -> Image.Image:
    """Decode one image to RGB, honouring EXIF orientation and compositing transparency on white.

    Args:
        item: A path, encoded image bytes, or a ``PIL.Image``.

    Returns:
        A fully loaded RGB image.

    Raises:
        BadImageError: The item is missing, empty, truncated, not an image, or too large.
    """
    try:
        image = _open(item)
        with warnings.catch_warnings():
            # A bomb *warning* is still a decode we allow; the error above MAX_PIXELS is not.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image.load()
            image = ImageOps.exif_transpose(image)
        return to_rgb(image)
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"image too large to decode safely ({exc})", item) from None
    except UnidentifiedImageError:
        raise BadImageError("not an image (format not recognised)", item) from None
    except (OSError, SyntaxError, ValueError) as exc:
        # PIL reports truncated and corrupt data as OSError/SyntaxError with its own message.
        raise BadImageError(f"cannot decode image: {exc}", item) from None


def _open(item: ImageInput) -> Image.Image:
    if isinstance(item, Image.Image):
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise BadImageError("empty bytes", item)
        return _checked_open(io.BytesIO(data))
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.exists():
            raise BadImageError("file not found", item)
        if path.is_dir():
            raise BadImageError("is a folder, not an image file", item)
        if path.stat().st_size == 0:
            raise BadImageError("empty file (0 bytes)", item)
        return _checked_open(path)
    raise BadImageError(f"unsupported image type {type(item).__name__}", None)


def _checked_open(source: io.BytesIO | Path) -> Image.Image:
    image = Image.open(source)
    width, height = image.size
    if width * height > MAX_PIXELS:
        raise Image.DecompressionBombError(f"{width}x{height} pixels exceeds {MAX_PIXELS}")
    return image


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; alpha is composited onto a white background."""
    if image.mode == "RGB":
        return image
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    if image.mode == "P":
        # Palette images may carry transparency in info["transparency"]; RGBA keeps it.
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # CMYK, YCbCr, L, 1, HSV, LAB: PIL's converters are exact enough for CLIP inputs.
    return image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    # PIL's convert("L") clips 16-bit values at 255 instead of scaling; scale by the real range.
    array = np.asarray(image, dtype=np.float64)
    lo, hi = float(array.min()), float(array.max())
    if image.mode.startswith("I;16"):
        lo, hi = 0.0, 65535.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    grey = np.clip((array - lo) * scale, 0, 255).astype(np.uint8)
    return Image.fromarray(grey, mode="L").convert("RGB")


def is_image_path(path: Path) -> bool:
    """Whether a file name has one of the image extensions a folder scan picks up."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


# Truncated JPEGs must fail loudly rather than decode as grey blocks.
ImageFile.LOAD_TRUNCATED_IMAGES = False
