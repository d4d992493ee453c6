"""The image stream under :meth:`TorchEncoder.iter_image_batches`: workers -> device -> host.

Three stages overlap so that, in steady state, the device never waits on decoding:

1. DataLoader worker processes decode and transform images with PIL (or, when the GPU decodes
   JPEGs, only read their bytes), and batches arrive in pinned memory on CUDA;
2. on CUDA, a decode thread turns batch ``k + 1`` into device pixels (nvJPEG, resize, normalise
   on a side stream) while the main thread queues the forward pass of batch ``k``;
3. each forward's result is copied to pinned host memory without blocking, and batch ``k - 1``
   is handed to the caller only after batch ``k`` has been queued.
"""

from __future__ import annotations

import collections
import itertools
import threading
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from mclip_explorer.errors import BadImageError
from mclip_explorer.images import ImageInput, load_image
from mclip_explorer.models.base import ErrorMode, ImageBatch, normalize

if TYPE_CHECKING:
    import torch

    from mclip_explorer.models.gpu_decode import GpuPreprocess

# Threads feeding nvJPEG, each on its own CUDA stream; batches are decoded ahead of the forward
# pass (one per thread plus one waiting). H100 host, ViT-B/32, 16k JPEGs, 4 readers, one run:
# 1 thread 6.3-6.5k img/s, 2 threads 6.7k, 3 threads 7.3k; 2 threads with 3 readers 7.8k.
DECODE_THREADS = 2


class ImageTower(Protocol):
    """What the pipeline needs of its encoder (``TorchEncoder`` provides it).

    A protocol rather than the class itself: ``torch_base`` drives this module, so this module
    naming ``TorchEncoder`` would close an import cycle.
    """

    # Read-only properties, so that plain attributes and properties both satisfy them.
    @property
    def device(self) -> torch.device:
        """Where the forward pass runs."""

    @property
    def dim(self) -> int:
        """Width of the embeddings."""

    @property
    def image_transform(self) -> Callable[[Any], Any]:
        """PIL image -> pixel tensor, run in the DataLoader workers."""

    def _autocast(self) -> AbstractContextManager[Any]: ...

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor: ...


class ImageDataset:
    """Item ``i`` -> ``(i, payload, reason)``; runs in DataLoader worker processes.

    The payload is the transformed ``[3, H, W]`` tensor, or (when ``read_jpegs``) the raw bytes of
    a plain JPEG for the GPU to decode; a bad item yields its reason instead.
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
                from mclip_explorer.models.gpu_decode import read_plain_jpeg

                data = read_plain_jpeg(item)
                if data is not None:
                    payload = JpegBytes(torch.frombuffer(bytearray(data), dtype=torch.uint8))
                    return index, payload, None
            return index, self.transform(load_image(item)), None
        except BadImageError as exc:
            return index, None, exc.reason
        except Exception as exc:  # noqa: BLE001 - a transform crash on one item must not stop a batch
            return index, None, f"preprocessing failed: {type(exc).__name__}: {exc}"


class JpegBytes:
    """Marks a payload as undecoded JPEG bytes (a plain tensor would be mistaken for pixels)."""

    def __init__(self, data: Any) -> None:
        self.data = data


def collate(batch: list[tuple[int, Any, str | None]]) -> tuple[Any, ...]:
    """One batch -> ``(pixel_indices, pixels, jpeg_indices, jpeg_flat, jpeg_offsets, failures)``.

    JPEG bytes are concatenated into one tensor so the DataLoader pins one buffer per batch
    rather than one per image.
    """
    import torch

    pixel_items = [(i, p) for i, p, _ in batch if p is not None and not isinstance(p, JpegBytes)]
    jpeg_items = [(i, p.data) for i, p, _ in batch if isinstance(p, JpegBytes)]
    failures = {i: reason for i, _, reason in batch if reason is not None}
    pixels = torch.stack([p for _, p in pixel_items]) if pixel_items else None
    flat = offsets = None
    if jpeg_items:
        flat = torch.cat([d for _, d in jpeg_items])
        offsets = torch.tensor([0] + [len(d) for _, d in jpeg_items]).cumsum(0)
    return ([i for i, _ in pixel_items], pixels, [i for i, _ in jpeg_items], flat, offsets,
            failures)


@dataclass
class Prepared:
    """A batch ready for the forward pass: ``(input positions, pixels)`` pieces, and failures."""

    pieces: list[tuple[list[int], Any]]
    failures: dict[int, str]
    count: int
    ready: Any = None  # CUDA event recorded after device-side preprocessing


class PendingBatch:
    """A batch whose forward pass (and copy to host) may still be running on the device."""

    def __init__(
        self, indices: np.ndarray, host: Any, event: Any, failures: dict[int, str], dim: int
    ) -> None:
        self.indices, self.host, self.event, self.failures, self.dim = (
            indices, host, event, failures, dim)

    def result(self) -> ImageBatch:
        """Wait for the device and return the normalised embeddings."""
        if self.host is None:
            return ImageBatch(self.indices, np.empty((0, self.dim), np.float32), self.failures)
        if self.event is not None:
            self.event.synchronize()
        return ImageBatch(self.indices, normalize(self.host.numpy()), self.failures)


def run_pipeline(
    encoder: ImageTower,
    images: Sequence[ImageInput],
    loader: Any,
    spec: GpuPreprocess | None,
    errors: ErrorMode,
    bar: Any,
) -> Iterator[ImageBatch]:
    """Drive the three stages (module docstring) and yield one :class:`ImageBatch` per batch."""
    import torch

    threaded = spec is not None and encoder.device.type == "cuda"
    pool = ThreadPoolExecutor(DECODE_THREADS, "mclip-decode") if threaded else None
    local = threading.local()

    def prepare(raw: tuple[Any, ...]) -> Prepared:
        stream = None
        if threaded:
            stream = getattr(local, "stream", None)
            if stream is None:
                stream = local.stream = torch.cuda.Stream(device=encoder.device)  # type: ignore[no-untyped-call]
        return _prepare(encoder, images, raw, spec, stream)

    def prepared_batches() -> Iterator[Prepared]:
        if pool is None:
            yield from map(prepare, loader)
            return
        queue: collections.deque[Future[Prepared]] = collections.deque()
        for raw in loader:
            queue.append(pool.submit(prepare, raw))
            if len(queue) > DECODE_THREADS:
                yield queue.popleft().result()
        while queue:
            yield queue.popleft().result()

    pending: PendingBatch | None = None
    try:
        for batch in prepared_batches():
            if batch.failures and errors == "raise":
                if pending is not None:
                    yield pending.result()  # what is already computed is not lost
                    pending = None
                first = min(batch.failures)
                raise BadImageError(batch.failures[first], images[first])
            launched = _launch(encoder, batch)
            if pending is not None:
                yield pending.result()
            pending = launched
            if bar is not None:
                bar.update(batch.count)
        if pending is not None:
            yield pending.result()
    finally:
        if pool is not None:
            pool.shutdown(wait=True, cancel_futures=True)


def _prepare(
    encoder: ImageTower,
    images: Sequence[ImageInput],
    raw: tuple[Any, ...],
    spec: GpuPreprocess | None,
    stream: Any,
) -> Prepared:
    """Unpack a loader batch; decode its JPEG bytes on the device (on ``stream`` if given)."""
    import torch

    pixel_idx, pixels, jpeg_idx, flat, offsets, failures = raw
    pieces: list[tuple[list[int], Any]] = [(pixel_idx, pixels)] if pixels is not None else []
    count = len(pixel_idx) + len(jpeg_idx) + len(failures)
    if not jpeg_idx:
        return Prepared(pieces, failures, count)
    assert spec is not None  # workers read bytes only when a spec exists
    if stream is None:
        pieces += _decode_on_device(encoder, images, jpeg_idx, flat, offsets, spec, failures)
        return Prepared(pieces, failures, count)
    with torch.cuda.stream(stream):
        pieces += _decode_on_device(encoder, images, jpeg_idx, flat, offsets, spec, failures)
        ready = torch.cuda.Event()  # type: ignore[no-untyped-call]
        ready.record(stream)
    return Prepared(pieces, failures, count, ready)


def _decode_on_device(
    encoder: ImageTower,
    images: Sequence[ImageInput],
    indices: list[int],
    flat: torch.Tensor,
    offsets: torch.Tensor,
    spec: GpuPreprocess,
    failures: dict[int, str],
) -> list[tuple[list[int], Any]]:
    """Decode and preprocess JPEG bytes on the device; items nvJPEG refuses go through PIL."""
    import torch

    from mclip_explorer.models.gpu_decode import decode_jpegs, preprocess

    bounds = offsets.tolist()
    datas = [flat[a:b] for a, b in itertools.pairwise(bounds)]
    decoded = decode_jpegs(datas, encoder.device)
    ok = [(i, d) for i, d in zip(indices, decoded, strict=True) if d is not None]
    pieces: list[tuple[list[int], Any]] = []
    if ok:
        pieces.append(([i for i, _ in ok], preprocess([d for _, d in ok], spec)))
    # nvJPEG refused these (rare: unusual subsampling, corrupt data): PIL either decodes them
    # or names the reason, exactly as on the CPU path.
    fallback_idx, fallback = [], []
    dataset = ImageDataset(images, encoder.image_transform, read_jpegs=False)
    for index in [i for i, d in zip(indices, decoded, strict=True) if d is None]:
        _, tensor, reason = dataset[index]
        if reason is not None:
            failures[index] = reason
        else:
            fallback_idx.append(index)
            fallback.append(tensor)
    if fallback:
        pieces.append((fallback_idx, torch.stack(fallback)))
    return pieces


def _launch(encoder: ImageTower, batch: Prepared) -> PendingBatch:
    """Queue one batch's forward pass and the copy of its result back to the host."""
    import torch

    indices = [i for idx, _ in batch.pieces for i in idx]
    if not indices:
        return PendingBatch(np.empty(0, dtype=np.int64), None, None, batch.failures, encoder.dim)
    cuda = encoder.device.type == "cuda"
    with torch.inference_mode():
        if batch.ready is not None:
            current = torch.cuda.current_stream(encoder.device)
            current.wait_event(batch.ready)
            for _, tensor in batch.pieces:
                if tensor.device.type == "cuda":
                    # Made on the decode stream, used here: keep the allocator from reusing it
                    # before this stream is done with it.
                    tensor.record_stream(current)
        parts = [t.to(encoder.device, non_blocking=cuda) for _, t in batch.pieces]
        pixels = parts[0] if len(parts) == 1 else torch.cat(parts)
        order = np.argsort(np.asarray(indices, dtype=np.int64), kind="stable")
        if len(parts) > 1 and (np.diff(order) != 1).any():
            # Rows in input order, so a batch reads the same however its items were decoded.
            pixels = pixels[torch.as_tensor(order, device=pixels.device)]
        with encoder._autocast():
            raw = encoder._forward_images(pixels)
        # Normalisation happens in fp32 on the host (base.normalize), whatever autocast did.
        raw = raw.float()
        event = None
        if cuda:
            host = torch.empty(raw.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(raw, non_blocking=True)
            event = torch.cuda.Event()  # type: ignore[no-untyped-call]
            event.record()
        else:
            host = raw
    sorted_indices = np.asarray(indices, dtype=np.int64)[order]
    return PendingBatch(sorted_indices, host, event, batch.failures, encoder.dim)
