"""JPEG decoding and preprocessing on the GPU, for the common "resize, centre crop, normalise" case.

On a fast GPU, decoding JPEGs with PIL in worker processes is what limits throughput (a ViT-B/32
forward runs at about 18,000 images/s on an H100; PIL decodes and resizes about 100 per core). So
on CUDA, workers only *read* the bytes of plain JPEGs and check their header; decode threads in the
main process decode whole batches with nvJPEG (``torchvision.io.decode_jpeg(list,
device="cuda")``) and resize, crop and normalise them on the GPU. Everything else (PNG, CMYK or
EXIF-rotated JPEGs, anything nvJPEG rejects) takes the CPU path, so every bad item keeps its exact
reason.

Only preprocessing that :func:`describe_transform` recognises is moved; anything else stays on the
CPU. torch and torchvision are imported lazily: importing this module loads neither.
"""

from __future__ import annotations

import io
import os
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PIL import Image

from mclip_explorer import images as _images

if TYPE_CHECKING:
    import torch

GPU_DECODE_ENV = "MCLIP_EXPLORER_GPU_DECODE"
# nvJPEG needs about 3 bytes of device memory per pixel and more for scratch; larger JPEGs are
# rare in photo collections and go through PIL instead.
GPU_MAX_PIXELS = 6000 * 6000
_JPEG_MAGIC = b"\xff\xd8\xff"
_ORIENTATION = 0x0112


@dataclass(frozen=True)
class GpuPreprocess:
    """Resize the shortest side to ``size``, centre-crop ``size`` x ``size``, scale, normalise.

    This is what CLIP, open_clip and CLIPImageProcessor do at inference; a model family whose
    ``image_transform`` is not a recognisable torchvision ``Compose`` may set its encoder's
    ``image_preprocess`` attribute to one of these to opt in.

    Attributes:
        size: Side of the square the tower sees.
        mean: Per-channel mean subtracted after scaling to [0, 1].
        std: Per-channel standard deviation divided by.
        interpolation: ``"bicubic"`` or ``"bilinear"`` (antialiased, as PIL does).
    """

    size: int
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    interpolation: str = "bicubic"


def describe_transform(transform: Callable[[Any], Any]) -> GpuPreprocess | None:
    """Recognise the CLIP eval recipe in a transform, or return ``None``.

    Two forms are recognised: torchvision's ``Compose([Resize(s), CenterCrop(s), <to RGB>,
    ToTensor(), Normalize(m, sd)])`` (open_clip), and a wrapper whose ``image_processor`` is a
    transformers CLIP-style processor configured the same way (sentence-transformers, AltCLIP).
    Anything else returns ``None``, so an unknown transform is never approximated.
    """
    processor = getattr(transform, "image_processor", None)
    if processor is not None:
        return _describe_image_processor(processor)
    try:
        from torchvision import transforms
    except ImportError:
        return None
    if not isinstance(transform, transforms.Compose):
        return None
    resize = crop = normalize = None
    to_tensor = False
    for step in transform.transforms:
        if isinstance(step, transforms.Resize):
            resize = step
        elif isinstance(step, transforms.CenterCrop):
            crop = step
        elif isinstance(step, transforms.ToTensor):
            to_tensor = True
        elif isinstance(step, transforms.Normalize):
            normalize = step
        elif not _is_rgb_conversion(step):
            return None
    if resize is None or crop is None or normalize is None or not to_tensor:
        return None
    size = resize.size if isinstance(resize.size, int) else list(resize.size)
    if isinstance(size, list):
        if len(size) != 1:
            return None  # a fixed (h, w) resize distorts the aspect ratio: not this recipe
        size = size[0]
    crop_h, crop_w = crop.size
    mode = getattr(resize.interpolation, "value", str(resize.interpolation))
    if crop_h != crop_w or crop_h != size or resize.max_size is not None:
        return None  # a fixed (h, w) crop or a crop smaller than the resize: not handled here
    if mode not in ("bicubic", "bilinear") or resize.antialias is False:
        return None
    mean, std = tuple(float(v) for v in normalize.mean), tuple(float(v) for v in normalize.std)
    if len(mean) != 3 or len(std) != 3:
        return None
    return GpuPreprocess(size=size, mean=mean, std=std, interpolation=mode)  # type: ignore[arg-type]


def _describe_image_processor(processor: Any) -> GpuPreprocess | None:
    """A transformers image processor doing shortest-edge resize, square centre crop, mean/std."""

    def field(container: Any, key: str) -> Any:
        return container.get(key) if isinstance(container, dict) else getattr(container, key, None)

    size = field(getattr(processor, "size", None) or {}, "shortest_edge")
    crop = getattr(processor, "crop_size", None) or {}
    # PIL's resampling constants (3 bicubic, 2 bilinear) or an InterpolationMode.
    resample = getattr(processor, "resample", None)
    mode = {3: "bicubic", 2: "bilinear"}.get(resample) if isinstance(resample, int) else getattr(
        resample, "value", None)
    mean, std = getattr(processor, "image_mean", None), getattr(processor, "image_std", None)
    plain = (getattr(processor, "do_resize", False) and getattr(processor, "do_center_crop", False)
             and getattr(processor, "do_rescale", False)
             and getattr(processor, "do_normalize", False)
             and abs(float(getattr(processor, "rescale_factor", 0)) - 1 / 255) < 1e-9)
    if not plain or not isinstance(size, int) or mode not in ("bicubic", "bilinear"):
        return None
    if field(crop, "height") != size or field(crop, "width") != size:
        return None
    if mean is None or std is None or len(mean) != 3 or len(std) != 3:
        return None
    return GpuPreprocess(size=size, mean=tuple(float(v) for v in mean),  # type: ignore[arg-type]
                         std=tuple(float(v) for v in std),  # type: ignore[arg-type]
                         interpolation=mode)


def _is_rgb_conversion(step: object) -> bool:
    name = getattr(step, "__name__", type(step).__name__).lower()
    return "rgb" in name or "convertmode" in name


def gpu_decode_enabled(default: bool) -> bool:
    """``$MCLIP_EXPLORER_GPU_DECODE`` (0/1) overrides ``default``."""
    value = os.environ.get(GPU_DECODE_ENV, "").strip().lower()
    if value in ("0", "false", "no", "off"):
        return False
    if value in ("1", "true", "yes", "on"):
        return True
    return default


# ------------------------------------------------------------------------- worker side
def read_plain_jpeg(item: object) -> bytes | None:
    """The bytes of ``item`` if it is a JPEG nvJPEG decodes exactly as PIL would, else ``None``.

    Runs in worker processes. Reads only the header: baseline/progressive RGB or greyscale JPEGs
    with no EXIF rotation and a sane size qualify; CMYK (PIL undoes Adobe's inversion, nvJPEG
    does not), rotated, oversized and broken files return ``None`` and take the CPU path.
    """
    if isinstance(item, (str, Path)):
        try:
            data = Path(item).read_bytes()
        except OSError:
            return None
    elif isinstance(item, (bytes, bytearray, memoryview)):
        data = bytes(item)
    else:
        return None
    if not data.startswith(_JPEG_MAGIC):
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with Image.open(io.BytesIO(data)) as image:
                width, height = image.size
                if image.format != "JPEG" or image.mode not in ("RGB", "L"):
                    return None
                if width * height > min(GPU_MAX_PIXELS, _images.MAX_PIXELS):
                    return None
                if image.getexif().get(_ORIENTATION, 1) not in (0, 1):
                    return None
    except Exception:  # noqa: BLE001 - any header trouble: let the CPU path name the reason
        return None
    return data


# ---------------------------------------------------------------------------- main side
def decode_jpegs(
    datas: Sequence[torch.Tensor], device: torch.device
) -> list[torch.Tensor | None]:
    """Decode JPEG byte tensors to ``uint8 [3, H, W]`` on ``device``; ``None`` where one fails.

    nvImageCodec (hardware JPEG engine first) decodes the batch when it is installed; otherwise
    torchvision's nvJPEG batch decode is tried first and, if it rejects the batch, items are
    retried one by one so a single bad file costs only itself.
    """
    from torchvision.io import ImageReadMode, decode_jpeg

    from mclip_explorer.models import nvimgcodec_decode

    if not datas:
        return []
    choice = nvimgcodec_decode.chosen_decoder()
    if choice == "nvimgcodec" and not nvimgcodec_decode.available():
        raise ImportError(f"{nvimgcodec_decode.DECODER_ENV}=nvimgcodec needs nvImageCodec: "
                          "pip install 'mclip-explorer[gpu]'")
    # auto: nvImageCodec on CUDA when installed; on the CPU (tests) only when asked for by name.
    auto = choice == "auto" and device.type == "cuda" and nvimgcodec_decode.available()
    if choice == "nvimgcodec" or auto:
        return nvimgcodec_decode.decode(datas, device)
    with warnings.catch_warnings():
        # torchvision >= 0.29 marks its decoders deprecated in favour of TorchCodec; they work.
        warnings.simplefilter("ignore", DeprecationWarning)
        try:
            return list(decode_jpeg(list(datas), mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            pass
        out: list[torch.Tensor | None] = []
        for data in datas:
            try:
                out.append(decode_jpeg(data, mode=ImageReadMode.RGB, device=device))
            except RuntimeError:
                out.append(None)
        return out


def preprocess(decoded: Sequence[torch.Tensor], spec: GpuPreprocess) -> torch.Tensor:
    """Resize, centre-crop and normalise decoded images into ``float32 [B, 3, S, S]``.

    Images of the same size are resized together (one kernel for the group). Resizing stays in
    uint8 with rounding, as PIL does, so the result matches the CPU path to rounding.
    """
    import torch
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms.v2 import functional as tvf

    mode = InterpolationMode(spec.interpolation)
    first = decoded[0]
    out = torch.empty((len(decoded), 3, spec.size, spec.size), dtype=torch.uint8,
                      device=first.device)
    groups: dict[tuple[int, int], list[int]] = {}
    for position, image in enumerate(decoded):
        groups.setdefault((int(image.shape[-2]), int(image.shape[-1])), []).append(position)
    for positions in groups.values():
        stack = torch.stack([decoded[p] for p in positions])
        resized = tvf.resize(stack, [spec.size], interpolation=mode, antialias=True)
        out[positions] = tvf.center_crop(resized, [spec.size, spec.size])
    mean = torch.tensor(spec.mean, device=out.device, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(spec.std, device=out.device, dtype=torch.float32).view(1, 3, 1, 1)
    return (out.float().div_(255.0) - mean) / std
