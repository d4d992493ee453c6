"""Engine throughput: one synthetic WebDataset built with ``engine="local"`` and ``engine="ray"``.

Everything is made here, offline: N photo-like 256 px JPEGs (img2dataset's default size) with a
caption and a JSON record each, written as tar shards; the model is a real-size architecture with
random weights (ViT-B/32 by default; speed does not depend on the weight values) or the toy model.
Both engines build the same source through the public API (``Collection.build``) into fresh
folders, alternating engines for ``--rounds`` rounds; images/s is N over the whole build (read,
hash, encode, index, map). The Ray cluster is started before timing (``ray.init``), so its
start-up is reported apart; actor start-up and model shipping are inside the Ray figure.

    HF_HUB_OFFLINE=1 python bench/scale.py --images 512 --rounds 2 --json out.json
    HF_HUB_OFFLINE=1 python bench/scale.py --model toy --images 5000

The memory figures of the issue (1M/2M items) come from ``bench/scale_memory.py``.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import statistics
import sys
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def write_webdataset(root: Path, count: int, per_shard: int, seed: int = 0) -> str:
    """``count`` samples (``.jpg``, ``.txt``, ``.json``) in shards; returns the brace pattern."""
    from PIL import Image

    root.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    shards = (count + per_shard - 1) // per_shard
    y, x = np.mgrid[0:256, 0:256].astype(np.float32)
    for shard in range(shards):
        with tarfile.open(root / f"{shard:05d}.tar", "w") as tar:
            for row in range(shard * per_shard, min(count, (shard + 1) * per_shard)):
                key = f"{shard * 10**4 + row % per_shard:09d}"
                angle = rng.uniform(0, np.pi)
                wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) / rng.uniform(6, 30))
                pixels = rng.uniform(0, 255, 3) + 60 * wave[..., None] + rng.normal(0, 18,
                                                                                    (256, 256, 3))
                buffer = io.BytesIO()
                Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(
                    buffer, format="JPEG", quality=95)
                members = {"jpg": buffer.getvalue(), "txt": f"synthetic image {row}".encode(),
                           "json": json.dumps({"key": key, "status": "success"}).encode()}
                for suffix, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{suffix}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
    return f"{root}/{{00000..{shards - 1:05d}}}.tar"


def load_encoder(name: str, scratch: Path) -> Any:
    """The toy model, or a real-size open_clip architecture with random weights."""
    from mclip_explorer.models import load_model

    if name == "toy":
        return load_model("toy")
    from encode import IMAGE_MODELS, write_open_clip_weights

    model_id, repo, arch = IMAGE_MODELS[name]
    write_open_clip_weights(scratch / "weights" / repo, arch)
    return load_model(model_id, device="cpu", weights_dir=scratch / "weights")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=512)
    parser.add_argument("--per-shard", type=int, default=64)
    parser.add_argument("--model", default="ViT-B/32", help="'toy', 'ViT-B/32' or 'RN50x4'")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--concurrency", type=int, default=None, help="Ray encoder actors")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import ray

    from mclip_explorer.collection import Collection

    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "machine": {"cpu": platform.processor() or platform.machine(), "cores": cores,
                    "python": platform.python_version(), "ray": ray.__version__,
                    "load_average_1min_before": round(os.getloadavg()[0], 2)},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    with tempfile.TemporaryDirectory(prefix="mclip-scale-") as scratch_name:
        scratch = Path(scratch_name)
        start = time.perf_counter()
        source = write_webdataset(scratch / "wds", args.images, args.per_shard)
        results["dataset"] = {"images": args.images, "shards": len(list(
            (scratch / "wds").glob("*.tar"))), "seconds_to_write": round(
            time.perf_counter() - start, 1), "bytes": sum(
            p.stat().st_size for p in (scratch / "wds").glob("*.tar"))}
        encoder = load_encoder(args.model, scratch)
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "120")
        start = time.perf_counter()
        from mclip_explorer.collection.engines.ray import connect

        connect(None)  # a local cluster of all cores, as engine="ray" starts it
        results["ray_init_s"] = round(time.perf_counter() - start, 1)
        rates: dict[str, list[float]] = {"local": [], "ray": []}
        built: dict[str, Any] = {}
        for round_ in range(args.rounds):
            for engine in ("local", "ray"):
                extra = {"concurrency": args.concurrency} if engine == "ray" else {}
                start = time.perf_counter()
                built[engine] = Collection.build(
                    source, model=encoder, out=scratch / f"{engine}{round_}", progress=False,
                    batch_size=args.batch_size, engine=engine, **extra)
                seconds = time.perf_counter() - start
                rates[engine].append(args.images / seconds)
                print(f"round {round_} {engine}: {args.images / seconds:.1f} images/s "
                      f"({seconds:.1f} s)", flush=True)
        ray.shutdown()
        local, remote = built["local"], built["ray"]
        same_items = local.items.equals(remote.items)
        diff = float(np.nanmax(np.abs(local._embeddings.astype(np.float32)
                                      - remote._embeddings.astype(np.float32))))
    results["images_per_s"] = {e: [round(r, 2) for r in v] for e, v in rates.items()}
    results["median_images_per_s"] = {e: round(statistics.median(v), 2) for e, v in rates.items()}
    results["ray_over_local"] = round(results["median_images_per_s"]["ray"]
                                      / results["median_images_per_s"]["local"], 3)
    results["same_items"] = same_items
    results["max_abs_embedding_difference"] = diff
    results["machine"]["load_average_1min_after"] = round(os.getloadavg()[0], 2)
    print(json.dumps(results, indent=2))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return results


if __name__ == "__main__":
    main()
