"""Encode throughput: images/s end to end against forward-only, texts/s per text tower, peak RSS.

Everything is built here, offline, in a temporary folder: real-size architectures with random
weights (speed does not depend on the weight values) and synthetic JPEGs of photo-like size and
entropy. Image models are loaded through ``load_model`` from a weights folder in the hub layout,
so "end to end" is the user's path: JPEG files on disk -> normalised float32 embeddings.

    python bench/encode.py                       # CPU, small N (the model dominates)
    python bench/encode.py --device cuda --images 8192 --batch-size 256 --json out.json

Ratios are measured within one run; the absolute numbers move with the machine's load.
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
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

# Image towers: name -> (open_clip model id for load_model, hub repo of its weights).
IMAGE_MODELS = {
    "ViT-B/32": ("open_clip:ViT-B-32-quickgelu/openai", "timm/vit_base_patch32_clip_224.openai",
                 "ViT-B-32-quickgelu"),
    "RN50x4": ("open_clip:RN50x4-quickgelu/openai", "timm/resnet50x4_clip.openai",
               "RN50x4-quickgelu"),
}
TEXT_TOWERS = ("DistilBERT-multilingual (ST student)", "BERT-base-multilingual (M-BERT-Base-69)",
               "XLM-R-large (M-CLIP 2022)", "AltCLIP text (XLM-R-large)", "CLIP text (ViT-B/32)")
# Photo-like sizes (width, height): landscape and portrait, as in COCO / Flickr.
JPEG_SIZES = ((500, 375), (375, 500), (640, 480), (480, 640), (500, 333), (612, 612))


# ------------------------------------------------------------------------------ fixtures
def write_jpeg(args: tuple[Path, int]) -> int:
    """One synthetic photo: gradients plus noise, so it compresses like a photo (~40-70 kB)."""
    from PIL import Image

    path, seed = args
    rng = np.random.default_rng(seed)
    width, height = JPEG_SIZES[seed % len(JPEG_SIZES)]
    y, x = np.mgrid[0:height, 0:width].astype(np.float32)
    angle = rng.uniform(0, np.pi)
    wave = np.sin((x * np.cos(angle) + y * np.sin(angle)) / rng.uniform(8, 40))
    base = rng.uniform(0, 255, 3)
    pixels = base + 60 * wave[..., None] + rng.normal(0, 18, (height, width, 3))
    Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8)).save(path, quality=90)
    return path.stat().st_size


def make_jpegs(folder: Path, count: int, workers: int) -> tuple[list[Path], float]:
    """``count`` JPEGs in ``folder``; returns the paths and their mean size in kB."""
    folder.mkdir(parents=True, exist_ok=True)
    jobs = [(folder / f"img{i:06d}.jpg", i) for i in range(count)]
    with ProcessPoolExecutor(max_workers=workers) as pool:
        sizes = list(pool.map(write_jpeg, jobs, chunksize=64))
    return [path for path, _ in jobs], float(np.mean(sizes)) / 1000


def write_open_clip_weights(folder: Path, arch: str) -> None:
    """A real-size random-weight open_clip model in the hub repo's layout."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    config = open_clip.get_model_config(arch)
    folder.mkdir(parents=True, exist_ok=True)
    preprocess = {"mean": list(open_clip.OPENAI_DATASET_MEAN),
                  "std": list(open_clip.OPENAI_DATASET_STD),
                  "interpolation": "bicubic", "resize_mode": "shortest"}
    (folder / "open_clip_config.json").write_text(
        json.dumps({"model_cfg": config, "preprocess_cfg": preprocess}))
    torch.manual_seed(0)
    model = open_clip.create_model(arch, pretrained=None, device="cpu")
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


# ------------------------------------------------------------------------------- timing
def sync(device: Any) -> None:
    import torch

    if device.type == "cuda":
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any], device: Any) -> float:
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return time.perf_counter() - start


def forward_only(encoder: Any, batch_size: int, batches: int) -> float:
    """Images/s of the tower alone on device-resident pixels (autocast as in encode_images)."""
    import torch

    size = encoder.image_size
    pixels = torch.randn(batch_size, 3, size, size, device=encoder.device)

    def run(n: int) -> None:
        with torch.inference_mode(), encoder._autocast():
            for _ in range(n):
                encoder._forward_images(pixels).float()

    run(2)  # warm-up: cuDNN autotuning, allocator, lazy init
    return batch_size * batches / timed(lambda: run(batches), encoder.device)


def end_to_end(
    encoder: Any, paths: list[Path], batch_size: int, workers: int | None
) -> tuple[dict[str, float], np.ndarray]:
    """JPEG files -> normalised embeddings through ``iter_image_batches`` (what collections use).

    Returns images/s over the whole call (worker start-up included), the seconds until the first
    batch, the steady-state images/s after it, and the embeddings.
    """
    warm = paths[: batch_size * 2]
    encoder.encode_images(warm, batch_size=batch_size, num_workers=workers)
    out = np.full((len(paths), encoder.dim), np.nan, dtype=np.float32)
    sync(encoder.device)
    start = time.perf_counter()
    first_at, first_count = 0.0, 0
    for batch in encoder.iter_image_batches(paths, batch_size=batch_size, num_workers=workers):
        out[batch.indices] = batch.embeddings
        if not first_at:
            first_at, first_count = time.perf_counter() - start, len(batch.indices)
    total = time.perf_counter() - start
    assert np.isfinite(out).all(), "a benchmark image failed to encode"
    later = len(paths) - first_count
    steady = later / (total - first_at) if later and total > first_at else float("nan")
    return {"rate": len(paths) / total, "first_batch_s": first_at, "steady_rate": steady}, out


def gpu_decode_only(encoder: Any, paths: list[Path], batch_size: int) -> float:
    """Images/s of nvJPEG decode + resize/crop/normalise alone, bytes already in memory."""
    import torch

    from mclip_explorer.models.gpu_decode import decode_jpegs, describe_transform, preprocess

    spec = describe_transform(encoder.image_transform)
    if spec is None:
        return float("nan")
    datas = [torch.frombuffer(bytearray(p.read_bytes()), dtype=torch.uint8) for p in paths]
    batches = [datas[i : i + batch_size] for i in range(0, len(datas), batch_size)]

    def run(chunks: list[list[Any]]) -> None:
        for chunk in chunks:
            preprocess(decode_jpegs(chunk, encoder.device), spec)  # type: ignore[arg-type]

    run(batches[:2])
    return len(datas) / timed(lambda: run(batches), encoder.device)


def peak_rss_mb() -> dict[str, float]:
    self_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    child_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    return {"main_mb": self_kb / 1024, "largest_child_mb": child_kb / 1024}


# -------------------------------------------------------------------------- text towers
def text_tower(name: str, device: Any) -> tuple[Any, int]:
    """A real-size random-weight text tower: ``(forward(ids, mask) -> vectors, vocab size)``."""
    import torch
    import transformers as tf

    torch.manual_seed(0)
    if name.startswith("DistilBERT"):
        body = tf.DistilBertModel(tf.DistilBertConfig(vocab_size=119547))
        head, vocab = torch.nn.Linear(768, 512, bias=False), 119547
    elif name.startswith("BERT-base"):
        body = tf.BertModel(tf.BertConfig(vocab_size=119547), add_pooling_layer=False)
        head, vocab = torch.nn.Linear(768, 640), 119547
    elif name.startswith("XLM-R"):
        config = tf.XLMRobertaConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24,
                                     num_attention_heads=16, intermediate_size=4096,
                                     max_position_embeddings=514, type_vocab_size=1)
        body = tf.XLMRobertaModel(config, add_pooling_layer=False)
        head, vocab = torch.nn.Linear(1024, 512), 250002
    elif name.startswith("AltCLIP"):
        config = tf.AltCLIPTextConfig(vocab_size=250002, hidden_size=1024, num_hidden_layers=24,
                                      num_attention_heads=16, intermediate_size=4096,
                                      project_dim=768)
        body = tf.AltCLIPTextModel(config)
        head, vocab = torch.nn.Linear(768, 768), 250002
    else:
        raise ValueError(name)
    body.to(device).eval()
    head.to(device).eval()

    def forward(ids: Any, mask: Any) -> Any:
        out = body(input_ids=ids, attention_mask=mask)
        if name.startswith("AltCLIP"):
            return head(out.pooler_output)
        hidden = out.last_hidden_state
        pooled = (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)  # masked mean
        return head(pooled)

    return forward, vocab


def texts_per_second(name: str, device: Any, autocast: Any, batch_size: int, tokens: int,
                     batches: int) -> float:
    import torch

    forward, vocab = text_tower(name, device)
    generator = torch.Generator().manual_seed(0)
    ids = torch.randint(5, vocab, (batch_size, tokens), generator=generator).to(device)
    mask = torch.ones_like(ids)

    def run(n: int) -> None:
        with torch.inference_mode(), autocast():
            for _ in range(n):
                forward(ids, mask).float().cpu()

    run(1)
    return batch_size * batches / timed(lambda: run(batches), device)


def clip_texts_per_second(encoder: Any, batch_size: int, batches: int) -> float:
    """The CLIP text tower through ``encode_text`` (real BPE tokenizer), ~16-token captions."""
    words = ["a", "photo", "of", "a", "small", "red", "bicycle", "leaning", "against", "an",
             "old", "stone", "wall", "at", "dusk"]
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.permutation(words)) for _ in range(batch_size * batches)]
    encoder.encode_text(texts[:batch_size], batch_size=batch_size)
    return len(texts) / timed(lambda: encoder.encode_text(texts, batch_size=batch_size),
                              encoder.device)


# ---------------------------------------------------------------------------------- main
def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default=None, help="cuda / cpu (default: the best there is)")
    parser.add_argument("--images", type=int, default=64, help="JPEGs for ViT-B/32")
    parser.add_argument("--rn-images", type=int, default=None,
                        help="JPEGs for RN50x4 (default: a quarter of --images)")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--workers", type=int, default=None, help="decoding processes")
    parser.add_argument("--forward-batches", type=int, default=4)
    parser.add_argument("--text-batch", type=int, default=32)
    parser.add_argument("--text-batches", type=int, default=2)
    parser.add_argument("--text-tokens", type=int, default=16)
    parser.add_argument("--models", default="ViT-B/32,RN50x4")
    parser.add_argument("--texts", default="all", help="'all', 'none' or comma-separated names")
    parser.add_argument("--keep", type=Path, default=None, help="build in this folder, keep it")
    parser.add_argument("--json", type=Path, default=None, help="write results here")
    args = parser.parse_args(argv)

    import torch

    from mclip_explorer.models import load_model
    from mclip_explorer.models.torch_base import default_num_workers, select_device

    device = select_device(args.device)
    cores = len(os.sched_getaffinity(0))
    results: dict[str, Any] = {
        "machine": {"device": torch.cuda.get_device_name() if device.type == "cuda" else "cpu",
                    "cpu": platform.processor() or platform.machine(), "cores": cores,
                    "torch": torch.__version__, "torch_threads": torch.get_num_threads(),
                    "python": platform.python_version(),
                    "load_average_1min": os.getloadavg()[0]},
        "args": {k: str(v) for k, v in vars(args).items()},
        "images": {}, "texts": {},
    }
    workers = args.workers
    with tempfile.TemporaryDirectory(prefix="mclip-bench-") as scratch:
        root = args.keep or Path(scratch)
        weights = root / "weights"
        rn_count = args.rn_images or max(args.batch_size, args.images // 4)
        start = time.perf_counter()
        paths, kb = make_jpegs(root / "jpegs", max(args.images, rn_count), max(1, cores))
        results["jpegs"] = {"count": len(paths), "mean_kb": round(kb, 1),
                            "seconds_to_write": round(time.perf_counter() - start, 1)}
        for label in [m for m in args.models.split(",") if m]:
            model_id, repo, arch = IMAGE_MODELS[label]
            if not (weights / repo).exists():
                write_open_clip_weights(weights / repo, arch)
            encoder = load_model(model_id, device=str(device), weights_dir=weights)
            count = args.images if label == "ViT-B/32" else rn_count
            row: dict[str, Any] = {"images": count, "batch_size": args.batch_size,
                                   "image_size": encoder.image_size}
            row["forward_only"] = forward_only(encoder, args.batch_size, args.forward_batches)
            if device.type == "cuda":
                row["gpu_decode_only"] = gpu_decode_only(encoder, paths[:count], args.batch_size)
            variants = [("end_to_end", None)]
            if device.type == "cuda":
                variants = [("end_to_end_gpu_decode", True), ("end_to_end_cpu_decode", False)]
            outputs = []
            for key, gpu in variants:
                encoder.gpu_decode = gpu
                timing, out = end_to_end(encoder, paths[:count], args.batch_size, workers)
                row[key] = timing["rate"]
                row[key + "_ratio"] = row[key] / row["forward_only"]
                row[key + "_first_batch_s"] = timing["first_batch_s"]
                row[key + "_steady"] = timing["steady_rate"]
                row[key + "_steady_ratio"] = timing["steady_rate"] / row["forward_only"]
                row[key + "_workers"] = workers if workers is not None else default_num_workers(
                    device, reads_only=encoder._gpu_preprocess() is not None)
                outputs.append(out)
            if len(outputs) == 2:
                # Same weights, same files: how far GPU decoding moves the embeddings.
                cosine = (outputs[0] * outputs[1]).sum(axis=1)
                row["gpu_vs_cpu_decode_cosine_min"] = float(cosine.min())
                row["gpu_vs_cpu_decode_cosine_mean"] = float(cosine.mean())
            row["peak_rss"] = peak_rss_mb()
            results["images"][label] = row
            print(f"{label}: " + ", ".join(f"{k}={v:.3g}" if isinstance(v, float) else f"{k}={v}"
                                           for k, v in row.items() if k != "peak_rss"),
                  flush=True)
            if label == "ViT-B/32" and (args.texts == "all" or "CLIP" in args.texts.split(",")):
                rate = clip_texts_per_second(encoder, args.text_batch, args.text_batches)
                results["texts"]["CLIP text (ViT-B/32)"] = rate
            del encoder
            if device.type == "cuda":
                torch.cuda.empty_cache()
        if args.texts != "none":
            from mclip_explorer.models.torch_base import TorchEncoder

            autocast = TorchEncoder._autocast.__get__(_AutocastHolder(device))
            chosen = [w for w in args.texts.split(",") if w]
            wanted = [t for t in TEXT_TOWERS if not t.startswith("CLIP")
                      and (args.texts == "all" or any(t.startswith(w) for w in chosen))]
            for name in wanted:
                rate = texts_per_second(name, device, autocast, args.text_batch,
                                        args.text_tokens, args.text_batches)
                results["texts"][name] = rate
                print(f"{name}: {rate:.4g} texts/s", flush=True)
                if device.type == "cuda":
                    torch.cuda.empty_cache()
    results["peak_rss"] = peak_rss_mb()
    print(json.dumps(results, indent=1, default=float))
    if args.json:
        args.json.write_text(json.dumps(results, indent=1, default=float))
    return results


class _AutocastHolder:
    """Just enough of a TorchEncoder for its ``_autocast`` (same precision as the encoders)."""

    def __init__(self, device: Any) -> None:
        from mclip_explorer.models.torch_base import select_dtype

        self.device = device
        self.dtype = select_dtype(device, None)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    main()
