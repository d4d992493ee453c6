"""Shared machinery of every torch-backed encoder: device, precision, image DataLoader, fingerprint.

A model family subclasses :class:`TorchEncoder` and provides three things:

* ``image_transform``: a picklable callable ``PIL.Image (RGB) -> FloatTensor[3, H, W]`` that runs
  in DataLoader worker processes;
* ``_forward_images(pixels)``: raw image embeddings for a ``[B, 3, H, W]`` batch on ``self.device``;
* ``_forward_text(texts)``: raw text embeddings for a batch of strings (tokenise with truncation at
  ``text_max_tokens`` and let :func:`warn_truncated` count and report what was cut).
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

from mclip_explorer.errors import TruncationWarning
from mclip_explorer.images import ImageInput
from mclip_explorer.models.base import Encoder, ErrorMode, ImageBatch, _check_batch_size

if TYPE_CHECKING:
    import torch

    from mclip_explorer.models.gpu_decode import GpuPreprocess


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


def warn_truncated(
    texts: Sequence[str],
    limit: int,
    tower: str,
    full_lengths: Callable[[list[str]], Sequence[int]],
    kept_lengths: Sequence[int] | None = None,
) -> None:
    """Warn once per batch about the texts longer than the tower's ``limit`` tokens.

    The one truncation counter of the model families: ``full_lengths`` gives token counts
    without truncation (special tokens included), the only reliable measure of what truncation
    removes. With ``kept_lengths`` (counts after truncation, e.g. an attention mask's sums) only
    the texts that reached the limit are measured again.
    """
    candidates = list(texts)
    if kept_lengths is not None:
        candidates = [t for t, n in zip(texts, kept_lengths, strict=True) if n >= limit]
    count = sum(n > limit for n in full_lengths(candidates)) if candidates else 0
    if count:
        warnings.warn(
            TruncationWarning(f"{count} text(s) exceeded the {tower} limit of {limit} tokens "
                              "and were truncated"),
            stacklevel=3,
        )


def hf_lengths(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token counts without truncation from a Hugging Face tokenizer (see ``warn_truncated``)."""
    def lengths(texts: list[str]) -> list[int]:
        encoded = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)
        return [len(ids) for ids in encoded["input_ids"]]

    return lengths


def default_num_workers(device: torch.device, reads_only: bool = False) -> int:
    """Decoding processes: many on a GPU host (PIL decoding is the bottleneck), few on CPU.

    When the GPU decodes JPEGs (``reads_only``), workers only read files and check headers; a few
    suffice, and more take CPU time from the threads feeding nvJPEG (16-core H100 host,
    ViT-B/32, 16k JPEGs, one run each: 3 workers 7.6k img/s, 6 workers 6.9k, 10 workers 6.3k;
    with two decode threads 3 workers 7.8k, 4 workers 6.7k, 6 workers 7.2k).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    cores = cores or 1
    if device.type != "cuda":
        return min(2, cores)
    return min(3, max(1, cores - 2)) if reads_only else min(16, max(1, cores - 1))


class TorchEncoder(Encoder):
    """Base of the torch model families; see the module docstring for what subclasses provide."""

    image_transform: Callable[[Any], Any]
    #: Device-side preprocessing for GPU JPEG decoding; ``None``: derived from
    #: ``image_transform`` when it is a recognisable torchvision ``Compose``.
    image_preprocess: GpuPreprocess | None = None
    #: ``None``: decode plain JPEGs on the GPU when running on CUDA, unless
    #: ``$MCLIP_EXPLORER_GPU_DECODE=0``; ``True``/``False`` decide regardless of the variable (on
    #: CPU, ``True`` runs torchvision's decoder, which tests use to check the machinery).
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
        :attr:`gpu_decode` allows it (see :mod:`mclip_explorer.models.gpu_decode`).
        """
        from torch.utils.data import DataLoader

        from mclip_explorer.models.image_pipeline import ImageDataset, collate, run_pipeline

        _check_batch_size(batch_size)
        if errors not in ("report", "raise"):
            raise ValueError(f"errors must be 'report' or 'raise', got {errors!r}")
        gpu_spec = self._gpu_preprocess()
        workers = num_workers
        if workers is None:
            workers = default_num_workers(self.device, reads_only=gpu_spec is not None)
        if not isinstance(workers, int) or workers < 0:
            raise ValueError(f"num_workers must be a non-negative integer, got {num_workers!r}")
        if len(images) <= 1:
            workers = 0  # starting a worker process costs more than decoding one image
        cuda = self.device.type == "cuda"
        # A map-style dataset by protocol (__len__/__getitem__), not a torch Dataset subclass.
        dataset: Any = ImageDataset(images, self.image_transform, read_jpegs=gpu_spec is not None)
        loader: DataLoader[Any] = DataLoader(
            dataset,
            batch_size=batch_size,
            num_workers=workers,
            collate_fn=collate,
            pin_memory=cuda,
            prefetch_factor=4 if workers else None,
        )
        bar = None
        if progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(images), unit="img")
        try:
            yield from run_pipeline(self, images, loader, gpu_spec, errors, bar)
        finally:
            if bar is not None:
                bar.close()

    def _gpu_preprocess(self) -> GpuPreprocess | None:
        """The preprocessing to run on the device, or ``None`` for the all-CPU path."""
        from mclip_explorer.models.gpu_decode import describe_transform, gpu_decode_enabled

        wanted = self.gpu_decode
        if wanted is None:
            wanted = gpu_decode_enabled(default=self.device.type == "cuda")
        if not wanted or self.device.type not in ("cuda", "cpu"):
            return None
        return self.image_preprocess or describe_transform(self.image_transform)

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
