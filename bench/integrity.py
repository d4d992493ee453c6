"""What verification costs: checksums on open, verified writes (issue 9, point 2).

Builds one synthetic collection of ``N`` clustered 512-d vectors (the generator of
``bench/collection.py``) with a real hnswlib index, then times, each in a warm page cache:

* ``Collection.open`` with checksum verification, and the part of it spent verifying;
* the streamed xxh3-128 checksum alone on a large file (default 2 GiB), cold-ish and warm;
* one verified commit (``remove`` of one item: every generation file rewritten and read back).

    nice -n 19 python bench/integrity.py --n 100000 --big-gib 2 --json /tmp/integrity.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from collection import clustered

from mclip_explorer import _files
from mclip_explorer.collection import Collection, _commit, store
from mclip_explorer.collection.index import VectorIndex


def synthetic_collection(folder: Path, n: int) -> None:
    """A collection folder of ``n`` image items without images (vectors only)."""
    import pandas as pd

    vectors = clustered(n)
    index = VectorIndex(vectors.shape[1], num_threads=-1)
    index.add(np.arange(n), vectors)
    items = pd.DataFrame({"id": np.arange(n), "kind": "image", "path": None, "text": None,
                          "lang": None, "title": None, "bytes": None, "width": None,
                          "height": None, "sha256": None, "error": None, "deleted": False})
    from mclip_explorer.collection.building import normalise_items

    manifest = store.new_manifest(folder, "toy", "0" * 32, vectors.shape[1], "float16", 1)
    manifest["projection"] = {"method": "pca", "n": n}
    coords = np.zeros((n, 2), np.float32)
    _commit.write_generation(folder, manifest, set(store.ROLES), items=normalise_items(items),
                             embeddings=vectors, coords=coords,
                             stretch=np.zeros(n, np.float32), indexes={"image": index})


def timed(call: Any, repeat: int = 3) -> float:
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--big-gib", type=float, default=2.0)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="mclip-integrity-"))
    out: dict[str, Any] = {"n": args.n, "machine": f"{platform.machine()}, {os.cpu_count()} "
                           f"cores, {platform.python_version()}"}
    folder = root / "coll"
    folder.mkdir()
    start = time.perf_counter()
    synthetic_collection(folder, args.n)
    out["build_s"] = round(time.perf_counter() - start, 1)
    manifest = store.read_manifest(folder)
    out["files_mb"] = round(sum(e["bytes"] for e in manifest["files"].values() if e) / 2**20, 1)
    Collection.open(folder)  # warm the page cache
    out["open_s"] = round(timed(lambda: Collection.open(folder)), 3)
    out["verify_s"] = round(timed(lambda: _commit.verify_files(folder, manifest)), 3)
    coll = Collection.open(folder)
    out["commit_remove_one_s"] = round(timed(lambda: coll.remove([int(coll.vectors()[0][0])]),
                                             repeat=1), 3)
    big = root / "big.bin"
    chunk = np.random.default_rng(0).integers(0, 256, 64 << 20, dtype=np.uint8).tobytes()
    with big.open("wb") as handle:
        for _ in range(int(args.big_gib * 16)):
            handle.write(chunk)
    size = big.stat().st_size
    first = timed(lambda: _files.checksum(big), repeat=1)
    warm = timed(lambda: _files.checksum(big))
    out["checksum_file_gib"] = round(size / 2**30, 2)
    out["checksum_first_s"] = round(first, 3)
    out["checksum_warm_s"] = round(warm, 3)
    out["checksum_warm_gib_s"] = round(size / 2**30 / warm, 2)
    big.unlink()
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2) + "\n")


if __name__ == "__main__":
    main()
