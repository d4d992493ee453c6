"""A build or an add killed with SIGKILL at any point resumes to the uninterrupted result."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from mclip_explorer.collection import Collection
from mclip_explorer.collection.store import KILL_ENV, MANIFEST
from tests.test_collection import CountingEncoder, make_images

SHARD = 4
N_ITEMS = 34  # make_images: 11 colours x 3, plus one broken file (its failure is cached too)
ROOT = Path(__file__).resolve().parents[1]

# Runs in a child process, which kills itself at the checkpoint named in the environment.
CHILD = textwrap.dedent("""
    import sys
    from mclip_explorer.collection import Collection
    from mclip_explorer.models.toy import ToyEncoder
    command, source, out = sys.argv[1:4]
    if command == "build":
        Collection.build(source, model=ToyEncoder(), out=out, progress=False, shard_size={shard})
    else:
        Collection.open(out, model=ToyEncoder()).add(source, progress=False)
""").format(shard=SHARD)


def _run_killed(command: str, source: Path, out: Path, point: str) -> None:
    env = {**os.environ, KILL_ENV: point, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", CHILD, command, str(source), str(out)],
                          env=env, capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == -signal.SIGKILL, (point, done.returncode, done.stderr[-2000:])


def _state(path: Path) -> dict[str, object]:
    """Everything a collection holds, minus timestamps and generation numbers."""
    coll = Collection.open(path, model="toy")
    manifest = json.loads((path / MANIFEST).read_text())
    return {
        "items": coll.items,
        "embeddings": coll._embeddings,
        "coords": coll.coords,
        "stretch": coll.stretch,
        "counts": manifest["counts"],
        "index": manifest["index"],
        "search": coll.search(["red", "blau", 4], k=6),
        "knn": coll._indexes["image"].knn_graph(5),
    }


def _assert_same(a: dict[str, object], b: dict[str, object]) -> None:
    pd.testing.assert_frame_equal(a["items"], b["items"])
    pd.testing.assert_frame_equal(a["search"], b["search"])
    for key in ("embeddings", "coords", "stretch"):
        np.testing.assert_array_equal(a[key], b[key])
    for x, y in zip(a["knn"], b["knn"], strict=True):
        np.testing.assert_array_equal(x, y)
    assert a["counts"] == b["counts"] and a["index"] == b["index"]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("resume_images")
    make_images(root)
    return root


@pytest.fixture(scope="module")
def reference(images: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    out = tmp_path_factory.mktemp("reference") / "coll"
    Collection.build(images, model="toy", out=out, progress=False, shard_size=SHARD)
    return _state(out)


# point -> how many shards were safely on disk when the process died
POINTS = {
    "hashed": 0,                     # after hashing, before any encoding
    "shard-encoded:1": 0,            # first shard encoded, not yet written
    "write:shard-*": 0,              # inside the first shard's atomic write (temp file written)
    "shard:3": 3,                    # right after the third shard landed
    "shard-encoded:9": 8,            # in the last shard
    "assembled": 9,                  # everything encoded, before any collection file
    "write:embeddings.1.npy": 9,     # inside the write of the embeddings
    "wrote:index-image.1.hnsw": 9,   # hnswlib index written; items and stretch not yet
    "write:manifest.json": 9,        # the commit itself, temp manifest written
}


@pytest.mark.parametrize("point", list(POINTS))
def test_build_killed_resumes_to_the_same_collection(images: Path, reference: dict[str, object],
                                                     tmp_path: Path, point: str):
    out = tmp_path / "coll"
    _run_killed("build", images, out, point)
    assert not (out / MANIFEST).exists()
    encoder = CountingEncoder()
    Collection.build(images, model=encoder, out=out, progress=False, shard_size=SHARD)
    # At most the shard in flight is redone.
    assert encoder.encoded == max(0, N_ITEMS - POINTS[point] * SHARD)
    _assert_same(_state(out), reference)
    assert not list(out.glob(".*.tmp"))  # cache temps wait an hour: another writer may own them


def test_rebuild_killed_keeps_the_old_collection_readable(images: Path, tmp_path: Path,
                                                          reference: dict[str, object]):
    out = tmp_path / "coll"
    Collection.build(images, model="toy", out=out, progress=False, shard_size=SHARD)
    _run_killed("build", images, out, "write:items.*.parquet")
    _assert_same(_state(out), reference)  # the previous generation is still the current one


@pytest.mark.parametrize("point", ["shard:1", "write:coords.*.npy", "commit"])
def test_add_killed_leaves_the_old_state_and_resumes(images: Path, tmp_path: Path, point: str):
    first, more = tmp_path / "first", tmp_path / "more"
    make_images(first, colours=("red", "blue"), broken=False)
    make_images(more, colours=("green", "pink", "grey"), seed=3, broken=False)
    out = tmp_path / "coll"
    Collection.build(first, model="toy", out=out, progress=False)
    before = _state(out)
    _run_killed("add", more, out, point)
    _assert_same(_state(out), before)
    resumed = Collection.open(out, model="toy")
    resumed.add(more, progress=False)
    uninterrupted = tmp_path / "plain"
    Collection.build(first, model="toy", out=uninterrupted, progress=False)
    Collection.open(uninterrupted, model="toy").add(more, progress=False)
    _assert_same(_state(out), _state(uninterrupted))
