"""images.load_image: every PIL mode and container quirk of a real folder, and every bad item."""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mclip_explorer import images
from mclip_explorer.errors import BadImageError, BadImageWarning
from mclip_explorer.images import load_image

RED = (255, 0, 0)
BLUE = (0, 0, 255)
WHITE = (255, 255, 255)


def _save(image: Image.Image, path: Path, **params: object) -> Path:
    image.save(path, **params)
    return path


def _noise_jpeg(path: Path, size: tuple[int, int] = (64, 48)) -> Path:
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (size[1], size[0], 3), dtype=np.uint8)
    return _save(Image.fromarray(pixels), path, quality=90)


def _mode(path: Path) -> str:
    with Image.open(path) as image:
        return image.mode


def _pixel(image: Image.Image, xy: tuple[int, int]) -> tuple[int, ...]:
    value = image.getpixel(xy)
    assert isinstance(value, tuple)
    return value


def _close(actual: tuple[int, ...], expected: tuple[int, ...], tol: int = 12) -> bool:
    return all(abs(a - e) <= tol for a, e in zip(actual, expected, strict=True))


# ---------------------------------------------------------------------------- good images
def test_exif_orientation_is_applied(tmp_path: Path) -> None:
    image = Image.new("RGB", (40, 20), BLUE)
    image.paste(RED, (0, 0, 20, 20))  # left half red
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    path = _save(image, tmp_path / "rotated.jpg", exif=exif.tobytes(), quality=95)
    out = load_image(path)
    assert out.size == (20, 40)
    # Turning clockwise puts the left edge on top.
    assert _close(_pixel(out, (10, 5)), RED)
    assert _close(_pixel(out, (10, 35)), BLUE)


def test_palette_with_transparency_composites_on_white(tmp_path: Path) -> None:
    image = Image.new("P", (8, 8), 0)
    image.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    image.paste(1, (0, 0, 4, 8))  # left half palette entry 1 (red), right half entry 0
    path = _save(image, tmp_path / "palette.png", transparency=0)
    out = load_image(path)
    assert out.mode == "RGB"
    assert _pixel(out, (1, 1)) == RED
    assert _pixel(out, (6, 1)) == WHITE  # transparent black -> background, not black


def test_palette_without_transparency_keeps_colours(tmp_path: Path) -> None:
    image = Image.new("P", (4, 4), 1)
    image.putpalette([0, 0, 0, 0, 0, 255] + [0] * 762)
    assert _pixel(load_image(_save(image, tmp_path / "p.png")), (0, 0)) == BLUE


def test_rgb_colour_key_transparency(tmp_path: Path) -> None:
    image = Image.new("RGB", (4, 4), RED)
    image.paste(BLUE, (0, 0, 2, 4))
    out = load_image(_save(image, tmp_path / "key.png", transparency=RED))
    assert _pixel(out, (0, 0)) == BLUE
    assert _pixel(out, (3, 0)) == WHITE


@pytest.mark.parametrize("mode", ["RGBA", "LA"])
def test_alpha_composites_on_white(tmp_path: Path, mode: str) -> None:
    ink = (200, 0, 0, 255) if mode == "RGBA" else (40, 255)
    clear = (200, 0, 0, 0) if mode == "RGBA" else (40, 0)
    image = Image.new(mode, (8, 8), clear)
    image.paste(Image.new(mode, (4, 8), ink), (0, 0))
    out = load_image(_save(image, tmp_path / f"{mode}.png"))
    assert out.mode == "RGB"
    assert _pixel(out, (1, 1)) == ((200, 0, 0) if mode == "RGBA" else (40, 40, 40))
    assert _pixel(out, (6, 1)) == WHITE


def test_half_transparent_blends_with_white() -> None:
    out = load_image(Image.new("RGBA", (2, 2), (0, 0, 0, 128)))
    assert _close(_pixel(out, (0, 0)), (127, 127, 127), tol=1)


def test_16_bit_png_scales_full_range(tmp_path: Path) -> None:
    values = np.array([[0, 32896, 65535]], dtype=np.uint16)
    path = _save(Image.fromarray(values), tmp_path / "deep.png")
    assert _mode(path).startswith("I")
    out = load_image(path)
    assert [_pixel(out, (x, 0)) for x in range(3)] == [(0, 0, 0), (128, 128, 128), WHITE]


def test_16_bit_dark_image_is_not_stretched(tmp_path: Path) -> None:
    values = np.array([[0, 1000, 2570]], dtype=np.uint16)  # 2570 / 65535 * 255 = 10
    out = load_image(_save(Image.fromarray(values), tmp_path / "dark.png"))
    assert _pixel(out, (2, 0)) == (10, 10, 10)


def test_float_image_in_unit_range() -> None:
    out = load_image(Image.fromarray(np.array([[0.0, 0.5, 1.0]], dtype=np.float32)))
    assert [_pixel(out, (x, 0))[0] for x in range(3)] == [0, 128, 255]


def test_cmyk_jpeg(tmp_path: Path) -> None:
    path = _save(Image.new("CMYK", (16, 16), (0, 255, 255, 0)), tmp_path / "cmyk.jpg", quality=95)
    assert _mode(path) == "CMYK"
    out = load_image(path)
    assert out.mode == "RGB"
    assert _close(_pixel(out, (8, 8)), RED, tol=20)


def test_greyscale_and_bilevel(tmp_path: Path) -> None:
    grey = load_image(_save(Image.new("L", (4, 4), 100), tmp_path / "grey.png"))
    assert _pixel(grey, (0, 0)) == (100, 100, 100)
    bilevel = Image.new("1", (4, 4), 0)
    bilevel.paste(1, (0, 0, 2, 4))
    out = load_image(_save(bilevel, tmp_path / "bw.png"))
    assert _pixel(out, (0, 0)) == WHITE
    assert _pixel(out, (3, 0)) == (0, 0, 0)


def test_paths_bytes_and_pil_give_the_same_image(tmp_path: Path) -> None:
    path = _noise_jpeg(tmp_path / "noise.jpg")
    data = path.read_bytes()
    reference = np.asarray(load_image(path))
    with Image.open(path) as opened:
        for item in (str(path), data, bytearray(data), memoryview(data), opened):
            np.testing.assert_array_equal(np.asarray(load_image(item)), reference)


def test_pil_input_is_not_modified() -> None:
    rgba = Image.new("RGBA", (4, 4), (1, 2, 3, 0))
    out = load_image(rgba)
    assert rgba.mode == "RGBA" and rgba.getpixel((0, 0)) == (1, 2, 3, 0)
    rgb = Image.new("RGB", (4, 4), RED)
    assert load_image(rgb) is not rgb
    assert out.mode == "RGB"


# ----------------------------------------------------------------------------- bad images
def _png_claiming(width: int, height: int) -> bytes:
    """A tiny PNG whose header claims ``width x height`` pixels."""
    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(
            ">I", zlib.crc32(kind + body) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header)
            + chunk(b"IDAT", zlib.compress(b"\0" * 16)) + chunk(b"IEND", b""))


def _bad_items(tmp_path: Path) -> dict[str, tuple[object, str]]:
    """Name -> (item, a fragment its reason must contain)."""
    jpeg = _noise_jpeg(tmp_path / "whole.jpg").read_bytes()
    png_buffer = io.BytesIO()
    Image.fromarray(np.random.default_rng(1).integers(0, 256, (64, 64, 3), dtype=np.uint8)).save(
        png_buffer, format="PNG")
    png = png_buffer.getvalue()
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "notes.jpg").write_text("this is not an image\n")
    (tmp_path / "cut.jpg").write_bytes(jpeg[: len(jpeg) * 2 // 3])
    (tmp_path / "cut.png").write_bytes(png[: len(png) // 2])
    (tmp_path / "bomb.png").write_bytes(_png_claiming(100_000, 100_000))
    (tmp_path / "folder.jpg").mkdir()
    return {
        "missing": (tmp_path / "nope.jpg", "file not found"),
        "zero-byte": (tmp_path / "empty.jpg", "empty file"),
        "empty bytes": (b"", "empty bytes"),
        "not an image": (tmp_path / "notes.jpg", "not an image"),
        "garbage bytes": (b"\x00garbage" * 10, "not an image"),
        "truncated jpeg": (tmp_path / "cut.jpg", "truncated"),
        "truncated png": (tmp_path / "cut.png", "truncated"),
        "bomb": (tmp_path / "bomb.png", "too large"),
        "folder": (tmp_path / "folder.jpg", "folder"),
        "wrong type": (12345, "unsupported image type int"),
    }


@pytest.mark.parametrize(
    "name",
    ["missing", "zero-byte", "empty bytes", "not an image", "garbage bytes", "truncated jpeg",
     "truncated png", "bomb", "folder", "wrong type"],
)
def test_bad_item_raises_with_reason(tmp_path: Path, name: str) -> None:
    item, fragment = _bad_items(tmp_path)[name]
    with pytest.raises(BadImageError) as info:
        load_image(item)  # type: ignore[arg-type]
    assert fragment in info.value.reason
    assert isinstance(info.value, ValueError)  # callers may catch it as a ValueError


def test_pixel_limit_can_be_lowered(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = _noise_jpeg(tmp_path / "big.jpg", size=(64, 48))
    assert load_image(path).size == (64, 48)
    monkeypatch.setattr(images, "MAX_PIXELS", 64 * 48 - 1)
    with pytest.raises(BadImageError, match=r"64x48 pixels exceeds the limit of 3071"):
        load_image(path)
    with Image.open(path) as opened, pytest.raises(BadImageError, match="too large"):
        load_image(opened)  # an already-open PIL image is checked too


def test_error_message_names_the_item(tmp_path: Path) -> None:
    with pytest.raises(BadImageError, match=r"nope\.jpg: file not found"):
        load_image(tmp_path / "nope.jpg")
    with pytest.raises(BadImageError, match=r"<3 bytes>"):
        load_image(b"abc")


def test_batch_reports_every_bad_item_and_keeps_going(tmp_path: Path, toy_encoder) -> None:
    bad = [item for item, _ in _bad_items(tmp_path).values()]
    good = _noise_jpeg(tmp_path / "good.jpg")
    batch = [good, *bad, good]
    with pytest.warns(BadImageWarning) as record:
        vectors = toy_encoder.encode_images(batch, batch_size=4)
    failures = record[0].message.failures
    assert sorted(failures) == list(range(1, len(bad) + 1))
    assert all(isinstance(reason, str) and reason for reason in failures.values())
    assert np.isnan(vectors[1 : len(bad) + 1]).all()
    np.testing.assert_allclose(np.linalg.norm(vectors[[0, -1]], axis=1), 1.0, rtol=1e-5)
    with pytest.raises(BadImageError, match="file not found"):
        toy_encoder.encode_images(batch, errors="raise")
