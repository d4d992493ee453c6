"""Runs inside a side virtualenv holding clip-retrieval 2.45.0 (see scripts/clip_retrieval_venv.sh).

clip-retrieval pins numpy<2 and its package ``__init__`` imports every tool (flask, torch...), so
its modules are loaded here by file path and driven from ``tests/test_interop_clip_retrieval.py``
through this script. Never imports mclip_explorer.

Usage:
    python clip_retrieval_side.py write OUT IMAGES.npy TEXTS.npy KEYS.json PARTITIONS
    python clip_retrieval_side.py index EMB_FOLDER INDEX_FOLDER QUERIES.npy K
"""

import importlib.util
import json
import sys
from pathlib import Path

import numpy as np


def package_dir() -> Path:
    spec = importlib.util.find_spec("clip_retrieval")
    return Path(spec.submodule_search_locations[0])


def load(name: str, relative: str):
    spec = importlib.util.spec_from_file_location(name, package_dir() / relative)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def write(out: str, images: str, texts: str, keys: str, partitions: str) -> None:
    """Write embeddings with clip-retrieval's own OutputSink, partitioned round-robin as its
    distributor splits the input (partition i gets input rows j with j % count == i)."""
    writer = load("cr_writer", "clip_inference/writer.py")
    image_embs, text_embs = np.load(images), np.load(texts)
    names = json.loads(Path(keys).read_text())
    count = int(partitions)
    for part in range(count):
        rows = np.arange(part, len(image_embs), count)
        sink = writer.OutputSink(out, True, True, False, part, count)
        # clip-retrieval's mapper casts to float16 before the sink sees the batch
        sink.add({"image_embs": image_embs[rows].astype(np.float16),
                  "image_filename": [names["keys"][i] for i in rows],
                  "text": [names["captions"][i] for i in rows],
                  "text_embs": text_embs[rows].astype(np.float16)})
        sink.flush()


def index(emb_folder: str, index_folder: str, queries: str, k: str) -> None:
    """Build the indexes with clip-retrieval's clip_index (autofaiss), query them, and read the
    metadata back with embedding-reader as clip-retrieval's back end lines it up with ids."""
    import faiss
    from embedding_reader import EmbeddingReader

    load("cr_index", "clip_index.py").clip_index(
        emb_folder, index_folder, max_index_memory_usage="1G", current_memory_available="2G",
        nb_cores=1)
    found = {}
    for kind in ("image", "text"):
        idx = faiss.read_index(f"{index_folder}/{kind}.index")
        _, ids = idx.search(np.load(queries).astype(np.float32), int(k))
        found[kind] = ids.tolist()
    reader = EmbeddingReader(f"{emb_folder}/img_emb", file_format="parquet_npy",
                             metadata_folder=f"{emb_folder}/metadata",
                             meta_columns=["image_path", "caption"])
    embs, metas = [], []
    for emb, meta in reader(batch_size=10**6, start=0, end=reader.count, parallel_pieces=1):
        embs.append(emb)
        metas.append(meta)
    meta = metas[0] if len(metas) == 1 else __import__("pandas").concat(metas)
    first = sorted(Path(emb_folder, "img_emb").glob("*.npy"))[0]
    print(json.dumps({"ids": found, "count": int(reader.count), "dim": int(reader.dimension),
                      "dtype": str(np.load(first).dtype),
                      "image_path": meta["image_path"].tolist(),
                      "caption": meta["caption"].tolist()}))


if __name__ == "__main__":
    {"write": write, "index": index}[sys.argv[1]](*sys.argv[2:])
