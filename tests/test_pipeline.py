"""TorchEncoder's image pipeline: worker processes, order, bad items, GPU-style JPEG decoding.

Runs on the CPU by default; ``MCLIP_TEST_DEVICE=cuda`` runs the same tests through the CUDA path
(pinned memory, non-blocking copies, autocast, nvJPEG).
"""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

torch = pytest.importorskip("torch")
transforms = pytest.importorskip("torchvision.transforms")

from mclip_explorer.errors import BadImageError, BadImageWarning  # noqa: E402
from mclip_explorer.images import load_image  # noqa: E402
from mclip_explorer.models.gpu_decode import (  # noqa: E402
    GpuPreprocess,
    decode_jpegs,
    describe_transform,
    preprocess,
    read_plain_jpeg,
)
from mclip_explorer.models.torch_base import TorchEncoder  # noqa: E402

DEVICE = os.environ.get("MCLIP_TEST_DEVICE", "cpu")
SIZE = 32
MEAN, STD = (0.48145466, 0.4578275, 0.40821073), (0.26862954, 0.26130258, 0.27577711)


class _LoggingTransform:
    """Picklable transform that leaves a file naming the process (and worker) that ran it."""

    def __init__(self, log_dir: Path, fail_on_width: int | None = None) -> None:
        self.log_dir = log_dir
        self.fail_on_width = fail_on_width
        self.inner = clip_transform()

    def __call__(self, image: Image.Image) -> Any:
        info = torch.utils.data.get_worker_info()
        worker = "main" if info is None else str(info.id)
        (self.log_dir / f"{os.getpid()}-{worker}").touch()
        if image.width == self.fail_on_width:
            raise RuntimeError("planted failure")
        return self.inner(image)


def clip_transform() -> Any:
    """The open_clip / OpenAI CLIP eval recipe at a tiny size."""
    return transforms.Compose([
        transforms.Resize(SIZE, interpolation=transforms.InterpolationMode.BICUBIC),
        transforms.CenterCrop(SIZE),
        transforms.ToTensor(),
        transforms.Normalize(MEAN, STD),
    ])


class TinyEncoder(TorchEncoder):
    """A linear image tower over ``SIZE`` x ``SIZE`` pixels: enough to see every pixel matter."""

    name = "tiny"
    dim = 16
    image_size = SIZE
    text_max_tokens = 8

    def __init__(self, transform: Any, device: str = DEVICE, **kwargs: Any) -> None:
        super().__init__(device=device, **kwargs)
        generator = torch.Generator().manual_seed(0)
        self.net = torch.nn.Linear(3 * SIZE * SIZE, self.dim)
        with torch.no_grad():
            self.net.weight.copy_(torch.randn(self.net.weight.shape, generator=generator))
            self.net.bias.copy_(torch.randn(self.dim, generator=generator))
        self.net.to(self.device)
        self.image_transform = transform

    def _forward_images(self, pixels: Any) -> Any:
        return self.net(pixels.flatten(1))

    def _forward_text(self, texts: list[str]) -> Any:
        return torch.ones(len(texts), self.dim, device=self.device)

    def _modules(self) -> dict[str, Any]:
        return {"net": self.net}


def _photo(seed: int, size: tuple[int, int]) -> Image.Image:
    """A gradient with noise: compresses like a photo, unlike flat colour or pure noise."""
    rng = np.random.default_rng(seed)
    width, height = size
    y, x = np.mgrid[0:height, 0:width]
    phase = rng.uniform(0, 255)
    pixels = np.stack([x / width * 255, y / height * 255, (x + y + phase) % 256], -1)
    pixels = pixels + rng.normal(0, 15, (height, width, 3))
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def photos(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    folder = tmp_path_factory.mktemp("photos")
    sizes = [(80, 60), (60, 80), (64, 64), (100, 50), (81, 61)]
    paths = []
    for i in range(11):
        path = folder / f"photo{i:02d}.jpg"
        _photo(i, sizes[i % len(sizes)]).save(path, quality=90)
        paths.append(path)
    return paths


def _failures(record: pytest.WarningsRecorder) -> dict[int, str]:
    found = [w.message for w in record if isinstance(w.message, BadImageWarning)]
    assert len(found) == 1, "expected exactly one BadImageWarning"
    return found[0].failures


def _cpu_encoder(tmp_path: Path, **kwargs: Any) -> TinyEncoder:
    log = tmp_path / "log"
    log.mkdir(exist_ok=True)
    encoder = TinyEncoder(_LoggingTransform(log, **kwargs))
    encoder.gpu_decode = False
    return encoder


# ---------------------------------------------------------------------------- processes
def test_preprocessing_runs_in_worker_processes(tmp_path: Path, photos: list[Path]) -> None:
    encoder = _cpu_encoder(tmp_path)
    encoder.encode_images(photos, batch_size=3, num_workers=2)
    ran = [name.split("-") for name in os.listdir(tmp_path / "log")]
    assert ran, "the transform never ran"
    assert all(pid != str(os.getpid()) for pid, _ in ran)
    assert {worker for _, worker in ran} == {"0", "1"}


def test_workers_and_main_process_give_identical_results(
    tmp_path: Path, photos: list[Path]
) -> None:
    encoder = _cpu_encoder(tmp_path)
    in_main = encoder.encode_images(photos, batch_size=4, num_workers=0)
    in_workers = encoder.encode_images(photos, batch_size=4, num_workers=2)
    np.testing.assert_array_equal(in_main, in_workers)
    np.testing.assert_allclose(np.linalg.norm(in_main, axis=1), 1.0, rtol=1e-5)


def test_input_order_is_preserved(tmp_path: Path, photos: list[Path]) -> None:
    encoder = _cpu_encoder(tmp_path)
    together = encoder.encode_images(photos[::-1], batch_size=4, num_workers=2)
    alone = np.concatenate([encoder.encode_images([p], num_workers=0) for p in photos[::-1]])
    # bf16 autocast on CUDA: another batch size may pick another GEMM kernel.
    np.testing.assert_allclose(together, alone, atol=1e-5 if DEVICE == "cpu" else 2e-2)
    assert len({row.tobytes() for row in together}) == len(photos)  # every image differs


def test_bad_items_are_reported_per_item(tmp_path: Path, photos: list[Path]) -> None:
    encoder = _cpu_encoder(tmp_path, fail_on_width=100)  # photos 3 and 8 are 100 px wide
    (tmp_path / "empty.jpg").write_bytes(b"")
    items: list[Any] = [*photos[:5], tmp_path / "empty.jpg", b"not an image", *photos[5:]]
    with pytest.warns(BadImageWarning) as record:
        vectors = encoder.encode_images(items, batch_size=4, num_workers=2)
    failures = _failures(record)
    assert sorted(failures) == [3, 5, 6, 10]
    assert "planted failure" in failures[3] and "RuntimeError" in failures[3]
    assert "empty file" in failures[5]
    assert "not an image" in failures[6]
    bad = np.zeros(len(items), dtype=bool)
    bad[sorted(failures)] = True
    assert np.isnan(vectors[bad]).all() and np.isfinite(vectors[~bad]).all()


def test_errors_raise_keeps_batches_already_done(tmp_path: Path, photos: list[Path]) -> None:
    encoder = _cpu_encoder(tmp_path)
    items: list[Any] = [*photos[:4], tmp_path / "missing.jpg", *photos[4:]]
    done = []
    with pytest.raises(BadImageError, match=r"missing\.jpg: file not found"):
        for batch in encoder.iter_image_batches(items, batch_size=2, num_workers=0,
                                                errors="raise"):
            done.append(batch)
    assert [list(b.indices) for b in done] == [[0, 1], [2, 3]]


@pytest.mark.parametrize("bad", [{"errors": "ignore"}, {"num_workers": -1}, {"batch_size": 0}])
def test_bad_arguments_are_refused(tmp_path: Path, photos: list[Path], bad: dict) -> None:
    encoder = _cpu_encoder(tmp_path)
    with pytest.raises(ValueError, match=next(iter(bad))):
        encoder.encode_images(photos, **bad)


# ------------------------------------------------------------------- device JPEG decoding
def test_describe_transform_recognises_only_the_clip_recipe() -> None:
    assert describe_transform(clip_transform()) == GpuPreprocess(SIZE, MEAN, STD, "bicubic")
    open_clip = pytest.importorskip("open_clip")
    recipe = open_clip.image_transform(288, is_train=False)
    assert describe_transform(recipe) == GpuPreprocess(
        288, open_clip.OPENAI_DATASET_MEAN, open_clip.OPENAI_DATASET_STD, "bicubic")
    unknown = [
        transforms.Compose([transforms.Resize((SIZE, SIZE)), transforms.ToTensor(),
                            transforms.Normalize(MEAN, STD)]),
        transforms.Compose([*clip_transform().transforms, transforms.RandomHorizontalFlip()]),
        transforms.Compose([transforms.Resize(SIZE, interpolation=transforms.InterpolationMode
                                              .NEAREST), transforms.CenterCrop(SIZE),
                            transforms.ToTensor(), transforms.Normalize(MEAN, STD)]),
        lambda image: image,
    ]
    assert all(describe_transform(t) is None for t in unknown)


def _jpeg_bytes(image: Image.Image, **params: Any) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", quality=90, **params)
    return buffer.getvalue()


def test_only_plain_jpegs_take_the_device_path(tmp_path: Path) -> None:
    photo = _photo(0, (40, 30))
    assert read_plain_jpeg(_jpeg_bytes(photo)) is not None
    assert read_plain_jpeg(_jpeg_bytes(photo.convert("L"))) is not None
    path = tmp_path / "plain.jpg"
    path.write_bytes(_jpeg_bytes(photo))
    assert read_plain_jpeg(path) == path.read_bytes()
    exif = Image.Exif()
    exif[0x0112] = 6
    png = io.BytesIO()
    photo.save(png, format="PNG")
    for other in (_jpeg_bytes(photo, exif=exif.tobytes()), _jpeg_bytes(photo.convert("CMYK")),
                  png.getvalue(), b"", _jpeg_bytes(photo)[:20], photo, tmp_path / "nope.jpg"):
        assert read_plain_jpeg(other) is None


@pytest.fixture(params=["torchvision", "nvimgcodec"])
def decoder(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """Each batched JPEG decoder by name (nvImageCodec runs its CPU backend on a CPU machine)."""
    from mclip_explorer.models import nvimgcodec_decode

    if request.param == "nvimgcodec" and not nvimgcodec_decode.available():
        pytest.fail("nvidia-nvimgcodec-cu13 is in the test extra: install it")
    monkeypatch.setenv(nvimgcodec_decode.DECODER_ENV, request.param)
    return str(request.param)


def test_device_preprocessing_matches_pil(photos: list[Path], decoder: str) -> None:
    spec = describe_transform(clip_transform())
    assert spec is not None
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in photos]
    decoded = decode_jpegs(datas, torch.device(DEVICE))
    assert all(d is not None for d in decoded)
    fast = preprocess(decoded, spec).cpu()  # type: ignore[arg-type]
    reference = torch.stack([clip_transform()(load_image(p)) for p in photos])
    difference = (fast - reference).abs()
    # Measured on CPU: at most one grey level (1/255/std = 0.015) from rounding in the resize.
    # nvJPEG's IDCT and chroma upsampling differ from libjpeg's more (H100, 256 photo-sized
    # JPEGs: max 0.41, mean 0.015; these small ones: max 0.34).
    limit = 0.02 if DEVICE == "cpu" else 0.6
    assert difference.max().item() <= limit
    assert difference.mean().item() <= (1e-3 if DEVICE == "cpu" else 0.03)


def test_device_decoding_end_to_end(tmp_path: Path, photos: list[Path], decoder: str) -> None:
    plain = _cpu_encoder(tmp_path)
    fast = TinyEncoder(clip_transform())
    fast.gpu_decode = True
    exif = Image.Exif()
    exif[0x0112] = 3  # upside down: must take the PIL path, which rotates it
    rotated = tmp_path / "rotated.jpg"
    rotated.write_bytes(_jpeg_bytes(_photo(50, (64, 48)), exif=exif.tobytes()))
    png = tmp_path / "photo.png"
    _photo(51, (70, 50)).save(png)
    truncated = tmp_path / "cut.jpg"
    truncated.write_bytes(photos[0].read_bytes()[:300])
    # Progressive and 4:4:4 JPEGs take the device path too (nvJPEG batches may refuse them; then
    # they are decoded one by one).
    progressive = tmp_path / "progressive.jpg"
    progressive.write_bytes(_jpeg_bytes(_photo(52, (72, 54)), progressive=True))
    full_chroma = tmp_path / "444.jpg"
    full_chroma.write_bytes(_jpeg_bytes(_photo(53, (66, 50)), subsampling=0))
    items: list[Any] = [*photos[:6], rotated, png, truncated, progressive, full_chroma,
                        *photos[6:]]
    with pytest.warns(BadImageWarning) as record:
        expected = plain.encode_images(items, batch_size=4, num_workers=2)
    with pytest.warns(BadImageWarning) as record_fast:
        got = fast.encode_images(items, batch_size=4, num_workers=2)
    assert _failures(record_fast).keys() == _failures(record).keys() == {8}
    assert "truncated" in _failures(record_fast)[8]
    good = np.isfinite(expected).all(axis=1)
    cosine = (got[good] * expected[good]).sum(axis=1)
    assert cosine.min() > (0.9999 if DEVICE == "cpu" else 0.99)
    # The PIL-path items (rotated JPEG, PNG) are bit-identical whichever path the batch took.
    tolerance = 1e-6 if DEVICE == "cpu" else 1e-2
    np.testing.assert_allclose(got[[6, 7]], expected[[6, 7]], atol=tolerance)


def test_transformers_clip_processor_is_recognised_and_matched(photos: list[Path]) -> None:
    transformers = pytest.importorskip("transformers")
    from mclip_explorer.models.st_clip import HFImageTransform

    processor = transformers.CLIPImageProcessor(size={"shortest_edge": SIZE},
                                                 crop_size={"height": SIZE, "width": SIZE})
    transform = HFImageTransform(processor)
    spec = describe_transform(transform)
    assert spec == GpuPreprocess(SIZE, MEAN, STD, "bicubic")
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in photos]
    fast = preprocess(decode_jpegs(datas, torch.device("cpu")), spec)  # type: ignore[arg-type]
    reference = torch.stack([transform(load_image(p)) for p in photos])
    assert (fast - reference).abs().max().item() <= 0.02  # one grey level, as for open_clip
    processor.do_center_crop = False
    assert describe_transform(HFImageTransform(processor)) is None


def test_nvimgcodec_decodes_exactly_as_pil_and_marks_failures(photos: list[Path]) -> None:
    from mclip_explorer.models import nvimgcodec_decode

    datas: list[Any] = [p.read_bytes() for p in photos[:3]]
    datas.insert(1, b"\xff\xd8\xff not a jpeg")
    datas.append(torch.frombuffer(bytearray(photos[3].read_bytes()), dtype=torch.uint8))
    decoded = nvimgcodec_decode.decode(datas, torch.device("cpu"))
    assert decoded[1] is None
    for got, path in zip([decoded[0], decoded[2], decoded[3], decoded[4]],
                         [*photos[:3], photos[3]], strict=True):
        expected = torch.from_numpy(np.array(Image.open(path).convert("RGB"))).permute(2, 0, 1)
        assert got is not None and got.dtype == torch.uint8
        assert torch.equal(got, expected)  # the same libjpeg-turbo decode, planar RGB


def test_decoder_choice_is_validated(monkeypatch: pytest.MonkeyPatch, photos: list[Path]) -> None:
    from mclip_explorer.models import nvimgcodec_decode

    datas = [torch.frombuffer(bytearray(photos[0].read_bytes()), dtype=torch.uint8)]
    monkeypatch.setenv(nvimgcodec_decode.DECODER_ENV, "dali")
    with pytest.raises(ValueError, match="MCLIP_EXPLORER_GPU_DECODER='dali'"):
        decode_jpegs(datas, torch.device("cpu"))
    monkeypatch.setenv(nvimgcodec_decode.DECODER_ENV, "nvimgcodec")
    monkeypatch.setattr(nvimgcodec_decode, "available", lambda: False)
    with pytest.raises(ImportError, match=r"mclip-explorer\[gpu\]"):
        decode_jpegs(datas, torch.device("cpu"))
