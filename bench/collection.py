"""Collection benchmarks: build stages, query latency, 1M search, filters, UMAP versus N, RSS.

Every part runs offline on data made here. Vectors are synthetic CLIP-like clustered embeddings
(clusters in a common cone, each a low-dimensional patch plus noise; nearest-neighbour cosine
about 0.94), never uniform random vectors, on which every ANN index looks broken.

    nice -n 19 python bench/collection.py search1m --json /tmp/search1m.json
    nice -n 19 python bench/collection.py stages   --json /tmp/stages.json     # index + map
    nice -n 19 python bench/collection.py pipeline --json /tmp/pipeline.json   # Collection.build
    nice -n 19 python bench/collection.py query    --json /tmp/query.json      # end to end
    nice -n 19 python bench/collection.py filters  --json /tmp/filters.json

Each part is meant to run in its own process: ``stages`` measures umap-learn's one-off numba
compile, which only a fresh process pays, and peak RSS is per process.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from mclip_explorer.collection.index import VectorIndex

DIM = 512
CACHE = Path(os.environ.get("MCLIP_BENCH_CACHE", Path(tempfile.gettempdir()) / "mclip-bench"))


# --------------------------------------------------------------------------------- data
def clustered(n: int, dim: int = DIM, *, seed: int = 0, chunk: int = 10_000,
              out: np.ndarray | None = None) -> np.ndarray:
    """``n`` CLIP-like unit vectors (see module docstring), generated in chunks (1M fits).

    ``out``: an ``(n, dim)`` array to fill instead (e.g. a float16 memory map, for 2M and up).
    """
    rng = np.random.default_rng(seed)
    clusters, local_dim = max(50, n // 1000), 12
    common = rng.normal(size=dim)
    centers = (rng.normal(size=(clusters, dim)) + 1.5 * common).astype(np.float32)
    bases = (rng.normal(size=(clusters, local_dim, dim)) / np.sqrt(local_dim)).astype(np.float32)
    if out is None:
        out = np.empty((n, dim), dtype=np.float32)
    for start in range(0, n, chunk):
        m = min(chunk, n - start)
        label = rng.integers(0, clusters, m)
        z = rng.normal(size=(m, local_dim)).astype(np.float32)
        x = centers[label] + np.einsum("nl,nld->nd", z, bases[label])
        x += 0.15 * rng.standard_normal(size=(m, dim), dtype=np.float32)
        out[start:start + m] = x / np.linalg.norm(x, axis=1, keepdims=True)
    return out


def split(n: int, queries: int = 1000, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``n`` items and ``queries`` held-out vectors from the same distribution."""
    data = clustered(n + queries, seed=seed)
    return data[:n], data[n:]


# ------------------------------------------------------------------------------ helpers
def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def timed(fn: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - start


def cpu_timed(fn: Callable[[], Any]) -> tuple[Any, float, float]:
    """Wall and CPU seconds (all threads of this process): on a shared machine the CPU time
    of a single-threaded stage is what it would take alone."""
    start, cpu = time.perf_counter(), time.process_time()
    out = fn()
    return out, time.perf_counter() - start, time.process_time() - cpu


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = np.asarray(seconds) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3),
            "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "mean_ms": round(float(ms.mean()), 3), "n": len(ms)}


def latency(fn: Callable[[int], Any], n: int, warmup: int = 20) -> dict[str, float]:
    for i in range(warmup):
        fn(i)
    seconds = []
    for i in range(n):
        start = time.perf_counter()
        fn(i)
        seconds.append(time.perf_counter() - start)
    return percentiles(seconds)


def recall(index: VectorIndex, base: np.ndarray, queries: np.ndarray, k: int = 10,
           ef: int | None = None) -> float:
    """Recall@k against exact search; ``base`` rows are ids 0..n-1."""
    got, _ = index.query(queries, k, ef=ef)
    best = exact_topk(base, queries, k)
    return float(np.mean([len(np.intersect1d(a, b)) / k for a, b in zip(got, best,
                                                                           strict=True)]))


def exact_topk(base: np.ndarray, queries: np.ndarray, k: int,
               chunk: int = 100_000) -> np.ndarray:
    """Exact top-k ids of unit ``queries`` over ``base`` (rows are ids; float16 rows are upcast
    and renormalised, as the index holds them), a chunk of rows at a time."""
    best = np.empty((len(queries), 0), dtype=np.int64)
    best_s = np.empty((len(queries), 0), dtype=np.float32)
    for start in range(0, len(base), chunk):
        rows = np.asarray(base[start:start + chunk], dtype=np.float32)
        if base.dtype != np.float32:
            rows = rows / np.linalg.norm(rows, axis=1, keepdims=True)
        sims = queries @ rows.T
        cand = np.concatenate([best_s, sims], axis=1)
        ids = np.concatenate([best, np.broadcast_to(
            np.arange(start, start + sims.shape[1]), sims.shape)], axis=1)
        top = np.argpartition(-cand, k - 1, axis=1)[:, :k]
        best, best_s = np.take_along_axis(ids, top, 1), np.take_along_axis(cand, top, 1)
    return best


def build_index(base: np.ndarray, threads: int = -1, **params: int) -> tuple[VectorIndex,
                                                                               float]:
    index = VectorIndex(base.shape[1], num_threads=threads, **params)
    _, seconds = timed(lambda: index.add(np.arange(len(base)), base))
    return index, seconds


def machine() -> dict[str, Any]:
    import hnswlib  # noqa: F401

    return {"cpus": os.cpu_count(), "python": platform.python_version(),
            "processor": platform.processor() or platform.machine(),
            "loadavg_at_start": os.getloadavg()}


# -------------------------------------------------------------------------------- parts
def part_search1m(args: argparse.Namespace) -> dict[str, Any]:
    """Search alone at 1M items: single-query latency at several ef, recall, build time."""
    n = args.n or 1_000_000
    base, queries = split(n)
    out: dict[str, Any] = {"n": n, "rss_after_data_mb": peak_rss_mb()}
    path = CACHE / f"index-{n}.hnsw"
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        params = json.loads(meta.read_text())
        index, seconds = timed(lambda: VectorIndex.load(path, params["params"]))
        out["load_s"], out["build_s"] = round(seconds, 1), params["build_s"]
    else:
        index, seconds = build_index(base)
        CACHE.mkdir(parents=True, exist_ok=True)
        index.save(path)
        meta.write_text(json.dumps({"params": index.params, "build_s": seconds}))
        out["build_s"] = round(seconds, 1)
    out["index_file_mb"] = round(path.stat().st_size / 2**20, 1)
    out["params"] = index.params
    # None is the default: auto_ef of the index size (see index.auto_ef).
    for ef in (None, 64, 128, 256, 512):
        out[f"ef{ef if ef is not None else '_default'}"] = {
            **latency(lambda i, ef=ef: index.query(queries[i % len(queries)], 10, ef=ef), 1000),
            "recall@10": round(recall(index, base, queries[:200], ef=ef), 4),
            "ef_used": ef if ef is not None else index.search_ef}
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def part_stages(args: argparse.Namespace) -> dict[str, Any]:
    """Index build and map per N on synthetic vectors, UMAP's cold compile, UMAP versus N."""
    from mclip_explorer.collection.projection import fit_map, pca_preview

    out: dict[str, Any] = {"umap_vs_n": {}}
    # Cold: the first fit in this process pays numba's compile (at N >= 4096 the bigger one).
    cold = clustered(5000, seed=7)
    index, _ = build_index(cold)
    knn = index.knn_graph(15)
    _, first, first_cpu = cpu_timed(lambda: fit_map(cold, knn=knn, method="umap",
                                                    progress=False))
    _, second, second_cpu = cpu_timed(lambda: fit_map(cold, knn=knn, method="umap",
                                                      progress=False))
    out["umap_cold_5000_s"], out["umap_warm_5000_s"] = round(first, 1), round(second, 1)
    out["umap_cold_5000_cpu_s"] = round(first_cpu, 1)
    out["umap_warm_5000_cpu_s"] = round(second_cpu, 1)
    out["umap_compile_s"] = round(first - second, 1)
    for n in args.sizes:
        base = clustered(n, seed=1)
        row: dict[str, Any] = {}
        _, row["index_1thread_s"], row["index_1thread_cpu_s"] = cpu_timed(
            lambda base=base: build_index(base, threads=1))
        index, row["index_2threads_s"] = build_index(base)
        knn, row["knn_graph_s"], row["knn_graph_cpu_s"] = cpu_timed(
            lambda index=index, base=base: index.knn_graph(15, vectors_by_id=base))
        _, row["pca_s"] = timed(lambda base=base: pca_preview(base))
        _, row["umap_s"], row["umap_cpu_s"] = cpu_timed(
            lambda base=base, knn=knn: fit_map(base, knn=knn, method="umap", progress=False))
        row["map_total_s"] = row["knn_graph_s"] + row["umap_s"]
        row["map_total_cpu_s"] = row["knn_graph_cpu_s"] + row["umap_cpu_s"]
        row = {key: round(value, 2) for key, value in row.items()}
        row["rss_mb"] = peak_rss_mb()
        out["umap_vs_n"][str(n)] = row
        print(n, row, file=sys.stderr, flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def write_pngs(folder: Path, count: int) -> list[Path]:
    """Small photo-like images (96 x 72 JPEG, about 3 kB) in a few dominant colours."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(count):
        path = folder / f"img{i:06d}.jpg"
        if not path.exists():
            colour = rng.uniform(0, 255, 3)
            pixels = colour + rng.normal(0, 25, (72, 96, 3))
            Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=85)
        paths.append(path)
    return paths


class Stopwatch:
    """Accumulates the time spent inside wrapped functions, by stage name."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.originals: list[tuple[Any, str, Any]] = []

    def restore(self) -> None:
        for owner, name, original in reversed(self.originals):
            setattr(owner, name, original)

    def wrap(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        self.originals.append((owner, name, original))

        def timed_call(*args: Any, **kwargs: Any) -> Any:
            start = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.seconds[stage] = self.seconds.get(stage, 0.0) + time.perf_counter() - start

        setattr(owner, name, timed_call)

    def wrap_iter(self, owner: Any, name: str, stage: str) -> None:
        original = getattr(owner, name)
        self.originals.append((owner, name, original))
        watch = self

        def timed_iter(*args: Any, **kwargs: Any) -> Iterator[Any]:
            it = original(*args, **kwargs)
            while True:
                start = time.perf_counter()
                try:
                    item = next(it)
                except StopIteration:
                    return
                finally:
                    watch.seconds[stage] = watch.seconds.get(stage, 0.0) + (
                        time.perf_counter() - start)
                yield item

        setattr(owner, name, timed_iter)


def part_pipeline(args: argparse.Namespace) -> dict[str, Any]:
    """Collection.build with the toy encoder: total and per stage (decode/encode/index/map)."""
    import mclip_explorer.models.toy as toy
    from mclip_explorer.collection import Collection, building, layout
    from mclip_explorer.models.toy import ToyEncoder

    out: dict[str, Any] = {}
    for n in args.sizes:
        paths = write_pngs(CACHE / "images", n)
        watch = Stopwatch()
        watch.wrap(building, "hash_payloads", "hash")
        watch.wrap(toy, "load_image", "decode")
        watch.wrap_iter(ToyEncoder, "iter_image_batches", "decode+encode")
        watch.wrap(VectorIndex, "add", "index")
        watch.wrap(VectorIndex, "knn_graph", "map")
        watch.wrap(layout, "fit_map", "map")
        with tempfile.TemporaryDirectory(dir=CACHE) as folder:
            start = time.perf_counter()
            coll = Collection.build([str(p) for p in paths], model=ToyEncoder(),
                                    out=Path(folder) / "coll", progress=False)
            total = time.perf_counter() - start
            method = coll.manifest.get("projection", {}).get("method")
        watch.restore()
        s = watch.seconds
        row = {"total_s": total, "hash_s": s.get("hash", 0), "decode_s": s.get("decode", 0),
               "encode_s": s.get("decode+encode", 0) - s.get("decode", 0),
               "index_s": s.get("index", 0), "map_s": s.get("map", 0)}
        row["other_s"] = total - sum(v for k, v in row.items() if k != "total_s")
        row = {key: round(value, 2) for key, value in row.items()}
        row["map_method"], row["rss_mb"] = method, peak_rss_mb()
        out[str(n)] = row
        print(n, row, file=sys.stderr, flush=True)
    return out


def real_size_text_tower(folder: Path) -> Any:
    """The default model's text tower at real size with random weights, via st_clip's loader.

    DistilBERT-multilingual (768 hidden, 6 layers, 12 heads, vocab 119547) -> mean pooling ->
    Dense 768 -> 512 without bias, in the hub repo's module layout. The WordPiece vocabulary is
    trained offline on a small corpus; the embedding matrix still has the real 119547 rows.
    """
    import torch
    from tokenizers import BertWordPieceTokenizer
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    from mclip_explorer.models.st_clip import StudentText

    if not (folder / "modules.json").exists():
        folder.mkdir(parents=True, exist_ok=True)
        corpus = ["a red apple on a table", "ein roter Apfel auf dem Tisch",
                  "une pomme rouge sur la table", "красное яблоко на столе",
                  "桌子上的红苹果", "テーブルの上の赤いリンゴ", "탁자 위의 빨간 사과"]
        wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False,
                                           handle_chinese_chars=True)
        wordpiece.train_from_iterator(corpus * 4, vocab_size=500,
                                      initial_alphabet=sorted(set("".join(corpus))))
        wordpiece.save_model(str(folder))
        DistilBertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=False,
                            tokenize_chinese_chars=True, strip_accents=False
                            ).save_pretrained(folder)
        torch.manual_seed(0)
        DistilBertModel(DistilBertConfig(vocab_size=119547)).save_pretrained(folder)
        modules = [{"idx": 0, "name": "0", "path": "",
                    "type": "sentence_transformers.models.Transformer"},
                   {"idx": 1, "name": "1", "path": "1_Pooling",
                    "type": "sentence_transformers.models.Pooling"},
                   {"idx": 2, "name": "2", "path": "2_Dense",
                    "type": "sentence_transformers.models.Dense"}]
        (folder / "modules.json").write_text(json.dumps(modules))
        (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": 128}))
        (folder / "1_Pooling").mkdir(exist_ok=True)
        (folder / "1_Pooling" / "config.json").write_text(json.dumps({
            "word_embedding_dimension": 768, "pooling_mode_mean_tokens": True,
            "pooling_mode_cls_token": False, "pooling_mode_max_tokens": False}))
        (folder / "2_Dense").mkdir(exist_ok=True)
        (folder / "2_Dense" / "config.json").write_text(json.dumps({
            "in_features": 768, "out_features": 512, "bias": False,
            "activation_function": "torch.nn.modules.linear.Identity"}))
        torch.save({"linear.weight": torch.randn(512, 768) / 768**0.5},
                   folder / "2_Dense" / "pytorch_model.bin")
    tower = StudentText(folder)
    device = torch.device("cpu")

    def encode(text: str) -> np.ndarray:
        with torch.inference_mode():
            vector = tower([text], device, "text").float().numpy()
        return vector / np.linalg.norm(vector, axis=1, keepdims=True)

    return encode


def part_query(args: argparse.Namespace) -> dict[str, Any]:
    """Text query end to end: encode + search (k=10) + placement, at each N."""
    import torch

    from mclip_explorer.collection.projection import fit_map, place
    from mclip_explorer.models.toy import ToyEncoder

    torch.set_num_threads(2)
    texts = ["a red apple", "ein Hund am Strand", "un chat noir", "красный автомобиль",
             "海滩上的狗", "青い空", "빨간 사과", "a bicycle leaning on a wall"]
    toy = ToyEncoder()
    real = real_size_text_tower(CACHE / "distilbert-multilingual-real-size")
    out: dict[str, Any] = {
        "text_encode_toy": latency(lambda i: toy.encode_text(texts[i % 8]), 300),
        "text_encode_real_size_distilbert": latency(lambda i: real(texts[i % 8]), 200),
    }
    for n in args.sizes:
        base, queries = split(n, seed=3)
        index, _ = build_index(base)
        coords, params = fit_map(base, knn=index.knn_graph(15), method="pca", progress=False)
        scale = params["scale"]
        # Real query vectors are not in the synthetic space; search with held-out vectors and
        # time the text encoding in the same loop, so the total is one user's query.

        def one(i: int, encode: Callable[[str], Any], index: VectorIndex = index,
                coords: np.ndarray = coords, scale: float = scale,
                queries: np.ndarray = queries) -> None:
            encode(texts[i % 8])
            ids, sims = index.query(queries[i % len(queries)], 10)
            place(ids, sims, coords, scale=scale)

        def search_only(i: int, index: VectorIndex = index,
                        queries: np.ndarray = queries) -> None:
            index.query(queries[i % len(queries)], 10)

        def place_only(i: int, index: VectorIndex = index, coords: np.ndarray = coords,
                       scale: float = scale, queries: np.ndarray = queries) -> None:
            ids, sims = index.query(queries[i % len(queries)], 10)
            place(ids, sims, coords, scale=scale)

        out[str(n)] = {
            "search": latency(search_only, 1000),
            "search+place": latency(place_only, 1000),
            "end_to_end_toy": latency(lambda i, one=one: one(i, toy.encode_text), 300),
            "end_to_end_real_size": latency(lambda i, one=one: one(i, real), 200),
        }
        print(n, out[str(n)], file=sys.stderr, flush=True)
    out["peak_rss_mb"] = peak_rss_mb()
    return out


def part_filters(args: argparse.Namespace) -> dict[str, Any]:
    """Filtered search by share of allowed items: brute force, over-fetch, hnswlib callback."""
    from mclip_explorer.collection import index as index_module

    n = args.n or 100_000
    base, queries = split(n, seed=5)
    index, _ = build_index(base)
    rng = np.random.default_rng(0)
    defaults = {name: getattr(index_module, name) for name in
                ("BRUTE_FORCE_MAX", "BRUTE_FORCE_SHARE", "BRUTE_FORCE_MAX_STORED")}
    strategies = {"brute": (n + 1, 1.0, 0), "overfetch": (0, 0.0, 0),
                  "auto": tuple(defaults.values())}
    out: dict[str, Any] = {"n": n, "defaults": defaults}
    for share in (0.001, 0.01, 0.05, 0.2, 0.9):
        allowed = np.sort(rng.choice(n, max(1, int(n * share)), replace=False))
        exact = allowed[np.argsort(-(queries[:30] @ base[allowed].T), axis=1)[:, :10]]
        row: dict[str, Any] = {"allowed": len(allowed)}
        for name, values in strategies.items():
            for key, value in zip(defaults, values, strict=True):
                setattr(index_module, key, value)

            def run(i: int, allowed: np.ndarray = allowed) -> Any:
                return index.query(queries[i % 30], 10, allowed_ids=allowed, vectors_by_id=base)

            got = [run(i)[0][0] for i in range(30)]
            row[name] = {**latency(run, 30, warmup=2), "recall@10": round(float(np.mean(
                [len(np.intersect1d(g, e)) / 10 for g, e in zip(got, exact, strict=True)])), 4)}
        for key, value in defaults.items():
            setattr(index_module, key, value)
        row["hnswlib_filter"] = hnswlib_filter(index, queries[:30], allowed, exact)
        out[str(share)] = row
        print(share, row, file=sys.stderr, flush=True)
    return out


def hnswlib_filter(index: VectorIndex, queries: np.ndarray, allowed: np.ndarray,
                   exact: np.ndarray) -> dict[str, Any]:
    """hnswlib's own filter callback (a Python call per visited node), for comparison."""
    raw, members = index._index, set(allowed.tolist())
    raw.set_ef(64)

    def run(i: int) -> Any:
        return raw.knn_query(queries[i % len(queries)], k=10, num_threads=1,
                             filter=lambda label: label in members)

    try:
        got = [run(i)[0][0] for i in range(len(queries))]
    except RuntimeError as error:  # hnswlib cannot fill k: it raises
        return {"error": str(error)}
    return {**latency(run, len(queries), warmup=2), "recall@10": round(float(np.mean(
        [len(np.intersect1d(g, e)) / 10 for g, e in zip(got, exact, strict=True)])), 4)}


PARTS = {"search1m": part_search1m, "stages": part_stages, "pipeline": part_pipeline,
         "query": part_query, "filters": part_filters}
DEFAULT_SIZES = {"stages": [1000, 10_000, 100_000], "pipeline": [1000, 10_000],
                 "query": [10_000, 100_000]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("part", choices=sorted(PARTS))
    parser.add_argument("--sizes", type=int, nargs="+", help="N values (stages/pipeline/query)")
    parser.add_argument("--n", type=int, help="N for search1m / filters")
    parser.add_argument("--json", type=Path, help="write the results here")
    args = parser.parse_args()
    args.sizes = args.sizes or DEFAULT_SIZES.get(args.part, [])
    CACHE.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    result = {"part": args.part, "machine": machine(), **PARTS[args.part](args)}
    result["wall_s"] = round(time.perf_counter() - start, 1)
    text = json.dumps(result, indent=2, default=float)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
