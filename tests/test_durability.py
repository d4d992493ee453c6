"""Failed writes, full disks, bit rot, damaged cache shards and file modes (issue 9, points 1-3, 9).

The file-size-limit and crash cases run in subprocesses: a limit set with ``RLIMIT_FSIZE`` would
stop pytest's own writes, and a segfault must fail a test rather than end the run.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
import textwrap
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mclip_explorer import _files
from mclip_explorer.collection import Collection
from mclip_explorer.collection.store import MANIFEST
from mclip_explorer.errors import CollectionError, DamageWarning, WriteError
from mclip_explorer.models.toy import ToyEncoder
from tests.test_collection import CountingEncoder, make_images

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dur_images")
    make_images(root, broken=False)
    return root


@pytest.fixture(scope="module")
def more_images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("dur_more")
    make_images(root, colours=("red", "blue"), per_colour=4, seed=7, broken=False)
    return root


@pytest.fixture(scope="module")
def built(images: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("dur") / "coll"
    Collection.build(images, model=ToyEncoder(), out=out, progress=False)
    return out


def _copy(built: Path, target: Path) -> Path:
    shutil.copytree(built, target)
    return target


def _state(path: Path) -> tuple[int, pd.DataFrame]:
    """Generation and a search result of a collection that must open."""
    coll = Collection.open(path, model=ToyEncoder())
    return int(coll.manifest["generation"]), coll.search("red", k=8)


def _run(code: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code), *args], env=env,
                          capture_output=True, text=True, timeout=120, check=False)


# ------------------------------------------------------------------ point 1: failed writes
_ADD_UNDER_LIMIT = """
    import resource, sys
    from mclip_explorer.collection import Collection
    from mclip_explorer.errors import WriteError
    from mclip_explorer.models.toy import ToyEncoder
    coll = Collection.open(sys.argv[1], model=ToyEncoder())
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        coll.add(sys.argv[2], progress=False)
    except WriteError as exc:
        print("WriteError:", exc)
        sys.exit(3)
    print("added")
"""


@pytest.fixture(scope="module")
def added_sizes(built: Path, more_images: Path, tmp_path_factory: pytest.TempPathFactory
                ) -> dict[str, int]:
    """Sizes of the files an unlimited add() writes (the control for the limits below)."""
    path = _copy(built, tmp_path_factory.mktemp("dur_sizes") / "coll")
    result = _run(_ADD_UNDER_LIMIT, str(path), str(more_images), str(1 << 30))
    assert result.returncode == 0, result.stdout + result.stderr
    assert len(Collection.open(path).items) == 33 + 8
    return {p.name.split(".")[0]: p.stat().st_size for p in path.rglob("*") if p.is_file()}


@pytest.mark.parametrize("first_over", ["cache", "items", "index only"])
def test_a_write_over_the_file_size_limit_keeps_the_previous_generation(
        built: Path, more_images: Path, tmp_path: Path, added_sizes: dict[str, int],
        first_over: str):
    """EFBIG part-way through add(): the commit aborts and the old state stays searchable.

    "index only" sets the limit between the largest other file and the hnswlib index: its C++
    writer ignores the error and leaves a truncated file, which before this fix was committed
    (and the previous generation deleted, so the collection no longer opened).
    """
    others = max(size for name, size in added_sizes.items() if not name.startswith("index"))
    assert added_sizes["index-image"] > others + 100  # the premise of "index only"
    limit = {"cache": 1_000, "items": added_sizes["items"] - 100,
             "index only": (others + added_sizes["index-image"]) // 2}[first_over]
    path = _copy(built, tmp_path / "coll")
    before_generation, before_hits = _state(path)
    before_files = sorted(p.name for p in path.iterdir())
    result = _run(_ADD_UNDER_LIMIT, str(path), str(more_images), str(limit))
    assert result.returncode == 3, result.stdout + result.stderr
    assert "file-size limit (ulimit -f) (EFBIG)" in result.stdout
    generation, hits = _state(path)
    assert generation == before_generation
    pd.testing.assert_frame_equal(hits, before_hits)
    assert sorted(p.name for p in path.iterdir()) == before_files  # no stray files either


_REBUILD_UNDER_LIMIT = """
    import resource, sys
    from mclip_explorer.collection import Collection
    from mclip_explorer.errors import WriteError
    from mclip_explorer.models.toy import ToyEncoder
    limit = int(sys.argv[3])
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    try:
        Collection.build(sys.argv[2], model=ToyEncoder(), out=sys.argv[1], progress=False)
    except WriteError as exc:
        print("WriteError:", exc)
        sys.exit(3)
    print("built")
"""


def test_a_rebuild_over_the_file_size_limit_keeps_the_previous_collection(
        built: Path, images: Path, tmp_path: Path):
    """build() again into an existing collection (all cached): the index is the first file over
    the limit, and hnswlib truncates it silently."""
    path = _copy(built, tmp_path / "coll")
    before_generation, before_hits = _state(path)
    result = _run(_REBUILD_UNDER_LIMIT, str(path), str(images), "5000")
    assert result.returncode == 3, result.stdout + result.stderr
    assert "index-image.2.hnsw: the file exceeds the file-size limit" in result.stdout
    generation, hits = _state(path)
    assert generation == before_generation
    pd.testing.assert_frame_equal(hits, before_hits)


def _mount_tmpfs(target: Path, size: str) -> bool:
    target.mkdir()
    try:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs",
                               str(target)], capture_output=True, check=False)
    except OSError:  # no mount command at all
        return False
    return done.returncode == 0


def test_a_full_disk_keeps_the_previous_generation(built: Path, more_images: Path,
                                                   tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch):
    """ENOSPC: on a small tmpfs where mounting is permitted, else a simulated full disk."""
    disk = tmp_path / "disk"
    mounted = _mount_tmpfs(disk, "96k")
    try:
        path = _copy(built, disk / "coll")
        before_generation, before_hits = _state(path)
        if mounted:
            filler = disk / "filler"
            free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
            filler.write_bytes(b"\0" * max(0, free - 6_000))  # room for a few small files only
        else:
            real_write = _files._Hashing.write

            def full(self: _files._Hashing, data: object) -> int:
                if self.size > 1_000:
                    raise OSError(28, "No space left on device")
                return real_write(self, data)

            monkeypatch.setattr(_files._Hashing, "write", full)
        coll = Collection.open(path, model=ToyEncoder())
        with pytest.raises(WriteError, match=r"disk is full \(ENOSPC\)"):
            coll.add(more_images, progress=False)
        # The failed commit put the object back to the state on disk.
        assert int(coll.manifest["generation"]) == before_generation
        monkeypatch.undo()
        generation, hits = _state(path)
        assert generation == before_generation
        pd.testing.assert_frame_equal(hits, before_hits)
        assert not list(path.glob(".*.tmp"))
    finally:
        if mounted:
            subprocess.run(["umount", "--lazy", str(disk)], check=False)  # open memory maps


def test_old_generations_go_only_after_the_new_one_is_committed(
        built: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A failure while writing the manifest itself still leaves the old generation whole."""
    from mclip_explorer.collection import store

    path = _copy(built, tmp_path / "coll")
    old = {p.name for p in path.glob("*.*.*")}
    coll = Collection.open(path, model=ToyEncoder())

    def broken_manifest(target: Path, data: dict[str, object]) -> object:
        raise WriteError(f"could not write {target}: simulated")

    monkeypatch.setattr(store, "save_json", broken_manifest)
    with pytest.raises(WriteError, match="simulated"):
        coll.add_texts(["a red thing"])
    monkeypatch.undo()
    assert {p.name for p in path.glob("*.*.*")} == old
    assert Collection.open(path).manifest["counts"]["texts"] == 0


# --------------------------------------------------------------------- point 2: bit rot
_ROT = """
    import json, sys, warnings
    import numpy as np
    from mclip_explorer.collection import Collection
    from mclip_explorer.errors import CollectionError, DamageWarning
    path, expected_path = sys.argv[1], sys.argv[2]
    expected = json.loads(open(expected_path).read())
    index = sorted(__import__("pathlib").Path(path).glob("index-image.*.hnsw"))[0]
    pristine = index.read_bytes()
    rng = np.random.default_rng(0)
    outcomes = []
    for case in range(16):
        offset = int(rng.integers(0, len(pristine) - 64))
        data = bytearray(pristine)
        data[offset:offset + 64] = rng.integers(0, 256, 64, dtype=np.uint8).tobytes()
        index.write_bytes(bytes(data))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            coll = Collection.open(path)
            hits = coll.search(np.asarray(expected["query"], dtype=np.float32), k=10)
        warned = any(issubclass(w.category, DamageWarning) for w in caught)
        same = hits["id"].tolist() == expected["ids"]
        outcomes.append([offset, warned, same])
    print(json.dumps(outcomes))
"""


def test_bit_rot_in_the_index_never_crashes_or_lies(built: Path, tmp_path: Path):
    """16 random 64-byte overwrites of the hnswlib file: each is detected and repaired."""
    path = _copy(built, tmp_path / "coll")
    coll = Collection.open(path)
    query = coll.vectors()[1][0]
    expected = {"query": query.tolist(), "ids": coll.search(query, k=10)["id"].tolist()}
    (tmp_path / "expected.json").write_text(json.dumps(expected))
    result = _run(_ROT, str(path), str(tmp_path / "expected.json"))
    assert result.returncode == 0, f"crashed ({result.returncode}): {result.stderr[-2000:]}"
    outcomes = json.loads(result.stdout.strip().splitlines()[-1])
    assert len(outcomes) == 16
    for offset, warned, same in outcomes:
        assert warned, f"damage at byte {offset} went unnoticed"
        assert same, f"damage at byte {offset} changed the hits"


def test_bit_rot_in_the_embeddings_is_a_clear_error(built: Path, tmp_path: Path):
    path = _copy(built, tmp_path / "coll")
    target = next(path.glob("embeddings.*.npy"))
    data = bytearray(target.read_bytes())
    data[-100:-36] = bytes(64)
    target.write_bytes(bytes(data))
    with pytest.raises(CollectionError, match=r"damaged embeddings file .*checksum"):
        Collection.open(path)


def test_checksums_cover_every_file_the_manifest_names(built: Path):
    import xxhash

    manifest = json.loads((built / MANIFEST).read_text())
    for role, entry in manifest["files"].items():
        if entry is None:
            continue
        data = (built / entry["name"]).read_bytes()
        assert entry["xxh3_128"] == xxhash.xxh3_128(data).hexdigest(), role
        assert entry["bytes"] == len(data), role


# ----------------------------------------------------------------- point 3: cache shards
def test_a_truncated_cache_shard_is_reported_and_re_encoded(images: Path, tmp_path: Path):
    out = tmp_path / "coll"
    Collection.build(images, model=ToyEncoder(), out=out, progress=False)
    shard = next((out / "cache").glob("*/shard-*.npz"))
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(zipfile.BadZipFile):  # the damage this test is about
        np.load(shard, allow_pickle=False)["keys"]
    encoder = CountingEncoder()
    with pytest.warns(DamageWarning, match=rf"{shard.name}.*re-encod"):
        coll = Collection.build(images, model=encoder, out=out, progress=False)
    assert encoder.encoded == 33  # the shard held every item: all of them again
    assert coll.manifest["counts"]["live"] == 33


# ------------------------------------------------------------------------- point 9: umask
@pytest.mark.parametrize(("umask", "mode"), [(0o022, 0o644), (0o002, 0o664)])
def test_new_files_honour_the_umask(images: Path, tmp_path: Path, umask: int, mode: int):
    old = os.umask(umask)
    try:
        out = tmp_path / "coll"
        coll = Collection.build(images, model=ToyEncoder(), out=out, progress=False)
        coll.add_texts(["red"])
        coll.thumbnail(0, 32)
    finally:
        os.umask(old)
    files = [p for p in out.rglob("*") if p.is_file() and p.name != ".lock"]
    assert any(p.suffix == ".webp" for p in files) and any(p.suffix == ".npz" for p in files)
    wrong = {str(p.relative_to(out)): oct(stat.S_IMODE(p.stat().st_mode)) for p in files
             if stat.S_IMODE(p.stat().st_mode) != mode}
    assert not wrong, f"expected {oct(mode)}: {wrong}"


def test_collections_from_before_checksums_open_and_gain_them(built: Path, tmp_path: Path):
    path = _copy(built, tmp_path / "coll")
    manifest = json.loads((path / MANIFEST).read_text())
    for entry in manifest["files"].values():
        if entry:
            del entry["xxh3_128"]
    (path / MANIFEST).write_text(json.dumps(manifest))
    coll = Collection.open(path, model=ToyEncoder())
    coll.add_texts(["red"])
    files = json.loads((path / MANIFEST).read_text())["files"]
    assert all(len(entry["xxh3_128"]) == 32 for entry in files.values() if entry)
    manifest = json.loads((path / MANIFEST).read_text())
    del manifest["files"]["items"]["xxh3_128"]  # one deleted checksum, the others present
    (path / MANIFEST).write_text(json.dumps(manifest))
    with pytest.raises(CollectionError, match=r"missing key 'files\.items\.xxh3_128'"):
        Collection.open(path)
