"""Import and export speed of precomputed embeddings (docs/interop.md, docs/benchmarks.md).

Writes a synthetic clip-retrieval folder (clustered float16 unit vectors, WebDataset keys,
captions) in a temporary folder, then times ``Collection.from_embeddings`` (read + normalise +
index + map + commit) and each export, and prints a JSON summary.

    HF_HUB_OFFLINE=1 python bench/interop.py --n 100000 --dim 768 --map pca
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd


def synthetic(folder: Path, n: int, dim: int, per_file: int) -> None:
    rng = np.random.default_rng(0)
    centres = rng.normal(size=(64, dim))
    for part, start in enumerate(range(0, n, per_file)):
        rows = min(per_file, n - start)
        v = centres[rng.integers(0, 64, rows)] + 0.5 * rng.normal(size=(rows, dim))
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        name = str(part).zfill(len(str(max(0, (n - 1) // per_file))))
        (folder / "img_emb").mkdir(parents=True, exist_ok=True)
        (folder / "metadata").mkdir(parents=True, exist_ok=True)
        np.save(folder / "img_emb" / f"img_emb_{name}.npy", v.astype(np.float16))
        pd.DataFrame({"image_path": [f"{i:09d}" for i in range(start, start + rows)],
                      "caption": [f"caption {i}" for i in range(start, start + rows)]}
                     ).to_parquet(folder / "metadata" / f"metadata_{name}.parquet")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--n", type=int, default=20000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--per-file", type=int, default=25000)
    parser.add_argument("--map", default="pca", choices=["auto", "umap", "pca"])
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    from mclip_explorer import Collection
    from mclip_explorer.models.toy import ToyEncoder

    encoder = ToyEncoder(dim=args.dim)  # the bench measures storage and indexing, not quality
    out: dict[str, object] = {"n": args.n, "dim": args.dim, "map": args.map}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        synthetic(root / "emb", args.n, args.dim, args.per_file)
        start = time.perf_counter()
        coll = Collection.from_embeddings(root / "emb", model=encoder, out=root / "c",
                                          map_method=args.map, progress=False)
        out["import_s"] = round(time.perf_counter() - start, 2)
        for fmt, target, options in (("clip-retrieval", root / "cr", {}),
                                     ("embedding-atlas", root / "a.parquet", {"thumb_size": 0}),
                                     ("html", root / "m.html", {"thumb_size": 0})):
            start = time.perf_counter()
            path = coll.export(fmt, target, **options)
            size = sum(p.stat().st_size for p in path.rglob("*")) if path.is_dir() else (
                path.stat().st_size)
            out[f"export_{fmt}_s"] = round(time.perf_counter() - start, 2)
            out[f"export_{fmt}_mb"] = round(size / 2**20, 1)
    out["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)
    print(json.dumps(out, indent=2))
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
