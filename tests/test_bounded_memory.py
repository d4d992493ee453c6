"""Issue 11, point 5: a build and an ``add()`` never hold the whole collection's vectors in memory.

The embedding cache keeps only a key index (vectors stay in their shards), lookups fill a scratch
memory map shard by shard, ``add()`` writes the stored rows and the new ones as one file without
concatenating them, and a sampled map never reads the collection's index (so the index is built
after it). Memory is measured with tracemalloc, which sees every NumPy allocation.
"""

from __future__ import annotations

import io
import tracemalloc
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mclip_explorer.collection import Collection, layout, store
from mclip_explorer.collection.embedding_cache import EmbeddingCache, KeyIndex, as_keys
from mclip_explorer.collection.index import VectorIndex
from mclip_explorer.errors import DamageWarning
from mclip_explorer.models.toy import ToyEncoder
from tests.test_projection import blobs

MiB = 1 << 20


def peak_of(action: Callable[[], Any]) -> tuple[Any, int]:
    """``action()``'s result and the peak of memory it allocated (bytes, tracemalloc)."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        before = tracemalloc.get_traced_memory()[0]
        result = action()
        return result, tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()


def hexkeys(rng: np.random.Generator, n: int) -> list[str]:
    return [bytes(rng.integers(0, 256, 32, dtype=np.uint8)).hex() for _ in range(n)]


# ------------------------------------------------------------------------------ key index
def test_the_key_index_answers_like_a_dict():
    rng = np.random.default_rng(0)
    index, reference = KeyIndex(), {}
    for run in range(40):  # many small runs, as shards arrive, so runs merge many times
        keys = hexkeys(rng, int(rng.integers(1, 60)))
        locations = rng.integers(0, 1 << 40, len(keys))
        index.add(as_keys(keys), locations)
        reference.update(zip(keys, locations.tolist(), strict=True))
        if run % 7 == 0:
            asked = [*rng.choice(list(reference), 30).tolist(), *hexkeys(rng, 30), ""]
            assert index.find(as_keys(asked)).tolist() == [reference.get(k, -1) for k in asked]
    assert len(index) == len(reference)
    assert sorted(index.keys().astype(str)) == sorted(reference)
    assert len(index._runs) <= int(np.log2(len(reference))) + 1


def test_dropping_a_shard_forgets_exactly_its_keys():
    index = KeyIndex()
    index.add(as_keys(["a", "b"]), np.array([0 << 32 | 0, 0 << 32 | 1]))
    index.add(as_keys(["c"]), np.array([1 << 32 | 0]))
    index.drop(0)
    assert index.find(as_keys(["a", "b", "c"])).tolist() == [-1, -1, 1 << 32]


# --------------------------------------------------------------------------------- cache
SHARDS, PER_SHARD, DIM = 40, 512, 256  # 20 MiB of float32 vectors in the shards


@pytest.fixture(scope="module")
def filled(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], np.ndarray]:
    root = tmp_path_factory.mktemp("cache")
    rng = np.random.default_rng(1)
    cache = EmbeddingCache(root, "fp", DIM)
    keys = hexkeys(rng, SHARDS * PER_SHARD)
    vectors = rng.standard_normal((len(keys), DIM), dtype=np.float32)
    for start in range(0, len(keys), PER_SHARD):
        errors = [""] * PER_SHARD
        if start == 0:
            errors[3] = "cannot decode"
        cache.add_shard(keys[start:start + PER_SHARD], vectors[start:start + PER_SHARD], errors)
    return root, keys, vectors


def test_opening_the_cache_reads_no_vectors_into_memory(filled):
    root, keys, _ = filled
    cache, peak = peak_of(lambda: EmbeddingCache(root, "fp", DIM))
    vectors_bytes = len(keys) * DIM * 4
    # The key index (64 + 8 bytes a key) and one 1 MiB read buffer, not the 20 MiB of vectors.
    assert peak < len(keys) * 72 * 2 + 2 * MiB < vectors_bytes / 4
    assert len(cache) == len(keys)
    assert not cache.missing(keys).any() and cache.missing(["0" * 64, None]).all()


def test_a_lookup_fills_a_memory_map_one_shard_at_a_time(filled, tmp_path: Path):
    root, keys, vectors = filled
    cache = EmbeddingCache(root, "fp", DIM)
    rng = np.random.default_rng(2)
    asked: list[str | None] = [keys[i] for i in rng.permutation(len(keys))]
    asked[5:8] = [None, "f" * 64, keys[3]]
    out = store.scratch_rows(tmp_path, len(asked), DIM, np.float16)
    reasons, peak = peak_of(lambda: cache.lookup_into(asked, out))
    assert peak < 8 * PER_SHARD * DIM * 4 < len(keys) * DIM * 4 / 4  # a few shards' worth
    assert reasons[5:8] == ["unreadable", "not encoded", "cannot decode"]
    position = {k: i for i, k in enumerate(keys)}
    for row in rng.choice(len(asked), 200):
        key = asked[row]
        if row in (5, 6, 7):
            assert np.isnan(out[row]).all()
        else:
            assert key is not None
            np.testing.assert_array_equal(out[row], vectors[position[key]].astype(np.float16))
            assert reasons[row] is None
    assert list(tmp_path.iterdir()) == []  # the scratch file has no name


def test_a_shard_damaged_after_opening_is_reported_and_not_used(filled, tmp_path: Path):
    root, keys, vectors = filled
    copy = tmp_path / "cache"
    copy.mkdir()
    for shard in root.rglob("shard-*.npz"):
        target = copy / shard.relative_to(root)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(shard.read_bytes())
    cache = EmbeddingCache(copy, "fp", DIM)
    victim = sorted(copy.rglob("shard-*.npz"))[0]
    data = bytearray(victim.read_bytes())
    data[len(data) // 2] ^= 0xFF  # inside the vectors member: its CRC no longer matches
    victim.write_bytes(bytes(data))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out, reasons = cache.lookup(keys)
    assert any(issubclass(w.category, DamageWarning) and victim.name in str(w.message)
               for w in caught)
    lost = [i for i, r in enumerate(reasons) if r == "not encoded"]
    assert 0 < len(lost) <= PER_SHARD and np.isnan(out[lost]).all()
    kept = [i for i, r in enumerate(reasons) if r is None]
    np.testing.assert_array_equal(out[kept], vectors[kept])
    assert not victim.exists()  # the next build re-encodes its items


def test_scratch_rows_are_writable_and_leave_no_file(tmp_path: Path):
    rows = store.scratch_rows(tmp_path, 1000, 8, np.float16)
    rows[:] = 1.5
    assert rows.dtype == np.float16 and float(rows.sum()) == 12000.0
    assert list(tmp_path.iterdir()) == []
    assert store.scratch_rows(tmp_path, 0, 8, np.float32).shape == (0, 8)


@pytest.mark.parametrize("dtype", [np.float16, np.float32])
def test_rows_written_in_parts_are_what_np_save_writes(tmp_path: Path, dtype: Any):
    rng = np.random.default_rng(3)
    parts = [rng.standard_normal((n, 7)).astype(dtype) for n in (5, 0, 130)]
    store.save_npy(tmp_path / "a.npy", parts, chunk=16)
    expected = io.BytesIO()
    np.save(expected, np.concatenate(parts), allow_pickle=False)
    assert (tmp_path / "a.npy").read_bytes() == expected.getvalue()
    flat = rng.standard_normal(300).astype(dtype)  # one 1-D array: the map's stretch
    store.save_npy(tmp_path / "b.npy", flat, chunk=16)
    expected = io.BytesIO()
    np.save(expected, flat, allow_pickle=False)
    assert (tmp_path / "b.npy").read_bytes() == expected.getvalue()
    with pytest.raises(TypeError, match="refusing to write an object array"):
        store.save_npy(tmp_path / "c.npy", np.array([{"a": 1}], dtype=object))


# ------------------------------------------------------------------------------- add()
def test_add_does_not_copy_the_stored_embeddings_into_memory(tmp_path: Path):
    dim, n = 512, 40_000  # 39 MiB of stored float16 rows; the items table is far smaller
    vectors = blobs(n, dim=dim, clusters=8, seed=4)[0].astype(np.float32)
    np.save(tmp_path / "img_emb.npy", vectors)
    pd.DataFrame({"caption": [f"item {i}" for i in range(n)]}).to_parquet(
        tmp_path / "metadata.parquet")
    coll = Collection.from_embeddings((tmp_path / "img_emb.npy", tmp_path / "metadata.parquet"),
                                      model=ToyEncoder(dim=dim), out=tmp_path / "coll",
                                      texts=False, progress=False, map_method="pca")
    stored = n * dim * 2
    ids, peak = peak_of(lambda: coll.add_texts(["red", "rouge"]))
    # A copy of the store would be 1x; what remains is the items table and checksum buffers.
    assert peak < 0.6 * stored, f"add_texts allocated {peak / MiB:.1f} MiB"
    assert len(ids) == 2 and isinstance(coll._embeddings, np.memmap)
    reopened = Collection.open(coll.path, model=ToyEncoder(dim=dim))
    np.testing.assert_array_equal(reopened._embeddings[:n], coll._embeddings[:n])
    assert reopened._embeddings.shape == (n + 2, dim)
    assert reopened.search("red", k=1, kind="text")["id"].tolist() == [ids[0]]


# ---------------------------------------------------------------------- map before index
def test_a_sampled_map_never_reads_the_collection_index():
    vectors = blobs(400, dim=32, clusters=4, seed=5)[0].astype(np.float16)
    ids = np.arange(400)
    empty = VectorIndex(32)  # what _assemble passes when the map comes first
    coords, stretch, params = layout.first_map(empty, vectors, ids, "auto", False,
                                               sample_max=100)
    assert params is not None and params["sample"] == 100 and params["placed"] == 300
    assert np.isfinite(coords).all() and np.isfinite(stretch).all()
    assert layout.samples_map(400, "auto", 100) and not layout.samples_map(400, "pca", 100)
    assert not layout.samples_map(100, "umap", 100)
    with pytest.raises(ValueError, match="map sample size"):
        layout.samples_map(400, "auto", 1)


def test_pca_reads_a_memory_mapped_store_a_chunk_at_a_time(tmp_path: Path, monkeypatch):
    from mclip_explorer.collection import projection

    monkeypatch.setattr(projection, "_PCA_CHUNK", 4096)
    n, dim = 480_000, 64  # the rows asked for are 61 MB as float32
    store_rows = np.lib.format.open_memmap(tmp_path / "e.npy", mode="w+", dtype=np.float16,
                                           shape=(n, dim))
    store_rows[:] = blobs(n, dim=dim, clusters=6, seed=6)[0]
    rows = np.arange(0, n, 2)
    coords, peak = peak_of(lambda: projection.pca_preview(store_rows, rows))
    assert peak < len(rows) * dim * 4 / 4  # a quarter of one float32 copy of the rows
    # The same projection as on an in-memory float32 copy (each component up to its sign,
    # which both fix the same way).
    expected = projection.pca_preview(np.asarray(store_rows[rows], dtype=np.float32))
    np.testing.assert_allclose(coords, expected, atol=1e-4)
    store_rows[rows[7]] = np.nan
    with pytest.raises(ValueError, match=f"vectors row {rows[7]} is not finite"):
        projection.pca_preview(store_rows, rows)


def _resident_kib() -> dict[str, int]:
    with open("/proc/self/status", encoding="ascii") as handle:
        return {k: int(v.split()[0]) for k, _, v in (line.partition(":") for line in handle)
                if k in ("VmHWM", "VmRSS")}


@pytest.mark.skipif(not Path("/proc/self/clear_refs").exists(), reason="needs Linux procfs")
def test_checking_an_index_file_does_not_fault_it_into_memory(tmp_path: Path):
    # Mapping the level-0 block to read each element's label touched every page of the file:
    # at 1M items that added the whole 2 GiB index file to the peak of every build and open.
    from mclip_explorer.collection import _hnsw_file

    n, dim = 40_000, 256  # a 46 MB file
    index = VectorIndex(dim)
    index.add(np.arange(n), blobs(n, dim=dim, clusters=5, seed=7)[0])
    index.save(tmp_path / "i.hnsw")
    size_kib = (tmp_path / "i.hnsw").stat().st_size // 1024
    del index
    Path("/proc/self/clear_refs").write_text("5")  # resets VmHWM to the current VmRSS
    before = _resident_kib()
    labels, dead = _hnsw_file.read_layout(tmp_path / "i.hnsw", dim=dim, m=16, count=n)
    grew = _resident_kib()["VmHWM"] - before["VmRSS"]
    assert sorted(labels.tolist()) == list(range(n)) and not dead.any()
    assert grew < size_kib / 2, f"peak grew by {grew} KiB reading a {size_kib} KiB file"


def test_no_room_for_the_scratch_copy_is_an_error_not_a_crash(tmp_path: Path):
    # A sparse memory map on a full disk dies of SIGBUS at the first page written; the blocks
    # are reserved up front instead. A subprocess, so a crash fails the test instead of pytest.
    import subprocess
    import sys

    from tests.test_durability import _mount_tmpfs

    disk = tmp_path / "disk"
    if not _mount_tmpfs(disk, "1m"):
        pytest.skip("mounting a small tmpfs is not permitted here")
    try:
        code = ("import sys, numpy as np\n"
                "from pathlib import Path\n"
                "from mclip_explorer.collection import store\n"
                "from mclip_explorer.errors import WriteError\n"
                "try:\n"
                f"    rows = store.scratch_rows(Path({str(disk)!r}), 4096, 512, np.float16)\n"
                "    rows[:] = 1\n"
                "except WriteError as exc:\n"
                "    print(exc)\n"
                "    sys.exit(7)\n")
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                              timeout=120, check=False)
        assert done.returncode == 7, (done.returncode, done.stderr[-2000:])
        assert "no room for the build's scratch copy" in done.stdout
        assert "disk is full (ENOSPC)" in done.stdout
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", "--lazy", str(disk)], check=False)
