"""Read-only collections and full disks (issue 9, point 7).

Opening, searching and the widget (which asks for gallery thumbnails on every search) must work
on a collection that cannot be written, and never attempt a write to it. Tests run as root here,
where ``chmod a-w`` does not stop writes, so a read-only bind mount is used where mounting is
permitted; in every case the folder's listing, sizes and mtimes are compared before and after.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import _files
from mclip_explorer.collection import Collection
from mclip_explorer.errors import CollectionError, WriteError
from tests.browser.toydata import build_collection


def _snapshot(folder: Path) -> dict[str, tuple[int, int, int]]:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns,
                                         p.stat().st_mode)
            for p in sorted(folder.rglob("*"))} | {".": (0, folder.stat().st_mtime_ns, 0)}


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return Path(build_collection(tmp_path_factory.mktemp("ro")).path)


@pytest.fixture
def read_only(source: Path, tmp_path: Path) -> Iterator[tuple[Path, bool]]:
    """A copy of the collection, chmod a-w, behind a read-only bind mount where permitted."""
    copy = tmp_path / "coll"
    shutil.copytree(source, copy)
    shutil.rmtree(copy / "thumbs", ignore_errors=True)
    subprocess.run(["chmod", "-R", "a-w", str(copy)], check=True)
    view = tmp_path / "view"
    view.mkdir()
    try:
        mounted = subprocess.run(["mount", "--bind", str(copy), str(view)],
                                 capture_output=True, check=False).returncode == 0
    except OSError:  # no mount command at all
        mounted = False
    if mounted and subprocess.run(["mount", "-o", "remount,ro,bind", str(view)],
                                  capture_output=True, check=False).returncode != 0:
        subprocess.run(["umount", str(view)], check=False)
        mounted = False
    try:
        yield (view if mounted else copy), mounted
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(view)], check=False)  # open memory maps
        subprocess.run(["chmod", "-R", "u+w", str(copy)], check=True)


def test_a_read_only_collection_is_fully_usable_and_never_written(
        read_only: tuple[Path, bool], tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    from mclip_explorer.widget.explorer import ExplorerWidget
    from tests.test_widget import Front

    folder, mounted = read_only
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    monkeypatch.delenv("MCLIP_EXPLORER_CACHE", raising=False)
    if mounted:
        assert not _files.is_writable_folder(folder)
        with pytest.raises(OSError):
            (folder / "probe").write_bytes(b"x")  # the premise: writes really fail here
    attempts: list[Path] = []
    real = _files.atomic_write

    def recording(path: Path, content: object) -> object:
        attempts.append(Path(path))
        return real(path, content)  # type: ignore[arg-type]

    monkeypatch.setattr("mclip_explorer.collection.thumbnails.atomic_write", recording)
    before = _snapshot(folder)
    # Root writes through chmod a-w: without a read-only mount, say it with the flag.
    coll = Collection.open(folder, read_only=None if mounted or os.geteuid() else True)
    assert coll.read_only
    hits = coll.search("giallo", k=4)
    assert len(hits) == 4
    front = Front(ExplorerWidget(coll))
    content, buffers = front.request("search", text="giallo", k=4, thumbs=48)
    assert content["ok"], content
    assert all(len(b) > 0 for b in buffers[3:]) and len(buffers) == 3 + 4
    assert _snapshot(folder) == before
    # The thumbnails went to the user's cache folder (XDG_CACHE_HOME); no write was attempted
    # in the collection.
    cached = list((tmp_path / "xdg" / "mclip-explorer" / "thumbs").rglob("*.webp"))
    assert len(cached) == 4
    assert attempts and not [p for p in attempts if p.is_relative_to(folder)]
    with pytest.raises(CollectionError, match="is read-only"):
        coll.remove([0])
    assert _snapshot(folder) == before


def test_thumbnails_survive_a_full_disk(source: Path, tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch):
    """No place to cache them at all: thumbnails are made in memory, the widget keeps working."""
    from mclip_explorer.widget.explorer import ExplorerWidget
    from tests.test_widget import Front

    copy = tmp_path / "coll"
    shutil.copytree(source, copy)
    shutil.rmtree(copy / "thumbs", ignore_errors=True)
    monkeypatch.setenv("MCLIP_EXPLORER_CACHE", str(tmp_path / "cache"))

    def full(path: object, content: object) -> object:
        raise WriteError(f"could not write {path}: the disk is full (ENOSPC)")

    monkeypatch.setattr("mclip_explorer.collection.thumbnails.atomic_write", full)
    front = Front(ExplorerWidget(Collection.open(copy)))
    content, buffers = front.request("search", text="giallo", k=4, thumbs=48)
    assert content["ok"], content
    ids = np.frombuffer(buffers[0], "<u4")
    for item_id, data in zip(ids, buffers[3:], strict=True):
        assert data[:4] == b"RIFF" and data[8:12] == b"WEBP", item_id
    assert not (copy / "thumbs").exists() and not (tmp_path / "cache").exists()


def test_user_cache_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("MCLIP_EXPLORER_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert _files.user_cache_dir() == tmp_path / "xdg" / "mclip-explorer"
    monkeypatch.setenv("MCLIP_EXPLORER_CACHE", str(tmp_path / "own"))
    assert _files.user_cache_dir() == tmp_path / "own"
