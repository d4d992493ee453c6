"""Turn whatever a user calls an image into an RGB ``PIL.Image``, or a clear reason why not.

Runs inside DataLoader worker processes, so it must stay picklable and import only PIL/NumPy.
"""

from __future__ import annotations

import functools
import io
import struct
import warnings
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from mclip_explorer.errors import BadImageError

ImageInput = Union[str, Path, bytes, bytearray, memoryview, Image.Image]

# Above this a decode is refused, not attempted: a 40k x 40k PNG would take gigabytes.
MAX_PIXELS = 178_956_970  # PIL's own default limit (2 x its warning threshold)

# Every extension a folder scan picks up: what Pillow decodes, what the optional [formats]
# plugins decode (AVIF, HEIC), and what only looks like an image (RAW, SVG, PSD...): those are
# listed as failed items with their reason instead of being skipped silently.
IMAGE_EXTENSIONS = frozenset({
    ".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".apng", ".gif", ".bmp", ".dib", ".tif",
    ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".ico", ".tga", ".dds", ".psd",
    ".jp2", ".j2k", ".jpx", ".avif", ".heic", ".heif", ".hif", ".jxl", ".svg", ".eps",
    ".xcf", ".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2", ".raf",
})
FORMATS_HINT = "install mclip-explorer[formats]"
# ISO-BMFF "ftyp" brands: AVIF, then HEIF/HEIC (HEVC-coded) images.
_AVIF_BRANDS = (b"avif", b"avis")
_HEIF_BRANDS = (b"heic", b"heix", b"hevc", b"hevx", b"heim", b"heis", b"mif1", b"msf1")

BACKGROUND = (255, 255, 255)


def load_image(item: ImageInput) -> Image.Image:
    """Decode one image to RGB, honouring EXIF orientation and compositing transparency on white.

    Args:
        item: A path, encoded image bytes, or a ``PIL.Image``.

    Returns:
        A fully loaded RGB image (a new object; a PIL input is never modified).

    Raises:
        BadImageError: The item is missing, empty, truncated, not an image, or too large.
    """
    try:
        image = open_image(item)
        try:
            with warnings.catch_warnings():
                # A bomb *warning* is still a decode we allow; the error above MAX_PIXELS is not.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                image.load()
                return to_rgb(ImageOps.exif_transpose(image))
        finally:
            if image is not item:
                # Releases the file handle PIL keeps for multi-frame formats and failed decodes.
                image.close()
    except BadImageError:
        raise
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"image too large to decode safely ({exc})", item) from None
    except UnidentifiedImageError:
        raise BadImageError("not an image (format not recognised)", item) from None
    except MemoryError:
        raise BadImageError("out of memory while decoding", item) from None
    except (OSError, SyntaxError, ValueError, EOFError, struct.error) as exc:
        # PIL reports truncated and corrupt data as OSError/SyntaxError/EOFError with its own
        # message; a truncated file is the usual cause, so say so.
        raise BadImageError(f"cannot decode image (corrupt or truncated): {exc}", item) from None


def open_image(item: ImageInput) -> Image.Image:
    """Open an image lazily (header only) after the cheap checks; the pixels are not decoded.

    Raises:
        BadImageError: Missing or empty file, empty bytes, unsupported type, data PIL does not
            recognise, or more pixels than :data:`MAX_PIXELS`.
    """
    if isinstance(item, Image.Image):
        _check_pixels(item, item)
        return item
    if isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
        if not data:
            raise BadImageError("empty bytes", item)
        return _checked_open(io.BytesIO(data), item)
    if isinstance(item, (str, Path)):
        path = Path(item)
        if not path.exists():
            raise BadImageError("file not found", item)
        if path.is_dir():
            raise BadImageError("is a folder, not an image file", item)
        if path.stat().st_size == 0:
            raise BadImageError("empty file (0 bytes)", item)
        return _checked_open(path, item)
    raise BadImageError(
        f"unsupported image type {type(item).__name__} (expected a path, bytes or PIL image)",
        None,
    )


def _checked_open(source: io.BytesIO | Path, item: ImageInput) -> Image.Image:
    register_plugins()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(source)
    except PermissionError:
        raise BadImageError("permission denied", item) from None
    except Image.DecompressionBombError as exc:
        raise BadImageError(f"image too large to decode safely ({exc})", item) from None
    except UnidentifiedImageError:
        raise BadImageError(_unrecognised(source), item) from None
    try:
        _check_pixels(image, item)
    except BadImageError:
        image.close()
        raise
    return image


def _check_pixels(image: Image.Image, item: ImageInput) -> None:
    # Read at call time, not import time, so a caller (or a test) can lower the limit.
    limit = MAX_PIXELS
    width, height = image.size
    if width * height > limit:
        raise BadImageError(
            f"image too large to decode safely ({width}x{height} pixels exceeds the "
            f"limit of {limit})",
            item,
        )


def to_rgb(image: Image.Image) -> Image.Image:
    """Convert any PIL mode to RGB; alpha (and palette/colour-key transparency) goes on white."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        return _high_bit_depth_to_rgb(image)
    has_key = "transparency" in image.info and image.mode in ("P", "L", "RGB", "1")
    if image.mode == "RGB" and not has_key:
        return image.copy()
    if image.mode in ("P", "PA") or has_key:
        # Palette and colour-key transparency live in info["transparency"]; RGBA keeps it.
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "RGBa", "La"):
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, BACKGROUND)
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    # CMYK (PIL undoes Adobe's inverted CMYK), YCbCr, L, 1, HSV, LAB: PIL converts well enough
    # for CLIP inputs; a mode it cannot convert raises ValueError, reported as a bad item.
    return image.convert("RGB")


def _high_bit_depth_to_rgb(image: Image.Image) -> Image.Image:
    # PIL's convert("L") clips 16-bit values at 255 instead of scaling them.
    array = np.asarray(image, dtype=np.float64)
    finite = array[np.isfinite(array)]
    lo, hi = (float(finite.min()), float(finite.max())) if finite.size else (0.0, 0.0)
    if image.mode.startswith("I;16") or (image.mode == "I" and lo >= 0 and hi <= 65535):
        # 16-bit data (PNG opens as I;16, older Pillow as I): the full range is 0..65535, so a
        # dark image stays dark rather than being stretched.
        lo, hi = 0.0, 65535.0 if hi > 255 or image.mode.startswith("I;16") else 255.0
    elif image.mode == "F" and lo >= 0 and hi <= 1:
        lo, hi = 0.0, 1.0
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    grey = np.clip(np.nan_to_num((array - lo) * scale), 0, 255).round().astype(np.uint8)
    return Image.fromarray(grey).convert("RGB")


@functools.cache
def register_plugins() -> tuple[str, ...]:
    """Register the optional decoders of ``mclip-explorer[formats]`` that are installed.

    ``pillow-heif`` adds HEIC/HEIF; ``pillow-avif-plugin`` adds AVIF where Pillow itself lacks
    it (Pillow 11.2+ wheels decode AVIF natively). Runs once per process, DataLoader workers
    included. Returns the formats added.
    """
    from PIL import features

    added = []
    try:
        import pillow_heif

        pillow_heif.register_heif_opener()
        added.append("HEIF")
    except ImportError:
        pass
    if not features.check("avif"):
        try:
            import pillow_avif  # noqa: F401  (registers the AVIF plugin on import)

            added.append("AVIF")
        except ImportError:
            pass
    return tuple(added)


def _unrecognised(source: io.BytesIO | Path) -> str:
    """Why Pillow could not identify a file: a missing optional decoder, or not an image."""
    try:
        if isinstance(source, Path):
            with source.open("rb") as handle:
                head = handle.read(64)
        else:
            head = source.getvalue()[:64]
    except OSError:
        head = b""
    if head[4:8] == b"ftyp":
        brands = head[8:12] + head[16:min(len(head), int.from_bytes(head[:4], "big"))]
        brands_list = [brands[i:i + 4] for i in range(0, len(brands), 4)]
        if any(b in _AVIF_BRANDS for b in brands_list):
            return (f"AVIF image: this Pillow cannot decode AVIF; {FORMATS_HINT} "
                    "(pillow-avif-plugin)")
        if any(b in _HEIF_BRANDS for b in brands_list):
            return f"HEIC/HEIF image: decoding it needs pillow-heif; {FORMATS_HINT}"
    suffix = source.suffix.lower() if isinstance(source, Path) else ""
    if suffix in _UNDECODABLE:
        return f"{_UNDECODABLE[suffix]} files are not supported (not decodable by Pillow)"
    return "not an image (format not recognised)"


_UNDECODABLE = {".svg": "SVG (vector)", ".xcf": "GIMP XCF", ".jxl": "JPEG XL",
                **dict.fromkeys((".dng", ".cr2", ".cr3", ".nef", ".arw", ".orf", ".rw2",
                                 ".raf"), "camera RAW")}


def is_image_path(path: Path) -> bool:
    """Whether a file name has one of the image extensions a folder scan picks up."""
    return path.suffix.lower() in IMAGE_EXTENSIONS


# Truncated JPEGs must fail loudly rather than decode as grey blocks.
ImageFile.LOAD_TRUNCATED_IMAGES = False
