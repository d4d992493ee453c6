"""Batched JPEG decoding with NVIDIA nvImageCodec, the hardware JPEG engine first.

torchvision's ``decode_jpeg(device="cuda")`` runs nvJPEG's hybrid backend: Huffman decoding on the
CPU, under the GIL, competing with the forward pass's kernel launches. nvImageCodec reaches the
A100/H100/H200 hardware JPEG decoder (``HW_GPU_ONLY``) and falls back to its CUDA decoder
(``GPU_ONLY``) for what the engine refuses, releasing the GIL for the whole batch.

The package is an optional extra (``pip install mclip-explorer[gpu]``, which installs
``nvidia-nvimgcodec-cu13``); without it, or with ``MCLIP_EXPLORER_GPU_DECODER=torchvision``,
:func:`mclip_explorer.models.gpu_decode.decode_jpegs` keeps torchvision's path. On a machine
without a GPU the same code runs nvImageCodec's CPU backend (libjpeg-turbo), which is how the
tests check this module: same glue, same planar RGB layout, pixels equal to PIL's.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

DECODER_ENV = "MCLIP_EXPLORER_GPU_DECODER"
DECODERS = ("auto", "nvimgcodec", "torchvision")


def chosen_decoder() -> str:
    """``$MCLIP_EXPLORER_GPU_DECODER``: ``auto`` (default), ``nvimgcodec`` or ``torchvision``.

    Raises:
        ValueError: The variable holds something else (named in the message).
    """
    value = os.environ.get(DECODER_ENV, "auto").strip().lower() or "auto"
    if value not in DECODERS:
        raise ValueError(f"{DECODER_ENV}={value!r}: expected one of {', '.join(DECODERS)}")
    return value


def available() -> bool:
    """Whether ``nvidia.nvimgcodec`` imports (the optional ``[gpu]`` extra)."""
    try:
        _module()
    except ImportError:
        return False
    return True


def _module() -> Any:
    from nvidia import nvimgcodec  # type: ignore[import-not-found,import-untyped,unused-ignore]

    return nvimgcodec


_LOCAL = threading.local()


def _decoder(device_index: int | None) -> Any:
    """One decoder per device and thread, kept for the thread's life.

    Creating one allocates codec state, so it is reused; the pipeline's decode threads each get
    their own, as nothing promises that one decoder serves concurrent batches.
    """
    cache: dict[int | None, Any] = _LOCAL.__dict__.setdefault("decoders", {})
    if device_index not in cache:
        cache[device_index] = _new_decoder(device_index)
    return cache[device_index]


def _new_decoder(device_index: int | None) -> Any:
    nv = _module()
    if device_index is None:
        return nv.Decoder(device_id=nv.NVIMGCODEC_DEVICE_CPU_ONLY,
                          backends=[nv.Backend(nv.BackendKind.CPU_ONLY)])
    # The hardware engine first; the CUDA decoder for what it refuses (progressive, odd sampling).
    return nv.Decoder(device_id=device_index,
                      backends=[nv.Backend(nv.BackendKind.HW_GPU_ONLY),
                                nv.Backend(nv.BackendKind.GPU_ONLY)])


def decode(datas: Sequence[Any], device: torch.device) -> list[torch.Tensor | None]:
    """Decode JPEG bytes to ``uint8 [3, H, W]`` tensors on ``device``; ``None`` where one fails.

    Args:
        datas: Encoded images as ``bytes``, ``memoryview`` or 1-D uint8 CPU tensors.
        device: ``cuda[:i]`` for the GPU backends, ``cpu`` for nvImageCodec's CPU backend.

    Returns:
        One tensor per input, in order; ``None`` where nvImageCodec could not decode it, so the
        caller's CPU path can decode it or name the reason.
    """
    import numpy as np
    import torch

    if not datas:
        return []
    nv = _module()
    cuda = device.type == "cuda"
    index = (device.index if device.index is not None else torch.cuda.current_device()) if cuda \
        else None
    streams = [nv.CodeStream(_as_bytes(data)) for data in datas]
    # Planar RGB comes out as [3, H, W], the layout the model wants, with no transpose. EXIF
    # rotation stays off: rotated files never reach this path (read_plain_jpeg sends them to PIL).
    params = nv.DecodeParams(apply_exif_orientation=False, color_spec=nv.ColorSpec.SRGB,
                             sample_format=nv.SampleFormat.P_RGB)
    stream = torch.cuda.current_stream(device).cuda_stream if cuda else 0
    images = _decoder(index).decode(streams, params=params, cuda_stream=stream)
    out: list[torch.Tensor | None] = []
    for image in images:
        if image is None:
            out.append(None)
        elif cuda:
            out.append(torch.as_tensor(image, device=device))  # zero copy, __cuda_array_interface__
        else:
            out.append(torch.from_numpy(np.array(image, copy=True)))
    return out


def _as_bytes(data: Any) -> bytes:
    if isinstance(data, bytes):
        return data
    if hasattr(data, "numpy"):  # a uint8 CPU tensor slice of a packed batch
        return bytes(data.numpy().tobytes())
    return bytes(data)
