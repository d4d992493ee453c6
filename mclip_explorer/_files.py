"""The one way this package writes a file: atomic, fsync'ed, verified, and honouring the umask.

Every file the package persists (collection generations, the manifest, cache shards, media,
thumbnails, converted heads) goes through :func:`atomic_write`:

1. the content goes to a new temporary file beside the target (``.<name>.<random>.tmp``), created
   with mode ``0o666`` so the process umask decides its permissions, as for any other file
   (``tempfile.mkstemp`` would make it ``0600``, unreadable to the rest of a team);
2. streamed content is hashed (xxh3-128) and counted while it is written;
3. the file is fsync'ed, then read back and its size and checksum compared with what was written
   (a short write that raised no error, as a C++ stream under a file-size limit does, is caught
   here), and an optional ``check`` inspects it;
4. only then is it renamed onto the target (``os.replace``, atomic) and the folder fsync'ed.

Any failure removes the temporary file and leaves the target as it was. Write errors become a
:class:`~mclip_explorer.errors.WriteError` naming the file and the cause (file-size limit, full
disk, read-only file system). This module is a leaf: it imports only the standard library,
``xxhash`` and :mod:`mclip_explorer.errors`.
"""

from __future__ import annotations

import contextlib
import errno
import io
import os
import secrets
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, cast

from mclip_explorer.errors import MclipExplorerError, WriteError

CHECKSUM = "xxh3_128"  # the manifest key and algorithm of every recorded checksum
_CHUNK = 8 << 20  # read-back and verification chunk: large enough for full disk speed
# Test hook: the process kills itself (SIGKILL) at the named checkpoint (see checkpoint()).
KILL_ENV = "MCLIP_EXPLORER_KILL_AT"
_NEW_FILE_MODE = 0o666  # the umask takes away what the user's policy forbids
_CAUSES = {
    errno.EFBIG: "the file exceeds the file-size limit (ulimit -f)",
    errno.ENOSPC: "the disk is full",
    errno.EDQUOT: "the disk quota is exceeded",
    errno.EROFS: "the file system is read-only",
    errno.EACCES: "permission denied",
    errno.EPERM: "permission denied",
}


@dataclass(frozen=True)
class FileRecord:
    """What was written: the file's name, size in bytes and xxh3-128 checksum (hex)."""

    name: str
    bytes: int
    checksum: str

    def entry(self) -> dict[str, Any]:
        """The manifest record of this file."""
        return {"name": self.name, "bytes": self.bytes, CHECKSUM: self.checksum}


class ByPath:
    """Content written by a library that wants a file name (hnswlib, ``np.lib.format.open_memmap``).

    Args:
        write: Called with the temporary file's path; must leave the full content there.
        check: Called with the same path after fsync; raises if the file is incomplete. A
            library writing by name may fail silently (hnswlib's C++ stream does), so a
            structural check is required here.
    """

    def __init__(self, write: Callable[[Path], object], check: Callable[[Path], None]) -> None:
        self.write = write
        self.check = check


Content = bytes | Callable[[IO[bytes]], object] | ByPath


def atomic_write(path: str | os.PathLike[str], content: Content) -> FileRecord:
    """Write ``content`` to ``path`` atomically and verified (see the module docstring).

    Args:
        path: The target file; its folder is created if needed.
        content: Bytes; a callable that writes into a binary file object (``np.save``,
            ``DataFrame.to_parquet``...), which is hashed as it is written; or :class:`ByPath`.

    Returns:
        The verified :class:`FileRecord` of the file now at ``path``.

    Raises:
        WriteError: The write failed or the file read back differs from what was written;
            ``path`` is unchanged.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        expected = _fill(tmp, content)
        if isinstance(content, ByPath):
            _check(tmp, path, content.check)
        record = _verify(tmp, path.name, expected)
        checkpoint(f"write:{path.name}")
        tmp.replace(path)
        fsync_folder(path.parent)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if isinstance(exc, WriteError):
            raise
        raise WriteError(f"could not write {path}: {describe(exc)}") from exc
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return record


def checksum(path: str | os.PathLike[str]) -> tuple[int, str]:
    """``(size, xxh3-128 hex)`` of a file, streamed in chunks (memory stays flat)."""
    import xxhash

    digest = xxhash.xxh3_128()
    size = 0
    buffer = bytearray(_CHUNK)
    view = memoryview(buffer)
    with open(path, "rb", buffering=0) as handle:  # noqa: PTH123 - raw reads into one buffer
        while True:
            got = handle.readinto(view)
            if not got:
                break
            digest.update(view[:got])
            size += got
    return size, digest.hexdigest()


def describe(exc: OSError) -> str:
    """A short cause of a write error, e.g. "the disk is full (ENOSPC)"."""
    code = exc.errno
    if code in _CAUSES:
        return f"{_CAUSES[code]} ({errno.errorcode[code]})"
    return exc.strerror or str(exc) or type(exc).__name__


def fsync_folder(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX; a no-op where folders cannot be opened)."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def is_writable_folder(folder: Path) -> bool:
    """Whether files can be created in ``folder``, decided without writing anything.

    ``os.access`` answers from the permission bits (and says yes to root everywhere), so the
    file system's own read-only flag (a read-only mount) is asked too.
    """
    if not folder.is_dir() or not os.access(folder, os.W_OK | os.X_OK):
        return False
    with contextlib.suppress(OSError, AttributeError):
        if os.statvfs(folder).f_flag & os.ST_RDONLY:
            return False
    return True


def user_cache_dir() -> Path:
    """The per-user cache folder: ``$MCLIP_EXPLORER_CACHE``, else the platform's cache folder.

    On Linux that is ``$XDG_CACHE_HOME/mclip-explorer`` (default ``~/.cache/mclip-explorer``).
    """
    value = os.environ.get("MCLIP_EXPLORER_CACHE")
    if value:
        return Path(value).expanduser()
    from platformdirs import user_cache_dir as platform_cache

    return Path(platform_cache("mclip-explorer", appauthor=False))


# ---------------------------------------------------------------------------------- internals
class _Hashing:
    """A write-only binary file object that hashes and counts what passes through it."""

    def __init__(self, handle: IO[bytes]) -> None:
        import xxhash

        self._handle = handle
        self.digest = xxhash.xxh3_128()
        self.size = 0

    def write(self, data: Any) -> int:
        view = memoryview(data).cast("B")
        written = self._handle.write(view)
        if written is not None and written != len(view):
            raise OSError(errno.EIO, f"short write ({written} of {len(view)} bytes)")
        self.digest.update(view)
        self.size += len(view)
        return len(view)

    def tell(self) -> int:
        return self.size

    def flush(self) -> None:
        self._handle.flush()

    @staticmethod
    def read(_size: int = -1) -> bytes:
        # Present because some writers (np.savez) test for it to tell a file from a name.
        raise io.UnsupportedOperation("write-only")

    @staticmethod
    def writable() -> bool:
        return True

    @staticmethod
    def seekable() -> bool:
        return False

    @staticmethod
    def readable() -> bool:
        return False

    @property
    def closed(self) -> bool:
        return self._handle.closed


def _fill(tmp: Path, content: Content) -> tuple[int, str] | None:
    """Create ``tmp`` (honouring the umask), write the content, fsync; return what was written."""
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0),
                 _NEW_FILE_MODE)
    expected: tuple[int, str] | None = None
    with os.fdopen(fd, "wb") as handle:
        if isinstance(content, ByPath):
            handle.close()
            content.write(tmp)
        else:
            hashing = _Hashing(handle)
            if isinstance(content, (bytes, bytearray, memoryview)):
                hashing.write(content)
            else:
                content(cast("IO[bytes]", hashing))  # duck-typed: write, tell, flush
            expected = hashing.size, hashing.digest.hexdigest()
    with open(tmp, "rb+") as again:  # noqa: PTH123 - need the descriptor for fsync
        os.fsync(again.fileno())
    return expected


def _check(tmp: Path, path: Path, check: Callable[[Path], None]) -> None:
    """Run a by-name writer's check; an incomplete file becomes a WriteError with its cause."""
    try:
        check(tmp)
    except (ValueError, OSError, MclipExplorerError) as exc:
        if isinstance(exc, WriteError):
            raise
        # The writer swallowed the error: growing the file by up to 1 MiB shows the cause.
        cause = "the written file is incomplete"
        try:
            with tmp.open("ab") as handle:
                for _ in range(16):
                    handle.write(bytes(65536))
                    handle.flush()
        except OSError as probe:
            cause = describe(probe)
        raise WriteError(f"could not write {path}: {cause} ({exc})") from None


def _verify(tmp: Path, name: str, expected: tuple[int, str] | None) -> FileRecord:
    size, digest = checksum(tmp)
    if expected is not None and (size, digest) != expected:
        raise WriteError(f"could not write {tmp.parent / name}: {size} bytes read back "
                         f"(checksum {digest}), {expected[0]} written (checksum {expected[1]})")
    return FileRecord(name, size, digest)


def checkpoint(name: str) -> None:
    """Die here with SIGKILL if ``$MCLIP_EXPLORER_KILL_AT`` (a glob) matches this point.

    Only the crash tests set it; the points are named where they are called.
    """
    pattern = os.environ.get(KILL_ENV)
    if pattern:
        import fnmatch
        import signal

        if fnmatch.fnmatchcase(name, pattern):
            os.kill(os.getpid(), signal.SIGKILL)
