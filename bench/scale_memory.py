"""Beyond RAM: build time, peak memory, search p95 and map time of 1M-2M-item collections.

Each size runs in a fresh process (peak RSS is per process). The vectors are the CLIP-like
clustered embeddings of ``bench/collection.py`` (never uniform random vectors), written once by a
separate process as a clip-retrieval style pair: a float16 ``img_emb.npy`` and a
``metadata.parquet`` (a WebDataset key and an URL per item). The measured process imports them
through the public API, ``Collection.from_embeddings`` (normalise into the stored precision,
index, map, commit), reopens the collection with ``Collection.open`` and searches it with
``Collection.search``.

    nice -n 19 python bench/scale_memory.py --sizes 1000000 2000000 --json /tmp/scale.json

Memory is ``VmHWM`` (peak resident set, file-backed pages of memory maps included) and a
sampler of ``/proc/self/status`` (peak anonymous and file-backed resident memory separately).
tracemalloc is not used: it cannot see hnswlib's C++ allocations, the largest part.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from collection import (
    CACHE,
    DIM,
    Stopwatch,
    clustered,
    exact_topk,
    machine,
    percentiles,
)

QUERIES = 1000
RECALL_QUERIES = 200
K = 10
GiB = 1024 ** 3


# --------------------------------------------------------------------------------- data
def source_files(n: int) -> tuple[Path, Path, Path]:
    """``(img_emb.npy, metadata.parquet, queries.npy)`` for ``n`` items, made once.

    Items and held-out queries are one draw of ``n + QUERIES`` float16 unit vectors.
    """
    import pandas as pd

    folder = CACHE / f"scale-{n}-{DIM}"
    files = folder / "img_emb.npy", folder / "metadata.parquet", folder / "queries.npy"
    if all(p.exists() for p in files):
        return files
    folder.mkdir(parents=True, exist_ok=True)
    both = folder / "both.tmp.npy"
    out = np.lib.format.open_memmap(both, mode="w+", dtype=np.float16, shape=(n + QUERIES, DIM))
    clustered(n + QUERIES, seed=0, chunk=50_000, out=out)
    out.flush()
    np.save(files[2], np.asarray(out[n:]))
    with open(folder / "img_emb.tmp", "wb") as handle:  # streamed from the map, never copied
        np.lib.format.write_array_header_1_0(handle, {
            "descr": "<f2", "fortran_order": False, "shape": (n, DIM)})
        for start in range(0, n, 65_536):
            handle.write(np.ascontiguousarray(out[start:min(n, start + 65_536)]))
    del out
    both.unlink()
    (folder / "img_emb.tmp").replace(files[0])
    pd.DataFrame({"key": [f"{i:09d}" for i in range(n)],
                  "url": [f"https://example.com/img/{i:09d}.jpg" for i in range(n)]}
                 ).to_parquet(files[1], index=False)
    return files


# ------------------------------------------------------------------------------- memory
class ProcSampler:
    """Peak VmRSS, RssAnon and RssFile of this process, sampled from /proc every 0.2 s."""

    def __init__(self) -> None:
        self.peak = {"VmRSS": 0, "RssAnon": 0, "RssFile": 0}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.2):
            self.sample()

    def sample(self) -> None:
        with open("/proc/self/status", encoding="ascii") as handle:
            for line in handle:
                key, _, value = line.partition(":")
                if key in self.peak:
                    self.peak[key] = max(self.peak[key], int(value.split()[0]) * 1024)

    def __enter__(self) -> ProcSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.sample()


def current_rss() -> int:
    with open("/proc/self/status", encoding="ascii") as handle:
        return next(int(line.split()[1]) * 1024 for line in handle if line.startswith("VmRSS:"))


def peak_rss() -> int:
    """VmHWM, this process's peak resident set: unlike ``ru_maxrss`` it is not inherited across
    ``exec`` from the parent (which made the data and may have been larger)."""
    with open("/proc/self/status", encoding="ascii") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


# --------------------------------------------------------------------------------- run
def run_one(n: int, sample: int, ef_construction: int | None,
            map_method: str = "auto") -> dict[str, Any]:
    """Import, reopen and search one collection of ``n`` items in this process."""
    from mclip_explorer.collection import Collection, building, layout
    from mclip_explorer.collection.index import VectorIndex
    from mclip_explorer.models.toy import ToyEncoder

    emb, meta, queries_file = source_files(n)
    queries = np.load(queries_file).astype(np.float32)
    queries /= np.linalg.norm(queries, axis=1, keepdims=True)
    if ef_construction:  # the image index only; memory does not depend on it (links are M-bound)
        Collection._new_index = lambda self: VectorIndex(  # type: ignore[method-assign]
            self.dim, ef_construction=ef_construction)
    stages: list[tuple[str, float]] = []  # ru_maxrss when each stage ended: where the peak is

    def noting(owner: Any, name: str) -> Any:
        original = getattr(owner, name)

        def call(*args: Any, **kwargs: Any) -> Any:
            out = original(*args, **kwargs)
            stages.append((name, round(peak_rss() / GiB, 3)))
            return out

        setattr(owner, name, call)
        return original

    originals = [(building, "index_vectors", noting(building, "index_vectors")),
                 (layout, "fit_map", noting(layout, "fit_map")),
                 (layout, "first_map", noting(layout, "first_map"))]
    watch = Stopwatch()
    watch.wrap(building, "index_vectors", "index")
    baseline = current_rss()  # interpreter, NumPy, pandas, the queries: before the build
    with tempfile.TemporaryDirectory(dir=CACHE) as folder, ProcSampler() as proc:
        out = Path(folder) / "coll"
        start, cpu = time.perf_counter(), time.process_time()
        coll = Collection.from_embeddings((emb, meta), model=ToyEncoder(dim=DIM), out=out,
                                          texts=False, progress=False, map_method=map_method,
                                          map_sample=sample)
        build_s, build_cpu = time.perf_counter() - start, time.process_time() - cpu
        build_peak = peak_rss()
        watch.restore()
        for owner, name, original in originals:
            setattr(owner, name, original)
        projection = dict(coll.manifest["projection"])
        index_file = out / coll.manifest["files"]["index_image"]["name"]
        emb_file = out / coll.manifest["files"]["embeddings"]["name"]
        index_bytes, vector_bytes = index_file.stat().st_size, emb_file.stat().st_size
        del coll
        start = time.perf_counter()
        coll = Collection.open(out, model=ToyEncoder(dim=DIM))
        open_s = time.perf_counter() - start
        stored = coll._embeddings
        memory_mapped = isinstance(stored, np.memmap)
        coll.search(queries[0], k=K)  # warm-up
        lat = []
        for q in queries:
            t = time.perf_counter()
            coll.search(q, k=K)
            lat.append(time.perf_counter() - t)
        got, _ = coll.neighbours(queries[:RECALL_QUERIES], K)
        best = exact_topk(stored, queries[:RECALL_QUERIES], K)
        recall = float(np.mean([len(np.intersect1d(a, b)) / K for a, b in zip(got, best,
                                                                              strict=True)]))
        placed = np.isfinite(coll.coords).all(axis=1).mean()
    base = vector_bytes + index_bytes
    return {
        "n": n, "dim": DIM, "map_sample": sample, "ef_construction": ef_construction or 200,
        "build_s": round(build_s, 1), "build_cpu_s": round(build_cpu, 1),
        "index_s": round(watch.seconds.get("index", 0.0)
                         - projection.get("sample_index_seconds", 0.0), 1),
        "map_s": projection.get("seconds"), "map_fit_s": projection.get("fit_seconds"),
        "map_place_s": projection.get("place_seconds"), "map_method": projection.get("method"),
        "map_sampled": projection.get("sample"), "map_placed": projection.get("placed"),
        "share_on_map": round(float(placed), 4),
        "open_s": round(open_s, 2), "memory_mapped_on_open": memory_mapped,
        "search": percentiles(lat), "recall_at_10_vs_exact_f16": round(recall, 4),
        "ef": coll._indexes["image"].search_ef,
        "vectors_gib": round(vector_bytes / GiB, 3), "index_gib": round(index_bytes / GiB, 3),
        "index_bytes_per_item": round(index_bytes / n, 1),
        "baseline_gib": round(baseline / GiB, 3), "peak_build_gib": round(build_peak / GiB, 3),
        "peak_after_stage_gib": stages,
        "peak_total_gib": round(peak_rss() / GiB, 3),
        "peak_anon_gib": round(proc.peak["RssAnon"] / GiB, 3),
        "peak_file_gib": round(proc.peak["RssFile"] / GiB, 3),
        "peak_over_vectors_plus_index": round(build_peak / base, 3),
        "loadavg_at_end": os.getloadavg(),
    }


def memory_model(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """Peak = vectors (2d B/item) + index (measured B/item) + other; other = a + b * N.

    ``a`` and ``b`` come from the two largest runs (the sample fit is a constant; the items
    table and the map arrays grow with N). Extrapolated to 10M and 100M.
    """
    rows = sorted(rows, key=lambda r: r["n"])
    per_index = rows[-1]["index_bytes_per_item"]
    other = [(r["n"], r["peak_build_gib"] * GiB - (r["vectors_gib"] + r["index_gib"]) * GiB)
             for r in rows]
    if len(other) >= 2:
        (n1, o1), (n2, o2) = other[-2], other[-1]
        per_other = max(0.0, (o2 - o1) / (n2 - n1))
        fixed = o2 - per_other * n2
    else:
        per_other, fixed = 0.0, other[-1][1]
    out: dict[str, Any] = {"vector_bytes_per_item": 2 * DIM, "index_bytes_per_item": per_index,
                           "other_bytes_per_item": round(per_other, 1),
                           "other_fixed_gib": round(fixed / GiB, 3)}
    for n in (10_000_000, 100_000_000):
        vec, idx = 2 * DIM * n / GiB, per_index * n / GiB
        peak = vec + idx + (fixed + per_other * n) / GiB
        out[str(n)] = {"vectors_gib": round(vec, 1), "index_gib": round(idx, 1),
                       "peak_gib": round(peak, 1), "ratio": round(peak / (vec + idx), 3)}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000_000, 2_000_000])
    parser.add_argument("--map-sample", type=int, default=None,
                        help="map sample size (default: the collection's MAP_SAMPLE)")
    parser.add_argument("--ef-construction", type=int, default=None,
                        help="image index ef_construction (default: the collection's, 200); "
                             "a lower one builds faster with the same memory")
    parser.add_argument("--map-method", choices=("auto", "umap", "pca"), default="auto",
                        help="pca: no sample fit, for a memory-only run (PCA streams)")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # child process: one size
    args = parser.parse_args()
    from mclip_explorer.collection.layout import MAP_SAMPLE

    sample = args.map_sample or MAP_SAMPLE
    if args.one:
        row = json.dumps(run_one(args.one, sample, args.ef_construction, args.map_method))
        (CACHE / f"scale-{args.one}.result.json").write_text(row + "\n")
        print(row)
        return
    rows = []
    for n in args.sizes:
        source_files(n)  # made here, outside the measured process
        extra = ["--ef-construction", str(args.ef_construction)] if args.ef_construction else []
        extra += ["--map-method", args.map_method]
        done = subprocess.run([sys.executable, __file__, "--one", str(n), "--map-sample",
                               str(sample), *extra], capture_output=True, text=True, check=True)
        rows.append(json.loads(done.stdout.strip().splitlines()[-1]))
        print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
    result = {"machine": machine(), "runs": rows, "model": memory_model(rows)}
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text + "\n")


if __name__ == "__main__":
    main()
