"""Toy encoders that report from inside Ray workers (importable there as ``tests.ray_encoders``)."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from mclip_explorer.models.base import ImageBatch
from mclip_explorer.models.toy import ToyEncoder


class LoggingEncoder(ToyEncoder):
    """The toy encoder; appends the size of every image batch it is asked for to ``log``.

    Several processes may append at once: each line is one small O_APPEND write.
    """

    def __init__(self, log: str, delay: float = 0.0) -> None:
        super().__init__()
        self.log, self.delay = log, delay

    def iter_image_batches(self, images: Any, **kwargs: Any) -> Iterator[ImageBatch]:  # type: ignore[override]
        with Path(self.log).open("a") as handle:
            handle.write(f"{len(images)}\n")
        time.sleep(self.delay)
        return super().iter_image_batches(images, **kwargs)


def logged(log: Path) -> int:
    """How many images a LoggingEncoder encoded, from its log."""
    if not log.exists():
        return 0
    return sum(int(line) for line in log.read_text().split())


class KillOnceEncoder(ToyEncoder):
    """The toy encoder, except that the first call in any process kills that process (SIGKILL)."""

    def __init__(self, marker: str) -> None:
        super().__init__()
        self.marker = marker

    def iter_image_batches(self, images: Any, **kwargs: Any) -> Iterator[ImageBatch]:  # type: ignore[override]
        try:
            os.close(os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        except FileExistsError:
            return super().iter_image_batches(images, **kwargs)
        Path(self.marker).write_text(str(os.getpid()))
        os.kill(os.getpid(), signal.SIGKILL)
        raise AssertionError("unreachable")
