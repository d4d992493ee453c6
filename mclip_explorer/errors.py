"""Exceptions and warnings raised by mclip_explorer.

Every error names the thing that is wrong (the file, the model, the item) so a user can act on it
without reading a traceback. The CLI prints ``str(error)`` of these on one line and exits with 2.
"""

from __future__ import annotations


class MclipExplorerError(Exception):
    """Base class of every error this package raises on bad input."""


class UnknownModelError(MclipExplorerError, ValueError):
    """A model name that is neither in the registry nor a loadable path."""


class WeightsNotFoundError(MclipExplorerError, FileNotFoundError):
    """Model weights that are neither at the given path nor in the local weights folder."""


class PairingError(MclipExplorerError, ValueError):
    """Weights that are not the tower the registry pairs a model with (dim, size, architecture)."""


class UnsafeFileError(MclipExplorerError, ValueError):
    """A file that would need code execution (e.g. a pickle with arbitrary objects) to read."""


class BadWeightsError(MclipExplorerError, ValueError):
    """A weights file that exists but does not hold what its model needs (keys, shapes, dtype)."""


class BadImageError(MclipExplorerError, ValueError):
    """An image that cannot be decoded; ``reason`` says why, ``item`` says which."""

    def __init__(self, reason: str, item: object = None) -> None:
        self.reason = reason
        self.item = item
        super().__init__(reason if item is None else f"{_describe(item)}: {reason}")


class BadTextError(MclipExplorerError, ValueError):
    """A text that is not valid Unicode (a lone surrogate); the message says which and where."""


class CollectionError(MclipExplorerError):
    """A collection folder that is missing, damaged or from an incompatible version."""


class WriteError(MclipExplorerError, OSError):
    """A file that could not be written completely (full disk, file-size limit, read-only).

    Whatever the file replaces is left as it was.
    """


class ModelMismatchError(CollectionError):
    """A collection opened with a model other than the one that encoded it."""


class SourceError(MclipExplorerError, ValueError):
    """A collection source that is missing, of an unsupported kind, or holds no images."""


class BadImageWarning(UserWarning):
    """Some images of a batch could not be decoded; ``failures`` maps input position to reason."""

    def __init__(self, failures: dict[int, str]) -> None:
        self.failures = dict(failures)
        shown = "; ".join(f"#{i}: {r}" for i, r in list(self.failures.items())[:5])
        more = f" (and {len(self.failures) - 5} more)" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} image(s) could not be encoded: {shown}{more}")


class DamageWarning(UserWarning):
    """Damaged data was found and worked around (an index rebuilt, a cache shard re-encoded)."""


class TruncationWarning(UserWarning):
    """A text was longer than its tower's token limit and was cut."""


def _describe(item: object) -> str:
    if isinstance(item, (bytes, bytearray, memoryview)):
        return f"<{len(item)} bytes>"
    text = str(item)
    return text if len(text) <= 200 else text[:197] + "..."
