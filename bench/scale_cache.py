"""The embedding cache at scale: memory and time to open a cache of N items and look them all up.

This is the step of ``Collection.build`` between encoding and indexing: every item's vector is
read from the content-keyed cache (float32 shards, as the encoders wrote them) into the scratch
float16 store that the index and map then read. The cache is filled once by a separate process
from the vectors of ``bench/scale_memory.py`` (keys: SHA-256 hex, one shard per 1,024 items, the
default ``shard_size``); the measured process opens it and calls ``lookup_into``, the same calls
``building.encode_source`` makes.

    nice -n 19 python bench/scale_cache.py --sizes 1000000 --json /tmp/cache.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collection import CACHE, DIM, machine
from scale_memory import GiB, ProcSampler, current_rss, peak_rss, source_files

SHARD = 1024
FINGERPRINT = "bench"


def keys_of(start: int, stop: int) -> list[str]:
    return [hashlib.sha256(f"image {i}".encode()).hexdigest() for i in range(start, stop)]


def cache_root(n: int) -> Path:
    return CACHE / f"cache-{n}-{DIM}"


def fill(n: int) -> None:
    """Write the cache of ``n`` items once (a separate process: its memory is not measured)."""
    from mclip_explorer.collection.embedding_cache import EmbeddingCache

    root = cache_root(n)
    done = root / "complete"
    if done.exists():
        return
    vectors = np.load(source_files(n)[0], mmap_mode="r")
    cache = EmbeddingCache(root, FINGERPRINT, DIM)
    for start in range(0, n, SHARD):
        stop = min(n, start + SHARD)
        cache.add_shard(keys_of(start, stop), np.asarray(vectors[start:stop], np.float32),
                        [""] * (stop - start))
    done.write_text("ok\n")


def run_one(n: int) -> dict[str, Any]:
    """Open the cache and look every item up into a float16 scratch store; check the rows."""
    from mclip_explorer.collection import store
    from mclip_explorer.collection.embedding_cache import EmbeddingCache

    keys = keys_of(0, n)
    baseline = current_rss()  # interpreter, NumPy and the n keys as Python strings
    with tempfile.TemporaryDirectory(dir=CACHE) as folder, ProcSampler() as proc:
        start = time.perf_counter()
        cache = EmbeddingCache(cache_root(n), FINGERPRINT, DIM)
        opened = time.perf_counter()
        after_open = current_rss()
        out = store.scratch_rows(Path(folder), n, DIM, np.float16)
        reasons = cache.lookup_into(keys, out)
        looked_up = time.perf_counter()
        peak = peak_rss()
        source = np.load(source_files(n)[0], mmap_mode="r")
        rows = np.random.default_rng(0).choice(n, 2000, replace=False)
        same = bool(np.array_equal(out[rows], source[rows]))
    shard_bytes = sum(p.stat().st_size for p in cache.folder.glob("shard-*.npz"))
    return {
        "n": n, "dim": DIM, "shards": len(cache._shards), "cache_gib": round(shard_bytes / GiB, 3),
        "open_s": round(opened - start, 1), "lookup_s": round(looked_up - opened, 1),
        "baseline_gib": round(baseline / GiB, 3),
        "key_index_gib": round((after_open - baseline) / GiB, 3),
        "peak_gib": round(peak / GiB, 3), "peak_anon_gib": round(proc.peak["RssAnon"] / GiB, 3),
        "peak_file_gib": round(proc.peak["RssFile"] / GiB, 3),
        "float32_vectors_gib": round(n * DIM * 4 / GiB, 3),
        "all_found": all(r is None for r in reasons), "rows_equal_source": same,
        "loadavg_at_end": os.getloadavg(),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--fill", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.fill:
        fill(args.fill)
        return
    if args.one:
        print(json.dumps(run_one(args.one)))
        return
    rows = []
    for n in args.sizes:
        source_files(n)
        subprocess.run([sys.executable, __file__, "--fill", str(n)], check=True)
        done = subprocess.run([sys.executable, __file__, "--one", str(n)], capture_output=True,
                              text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    text = json.dumps({"machine": machine(), "runs": rows}, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
