"""GPU line rate: end-to-end encode from JPEG files and from shards against forward-only.

One run on one GPU measures, for a real-size random-weight ViT-B/32 (speed does not depend on
weight values) loaded through ``load_model`` from a hub-layout folder:

- forward-only images/s (device-resident pixels, bf16 autocast as ``encode_images`` runs it);
- end to end from JPEG files (img2dataset's 256 px shards' images, and full-resolution photos),
  once per decoder (nvImageCodec, torchvision nvJPEG, CPU/PIL);
- end to end from WebDataset shards (tar members' bytes, the same 256 px JPEGs);
- each as a ratio of forward-only. Goals (issue 14): >= 0.85 x forward-only and >= 12k images/s
  for ViT-B/32 on an H100/H200.

    python bench/gpu.py --device cuda --images 16384 --batch-size 256 --json gpu.json
    python bench/gpu.py --device cpu --images 64 --batch-size 16    # smoke run of the script

Ratios are taken within one run; absolute numbers move with the machine.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import sys
import tarfile
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import encode as encode_bench

GOAL_RATIO, GOAL_RATE = 0.85, 12_000
SHARD_SIZE = 1000  # img2dataset's default number of samples per shard


def write_photo(args: tuple[Path, int, tuple[int, int]]) -> int:
    """A photo-like JPEG (gradient + noise) of the given size; returns its bytes on disk."""
    from PIL import Image

    path, seed, (width, height) = args
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    wave = np.sin((x + y * rng.uniform(0.2, 2)) / rng.uniform(8, 60))
    pixels = rng.uniform(0, 255, 3) + 60 * wave[..., None] + rng.normal(0, 18, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def make_photos(folder: Path, count: int, size: tuple[int, int], workers: int) -> list[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"{i:08d}.jpg", i, size) for i in range(count)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        list(pool.map(write_photo, jobs, chunksize=32))
    return [path for path, _, _ in jobs]


def make_shards(paths: list[Path], folder: Path) -> list[Path]:
    """img2dataset's layout: ``{00000..}.tar`` with ``KEY.jpg`` + ``KEY.txt`` per sample."""
    folder.mkdir(parents=True, exist_ok=True)
    shards = []
    for number, start in enumerate(range(0, len(paths), SHARD_SIZE)):
        shard = folder / f"{number:05d}.tar"
        with tarfile.open(shard, "w") as tar:
            for path in paths[start : start + SHARD_SIZE]:
                tar.add(path, arcname=path.name)
                caption = f"photo {path.stem}".encode()
                info = tarfile.TarInfo(f"{path.stem}.txt")
                info.size = len(caption)
                tar.addfile(info, io.BytesIO(caption))
        shards.append(shard)
    return shards


def shard_images(shards: list[Path]) -> list[bytes]:
    """The JPEG members of the shards, as bytes, in shard order (reading is not timed)."""
    out = []
    for shard in shards:
        with tarfile.open(shard) as tar:
            for member in tar:
                if member.name.endswith(".jpg"):
                    handle = tar.extractfile(member)
                    assert handle is not None
                    out.append(handle.read())
    return out


def rate(encoder: Any, items: list[Any], batch_size: int, workers: int | None) -> float:
    """Images/s of ``encode_images`` over ``items`` after a warm-up batch."""
    encoder.encode_images(items[: batch_size * 2], batch_size=batch_size, num_workers=workers)
    encode_bench.sync(encoder.device)
    start = time.perf_counter()
    out = encoder.encode_images(items, batch_size=batch_size, num_workers=workers)
    encode_bench.sync(encoder.device)
    assert np.isfinite(out).all(), "a benchmark image failed to encode"
    return len(items) / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None)
    parser.add_argument("--images", type=int, default=4096, help="256 px images (and shards)")
    parser.add_argument("--full-res", type=int, default=None, help="1920x1080 photos (default N/4)")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--forward-batches", type=int, default=20)
    parser.add_argument("--workers", type=int, default=None)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args(argv)

    import torch

    from mclip_explorer.models import load_model, nvimgcodec_decode
    from mclip_explorer.models.torch_base import select_device

    device = select_device(args.device)
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "machine": {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "cores": cores, "torch": torch.__version__,
                    "nvimgcodec": nvimgcodec_decode.available(),
                    "load_average_1min": os.getloadavg()[0]},
        "args": {k: str(v) for k, v in vars(args).items()},
    }
    decoders = ["cpu"]
    if device.type == "cuda":
        decoders = ["torchvision", *(["nvimgcodec"] if nvimgcodec_decode.available() else []),
                    "cpu"]
    with tempfile.TemporaryDirectory(prefix="mclip-gpu-bench-") as scratch:
        root = Path(scratch)
        model_id, repo, arch = encode_bench.IMAGE_MODELS["ViT-B/32"]
        encode_bench.write_open_clip_weights(root / "weights" / repo, arch)
        encoder = load_model(model_id, device=str(device), weights_dir=root / "weights")
        small = make_photos(root / "256", args.images, (256, 256), cores)
        full = make_photos(root / "full", args.full_res or max(args.batch_size, args.images // 4),
                           (1920, 1080), cores)
        shards = shard_images(make_shards(small, root / "shards"))
        forward = encode_bench.forward_only(encoder, args.batch_size, args.forward_batches)
        results["forward_only"] = forward
        print(f"forward only: {forward:,.0f} images/s", flush=True)
        for decoder in decoders:
            encoder.gpu_decode = decoder != "cpu"
            if decoder != "cpu":
                os.environ[nvimgcodec_decode.DECODER_ENV] = decoder
            for label, items in (("jpeg_256", small), ("jpeg_full", full), ("shards_256", shards)):
                value = rate(encoder, items, args.batch_size, args.workers)
                key = f"{label}/{decoder}"
                results[key] = {"images_per_s": value, "ratio": value / forward,
                                "meets_goal": value / forward >= GOAL_RATIO and value >= GOAL_RATE}
                print(f"{key}: {value:,.0f} images/s = {value / forward:.2f} x forward-only",
                      flush=True)
    results["peak_rss"] = encode_bench.peak_rss_mb()
    print(json.dumps(results, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return results


if __name__ == "__main__":
    main()
