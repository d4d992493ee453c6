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
    """Decodes and transforms item ``i``; a bad item yields its reason instead of a tensor."""

    def __init__(self, images: Sequence[ImageInput], transform: Callable[[Any], Any]) -> None:
        self.images = images
        self.transform = transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> tuple[int, Any, str | None]:
        try:
            return index, self.transform(load_image(self.images[index])), None
        except BadImageError as exc:
            return index, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - a transform crash on one item must not stop a batch
            return index, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


def _collate(batch: list[tuple[int, Any, str | None]]) -> tuple[list[int], Any, dict[int, str]]:
    import torch

    good = [(i, t) for i, t, _ in batch if t is not None]
    failures = {i: reason for i, _, reason in batch if reason is not None}
    pixels = torch.stack([t for _, t in good]) if good else None
    return [i for i, _ in good], pixels, failures


class TorchEncoder(Encoder):
    """Base of the torch model families; see the module docstring for what subclasses provide."""

    image_transform: Callable[[Any], Any]

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
        import torch
        from torch.utils.data import DataLoader

        _check_batch_size(batch_size)
        if errors not in ("report", "raise"):
            raise ValueError(f"errors must be 'report' or 'raise', got {errors!r}")
        workers = default_num_workers(self.device) if num_workers is None else num_workers
        cuda = self.device.type == "cuda"
        loader = DataLoader(
            _ImageDataset(images, self.image_transform),  # type: ignore[arg-type]
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=_collate,
            pin_memory=cuda,
            prefetch_factor=4 if workers else None,
            persistent_workers=False,
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), unit="img")
        try:
            for indices, pixels, failures in loader:
                if failures and errors == "raise":
                    first = min(failures)
                    raise BadImageError(failures[first], images[first])
                embeddings = np.empty((0, self.dim), dtype=np.float32)
                if pixels is not None:
                    with torch.inference_mode(), self._autocast():
                        raw = self._forward_images(pixels.to(self.device, non_blocking=cuda))
                    embeddings = normalize(raw.float().cpu().numpy())
                if bar is not None:
                    bar.update(len(indices) + len(failures))
                yield ImageBatch(np.asarray(indices, dtype=np.int64), embeddings, failures)
        finally:
            if bar is not None:
                bar.close()

    @property
    def fingerprint(self) -> str:
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
