"""Shared machinery of every torch-backed encoder: device, precision, image DataLoader, fingerprint.

A model family subclasses :class:`TorchEncoder` and provides three things:

* ``image_transform``: a picklable callable ``PIL.Image (RGB) -> FloatTensor[3, H, W]`` that runs
  in DataLoader worker processes;
* ``_forward_images(pixels)``: raw image embeddings for a ``[B, 3, H, W]`` batch on ``self.device``;
* ``_forward_text(texts)``: raw text embeddings for a batch of strings (tokenise with truncation at
  ``text_max_tokens`` and call :func:`warn_truncated` when something was cut).
"""

from __future__ import annotations

import abc
import hashlib
import itertools
import json
import os
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.errors import BadImageError, TruncationWarning
from mclip_explorer.images import ImageInput, load_image
from mclip_explorer.models.base import Encoder, ErrorMode, ImageBatch, _check_batch_size, normalize

if TYPE_CHECKING:
    import torch

    from mclip_explorer.gpu_decode import GpuPreprocess


def select_device(device: str | None = None) -> torch.device:
    """The requested device, else CUDA, then Apple MPS, then CPU."""
    import torch

    if device is not None:
        return torch.device(device)
    if torch.cuda.is_available():
        return torch.device("cuda")
    mps = getattr(torch.backends, "mps", None)
    if mps is not None and mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


def select_dtype(device: torch.device, dtype: str | torch.dtype | None) -> torch.dtype:
    """Autocast precision: bf16 (else fp16) on CUDA, fp32 elsewhere unless asked otherwise."""
    import torch

    if isinstance(dtype, str):
        names = {"fp32": torch.float32, "float32": torch.float32, "fp16": torch.float16,
                 "float16": torch.float16, "bf16": torch.bfloat16, "bfloat16": torch.bfloat16}
        if dtype not in names:
            raise ValueError(f"dtype must be one of {sorted(names)}, got {dtype!r}")
        return names[dtype]
    if dtype is not None:
        return dtype
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.float32


def warn_truncated(count: int, limit: int, tower: str) -> None:
    """Warn once per batch that ``count`` texts were cut to the tower's token limit."""
    if count:
        warnings.warn(
            TruncationWarning(f"{count} text(s) exceeded the {tower} limit of {limit} tokens "
                              "and were truncated"),
            stacklevel=3,
        )


def default_num_workers(device: torch.device) -> int:
    """Decoding processes: many on a GPU host (decode is the bottleneck), a few on CPU."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    return min(16, max(1, cores - 1)) if device.type == "cuda" else min(2, cores)


class _ImageDataset:
    """Item ``i`` -> ``(i, payload, reason)``; runs in DataLoader worker processes.

    The payload is the transformed ``[3, H, W]`` tensor, or (when ``read_jpegs``) the raw bytes of
    a plain JPEG as a ``uint8`` tensor for the GPU to decode; a bad item yields its reason.
    """

    def __init__(
        self, images: Sequence[ImageInput], transform: Callable[[Any], Any], read_jpegs: bool
    ) -> None:
        self.images = images
        self.transform = transform
        self.read_jpegs = read_jpegs

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        import torch

        item = self.images[index]
        try:
            if self.read_jpegs:
                from mclip_explorer.gpu_decode import read_plain_jpeg

                data = read_plain_jpeg(item)
                if data is not None:
                    payload = _JpegBytes(torch.frombuffer(bytearray(data), dtype=torch.uint8))
                    return index, payload, None
            return index, self.transform(load_image(item)), None
        except BadImageError as exc:
            return index, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - a transform crash on one item must not stop a batch
            return index, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


class _JpegBytes:
    """Marks a payload as undecoded JPEG bytes (a plain tensor would be mistaken for pixels)."""

    def __init__(self, data: Any) -> None:
        self.data = data


def _collate(batch: list[tuple[int, Any, str | None]]) -> tuple[Any, ...]:
    """One batch -> ``(pixel_indices, pixels, jpeg_indices, jpeg_flat, jpeg_offsets, failures)``.

    JPEG bytes are concatenated into one tensor so the DataLoader pins one buffer per batch
    rather than one per image.
    """
    import torch

    pixel_items = [(i, p) for i, p, _ in batch if p is not None and not isinstance(p, _JpegBytes)]
    jpeg_items = [(i, p.data) for i, p, _ in batch if isinstance(p, _JpegBytes)]
    failures = {i: reason for i, _, reason in batch if reason is not None}
    pixels = torch.stack([p for _, p in pixel_items]) if pixel_items else None
    flat = offsets = None
    if jpeg_items:
        flat = torch.cat([d for _, d in jpeg_items])
        offsets = torch.tensor([0] + [len(d) for _, d in jpeg_items]).cumsum(0)
    return ([i for i, _ in pixel_items], pixels, [i for i, _ in jpeg_items], flat, offsets,
            failures)


class _PendingBatch:
    """A batch whose forward pass (and copy to host) may still be running on the device."""

    def __init__(
        self, indices: np.ndarray, host: Any, event: Any, failures: dict[int, str], dim: int
    ) -> None:
        self.indices, self.host, self.event, self.failures, self.dim = (
            indices, host, event, failures, dim)

    def result(self) -> ImageBatch:
        if self.host is None:
            return ImageBatch(self.indices, np.empty((0, self.dim), np.float32), self.failures)
        if self.event is not None:
            self.event.synchronize()
        return ImageBatch(self.indices, normalize(self.host.numpy()), self.failures)


class TorchEncoder(Encoder):
    """Base of the torch model families; see the module docstring for what subclasses provide."""

    image_transform: Callable[[Any], Any]
    #: Device-side preprocessing for GPU JPEG decoding; ``None``: derived from
    #: ``image_transform`` when it is a recognisable torchvision ``Compose``.
    image_preprocess: GpuPreprocess | None = None
    #: ``None``: decode plain JPEGs on the GPU when running on CUDA (``$MCLIP_EXPLORER_GPU_DECODE``
    #: can turn it off); ``True``/``False`` force it (on CPU, ``True`` runs torchvision's decoder).
    gpu_decode: bool | None = None

    def __init__(self, device: str | None = None, dtype: str | torch.dtype | None = None) -> None:
        self.device = select_device(device)
        self.dtype = select_dtype(self.device, dtype)
        self._fingerprint: str | None = None

    # Subclass hooks ------------------------------------------------------------------------
    @abc.abstractmethod
    def _forward_text(self, texts: list[str]) -> torch.Tensor: ...

    @abc.abstractmethod
    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor: ...

    @abc.abstractmethod
    def _modules(self) -> dict[str, torch.nn.Module]:
        """Named modules whose weights make up the fingerprint."""

    def _identity(self) -> dict[str, Any]:
        """Everything besides weights that changes the output (preprocessing, pooling)."""
        return {"class": type(self).__name__, "dim": self.dim, "image_size": self.image_size,
                "text_max_tokens": self.text_max_tokens}

    # Shared machinery ----------------------------------------------------------------------
    def _autocast(self) -> AbstractContextManager[Any]:
        import torch

        if self.dtype == torch.float32 or self.device.type not in ("cuda", "cpu"):
            return nullcontext()
        return torch.autocast(device_type=self.device.type, dtype=self.dtype)

    def _encode_text_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with torch.inference_mode(), self._autocast():
            raw = self._forward_text(texts)
        return raw.float().cpu().numpy()

    def iter_image_batches(
        self,
        images: Sequence[ImageInput],
        *,
        batch_size: int = 32,
        num_workers: int | None = None,
        errors: ErrorMode = "report",
        progress: bool = False,
    ) -> Iterator[ImageBatch]:
        """Stream embeddings batch by batch (see :meth:`Encoder.iter_image_batches`).

        Decoding runs in ``num_workers`` DataLoader processes. On CUDA, batches arrive in pinned
        memory and are copied without blocking; each batch's forward pass is queued before the
        previous batch's result is handed out, so the GPU keeps working while the caller (and
        the host side of the copy) handles the last one. Plain JPEGs are decoded on the GPU when
        :attr:`gpu_decode` allows it (see :mod:`mclip_explorer.gpu_decode`).
        """
        from torch.utils.data import DataLoader

        _check_batch_size(batch_size)
        if errors not in ("report", "raise"):
            raise ValueError(f"errors must be 'report' or 'raise', got {errors!r}")
        workers = default_num_workers(self.device) if num_workers is None else num_workers
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if len(images) <= 1:
            workers = 0  # starting a worker process costs more than decoding one image
        gpu_spec = self._gpu_preprocess()
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            _ImageDataset(images, self.image_transform, read_jpegs=gpu_spec is not None),
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=cuda,
            prefetch_factor=4 if workers else None,
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), unit="img")
        pending: _PendingBatch | None = None
        try:
            for pixel_idx, pixels, jpeg_idx, flat, offsets, failures in loader:
                pieces = [(pixel_idx, pixels)] if pixels is not None else []
                if jpeg_idx:
                    pieces += self._decode_on_device(images, jpeg_idx, flat, offsets, gpu_spec,
                                                     failures)
                if failures and errors == "raise":
                    if pending is not None:
                        yield pending.result()  # what is already computed is not lost
                        pending = None
                    first = min(failures)
                    raise BadImageError(failures[first], images[first])
                launched = self._launch(pieces, failures)
                if pending is not None:
                    yield pending.result()
                pending = launched
                if bar is not None:
                    bar.update(len(pixel_idx) + len(jpeg_idx) + len(failures))
            if pending is not None:
                yield pending.result()
        finally:
            if bar is not None:
                bar.close()

    def _gpu_preprocess(self) -> GpuPreprocess | None:
        """The preprocessing to run on the device, or ``None`` for the all-CPU path."""
        from mclip_explorer.gpu_decode import describe_transform, gpu_decode_enabled

        default = self.device.type == "cuda" if self.gpu_decode is None else self.gpu_decode
        if not gpu_decode_enabled(default) or self.device.type not in ("cuda", "cpu"):
            return None
        return self.image_preprocess or describe_transform(self.image_transform)

    def _decode_on_device(
        self,
        images: Sequence[ImageInput],
        indices: list[int],
        flat: torch.Tensor,
        offsets: torch.Tensor,
        spec: GpuPreprocess | None,
        failures: dict[int, str],
    ) -> list[tuple[list[int], torch.Tensor]]:
        """Decode and preprocess a batch's JPEG bytes on the device; failures go through PIL."""
        import torch

        from mclip_explorer.gpu_decode import decode_jpegs, preprocess

        assert spec is not None  # workers read bytes only when a spec exists
        bounds = offsets.tolist()
        datas = [flat[a:b] for a, b in itertools.pairwise(bounds)]
        decoded = decode_jpegs(datas, self.device)
        ok = [(i, d) for i, d in zip(indices, decoded, strict=True) if d is not None]
        pieces: list[tuple[list[int], torch.Tensor]] = []
        if ok:
            pieces.append(([i for i, _ in ok], preprocess([d for _, d in ok], spec)))
        # nvJPEG refused these (rare: unusual subsampling, corrupt data): PIL either decodes
        # them or names the reason, exactly as on the CPU path.
        retry = [i for i, d in zip(indices, decoded, strict=True) if d is None]
        fallback_idx, fallback = [], []
        for index in retry:
            _, tensor, reason = _ImageDataset(images, self.image_transform, False)[index]
            if reason is not None:
                failures[index] = reason
            else:
                fallback_idx.append(index)
                fallback.append(tensor)
        if fallback:
            pieces.append((fallback_idx, torch.stack(fallback)))
        return pieces

    def _launch(
        self, pieces: list[tuple[list[int], torch.Tensor]], failures: dict[int, str]
    ) -> _PendingBatch:
        """Queue one batch's forward pass and the copy of its result back to the host."""
        import torch

        indices = [i for idx, _ in pieces for i in idx]
        if not indices:
            return _PendingBatch(np.empty(0, dtype=np.int64), None, None, failures, self.dim)
        cuda = self.device.type == "cuda"
        with torch.inference_mode():
            parts = [t.to(self.device, non_blocking=cuda) for _, t in pieces]
            pixels = parts[0] if len(parts) == 1 else torch.cat(parts)
            order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")
            if len(parts) > 1 and (np.diff(order) != 1).any():
                # Rows in input order, so a batch reads the same however its items were decoded.
                pixels = pixels[torch.as_tensor(order, device=pixels.device)]
            with self._autocast():
                raw = self._forward_images(pixels)
            # Normalisation happens in fp32 on the host (base.normalize), whatever autocast did.
            raw = raw.float()
            event = None
            if cuda:
                host = torch.empty(raw.shape, dtype=torch.float32, pin_memory=True)
                host.copy_(raw, non_blocking=True)
                event = torch.cuda.Event()
                event.record()
            else:
                host = raw
        sorted_indices = np.asarray(indices, dtype=np.int64)[order]
        return _PendingBatch(sorted_indices, host, event, failures, self.dim)

    @property
    def fingerprint(self) -> str:
        """A stable hex id of the weights and preprocessing (see :func:`weights_digest`)."""
        if self._fingerprint is None:
            self._fingerprint = weights_digest(self._modules(), self._identity())
        return self._fingerprint


def weights_digest(modules: dict[str, torch.nn.Module], identity: dict[str, Any]) -> str:
    """SHA-256 over the identity dict and every parameter and buffer, in a fixed order."""
    import torch

    digest = hashlib.sha256(json.dumps(identity, sort_keys=True, default=str).encode())
    for prefix in sorted(modules):
        state = modules[prefix].state_dict()
        for key in sorted(state):
            tensor = state[key]
            if not isinstance(tensor, torch.Tensor):
                continue
            digest.update(f"{prefix}.{key}:{tensor.dtype}:{tuple(tensor.shape)}".encode())
            data = tensor.detach().to("cpu").contiguous()
            if data.dtype == torch.bfloat16:
                data = data.view(torch.int16)
            digest.update(data.numpy().tobytes())
    return digest.hexdigest()[:32]
