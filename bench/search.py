"""Query path: ``Collection.search`` by vector against raw hnswlib ``knn_query``, same index.

The target (issue 10): ``Collection.search(vector, k=10)`` p50 within 2 x the p50 of a bare
``hnswlib.Index.knn_query`` of the same vector on the same index, at 100k items. Both loops run
single queries, one after another, over the same held-out vectors, interleaved in rounds so
that the machine's load hits both alike.

    nice -n 19 python bench/search.py --n 100000 --json /tmp/search.json

The collection is assembled in memory from synthetic CLIP-like vectors (``bench/collection.py``
``clustered``) with the constructor :meth:`Collection.open` uses, and an items table shaped like
a folder build's (path, title, folder); encoding 100k images is not what this measures. The
timed calls are the public ``Collection.search`` and ``VectorIndex``'s hnswlib index.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from collection import CACHE, build_index, machine, peak_rss_mb, percentiles, split

from mclip_explorer.collection import Collection, building
from mclip_explorer.collection.index import VectorIndex


def assemble(base: np.ndarray) -> Collection:
    """A search-ready collection over ``base`` (row = id), without files on disk."""
    import pandas as pd

    n = len(base)
    folders = np.array(["animals", "buildings", "food", "people", "plants"])
    frame = pd.DataFrame({
        "id": np.arange(n, dtype=np.int64),
        "kind": "image",
        "path": [f"/photos/{folders[i % 5]}/img_{i:06d}.jpg" for i in range(n)],
        "title": [f"img {i}" for i in range(n)],
        "folder": folders[np.arange(n) % 5],
    })
    items = building.normalise_items(frame)
    index = cached_index(base)
    coords = np.random.default_rng(0).random((n, 2), dtype=np.float32)
    manifest = {"dim": base.shape[1], "model": {"name": "synthetic", "fingerprint": "-"}}
    return Collection(Path("/nonexistent.mclip"), manifest, items, base, coords,
                      np.zeros(n, np.float32), {"image": index})


def cached_index(base: np.ndarray) -> VectorIndex:
    """The index of ``base``, built once and kept under ``$MCLIP_BENCH_CACHE`` (same seeds)."""
    path = CACHE / f"search-{len(base)}.hnsw"
    meta = path.with_suffix(".json")
    if path.is_file() and meta.is_file():
        return VectorIndex.load(path, json.loads(meta.read_text()))
    index, _ = build_index(base)
    CACHE.mkdir(parents=True, exist_ok=True)
    index.save(path)
    meta.write_text(json.dumps(index.params))
    return index


def run(n: int, queries: int, rounds: int, k: int) -> dict[str, Any]:
    base, held_out = split(n, queries=queries, seed=5)
    start = time.perf_counter()
    coll = assemble(base)
    build_s = time.perf_counter() - start
    index = coll._indexes["image"]  # the VectorIndex search uses; its hnswlib object below
    hnsw = index._index
    hnsw.set_ef(index.search_ef)
    for q in held_out[:50]:  # warm both paths (pandas and numpy first-call costs)
        coll.search(q, k)
        hnsw.knn_query(q, k=k, num_threads=1)
    raw_s: list[float] = []
    api_s: list[float] = []
    for _ in range(rounds):
        for q in held_out:
            t0 = time.perf_counter()
            hnsw.knn_query(q, k=k, num_threads=1)
            t1 = time.perf_counter()
            coll.search(q, k)
            t2 = time.perf_counter()
            raw_s.append(t1 - t0)
            api_s.append(t2 - t1)
    raw, api = percentiles(raw_s), percentiles(api_s)
    hits = coll.search(held_out[0], k)
    return {
        "n": n, "k": k, "ef": index.search_ef, "queries": len(raw_s), "setup_s": round(build_s, 1),
        "raw_knn_query": raw, "collection_search": api,
        "ratio_p50": round(api["p50_ms"] / raw["p50_ms"], 2),
        "result_columns": list(hits.columns), "peak_rss_mb": round(peak_rss_mb()),
        "machine": machine(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=500)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--k", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    out = run(args.n, args.queries, args.rounds, args.k)
    text = json.dumps(out, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
