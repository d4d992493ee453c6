"""CPU speed of the 2023-2025 multilingual models' towers: images/s and texts/s, forward only.

Real-size architectures with random weights (speed does not depend on the values), built from
open_clip's own model configs (MetaCLIP 2's image towers are the same ViTs as open_clip's
``*-worldwide`` configs and MetaCLIP's ``mini_clip`` configs) and from transformers configs of the
text bases. Text towers keep every layer but a 32k-token vocabulary: the embedding lookup does
not depend on the vocabulary size, and the real ones (XLM-V 901k, Gemma 256k, NLLB 256k) would
need several GB for nothing. One tower is in memory at a time.

    python bench/models.py                    # all towers, short runs
    python bench/models.py --only SigLIP2 --json out.json

The absolute numbers move with the machine's load; they are for a rough ranking of models.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import time
from collections.abc import Callable
from typing import Any

VIT = {"layers": 12, "width": 768, "patch_size": 16, "image_size": 224}
# Image towers: name -> (embed dim, open_clip vision cfg, images per run).
IMAGE_TOWERS: dict[str, tuple[int, dict[str, Any], int]] = {
    "MetaCLIP 2 S/16": (384, {**VIT, "width": 384}, 16),
    "MetaCLIP 2 M/16": (512, {**VIT, "width": 512}, 16),
    "MetaCLIP 2 B/32; NLLB-CLIP base": (512, {**VIT, "patch_size": 32}, 16),
    "MetaCLIP 2 B/16": (512, VIT, 8),
    "MetaCLIP 2 L/14": (768, {**VIT, "layers": 24, "width": 1024, "patch_size": 14}, 4),
    "MetaCLIP 2 H/14; XLM-R H/14; NLLB-CLIP large": (
        1024, {**VIT, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14}, 2),
    "MetaCLIP 2 H/14-378": (
        1024, {**VIT, "layers": 32, "width": 1280, "head_width": 80, "patch_size": 14,
               "image_size": 378}, 2),
    "SigLIP 2 B/32-256": (768, {"image_size": 256,
                                "timm_model_name": "vit_base_patch32_siglip_256"}, 16),
    "SigLIP 2 B/16-256": (768, {"image_size": 256,
                                "timm_model_name": "vit_base_patch16_siglip_256"}, 8),
    "SigLIP 2 B/16-384; NLLB-CLIP base-siglip": (
        768, {"image_size": 384, "timm_model_name": "vit_base_patch16_siglip_384"}, 4),
    "SigLIP 2 L/16-256": (1024, {"image_size": 256,
                                 "timm_model_name": "vit_large_patch16_siglip_256"}, 4),
    "SigLIP 2 SO400M/14": (1152, {"image_size": 224,
                                  "timm_model_name": "vit_so400m_patch14_siglip_224"}, 2),
    "SigLIP 2 SO400M/16-384; NLLB-CLIP large-siglip (SO400M/14-384)": (
        1152, {"image_size": 384, "timm_model_name": "vit_so400m_patch16_siglip_384"}, 2),
}
VOCAB = 32_000
# Tokens per text as each model is run (see bench_text); MetaCLIP 2: a 16-token query.
TEXT_TOKENS = {"NLLB-CLIP base text (NLLB-600M encoder, 12 layers)": 77,
               "NLLB-CLIP large text (NLLB-1.3B encoder, 24 layers)": 77,
               "XLM-R large (ViT-H/14 text)": 77}


def _text_towers() -> dict[str, Callable[[], Any]]:
    """Text towers: name -> builder of a module mapping token ids ``[B, 16]`` to features."""
    from transformers import M2M100Config, XLMRobertaConfig

    def hf(config: Any, encoder_only: bool = False) -> Callable[[], Any]:
        def build() -> Any:
            from transformers import AutoModel

            model = AutoModel.from_config(config)
            return model.get_encoder() if encoder_only else model
        return build

    def clip_text(width: int, layers: int, heads: int, context: int,
                  **extra: Any) -> Callable[[], Any]:
        # MetaCLIP 2 (transformers) attends to the real tokens only: its open_clip twin here
        # runs 16 positions (context 16); SigLIP runs its full 64.
        def build() -> Any:
            from open_clip.model import CLIPTextCfg, _build_text_tower

            cfg = CLIPTextCfg(context_length=context, vocab_size=VOCAB, width=width, heads=heads,
                              layers=layers, **extra)
            return _build_text_tower(width, cfg)
        return build

    siglip = {"no_causal_mask": True, "proj_bias": True, "pool_type": "last",
              "act_kwargs": {"approximate": "tanh"}}
    nllb = {"vocab_size": VOCAB, "d_model": 1024, "encoder_attention_heads": 16,
            "encoder_ffn_dim": 4096, "decoder_layers": 1, "max_position_embeddings": 1024}
    return {
        "MetaCLIP 2 S/16 text (384 x 12)": clip_text(384, 12, 6, 16),
        "MetaCLIP 2 M/16, B/32, B/16 text (512 x 12)": clip_text(512, 12, 8, 16),
        "MetaCLIP 2 L/14 text (768 x 12)": clip_text(768, 12, 12, 16),
        "MetaCLIP 2 H/14 text (1024 x 24)": clip_text(1024, 24, 16, 16),
        "SigLIP 2 B text (768 x 12)": clip_text(768, 12, 12, 64, **siglip),
        "SigLIP 2 L text (1024 x 24)": clip_text(1024, 24, 16, 64, **siglip),
        "SigLIP 2 SO400M text (1152 x 27)": clip_text(1152, 27, 16, 64, mlp_ratio=3.7362,
                                                       **siglip),
        "NLLB-CLIP base text (NLLB-600M encoder, 12 layers)": hf(
            M2M100Config(**nllb, encoder_layers=12), encoder_only=True),
        "NLLB-CLIP large text (NLLB-1.3B encoder, 24 layers)": hf(
            M2M100Config(**{**nllb, "encoder_ffn_dim": 8192}, encoder_layers=24),
            encoder_only=True),
        "XLM-R large (ViT-H/14 text)": hf(XLMRobertaConfig(
            vocab_size=VOCAB, hidden_size=1024, num_hidden_layers=24, num_attention_heads=16,
            intermediate_size=4096)),
    }


def _rate(tower: Any, inputs: Any, repeats: int) -> float:
    import torch

    with torch.inference_mode():
        tower(inputs)  # warm-up: first-call allocations and kernel selection
        start = time.perf_counter()
        for _ in range(repeats):
            tower(inputs)
        return len(inputs) * repeats / (time.perf_counter() - start)


def bench_images(name: str) -> dict[str, Any]:
    import torch
    from open_clip.model import CLIPVisionCfg, _build_vision_tower

    dim, cfg, n = IMAGE_TOWERS[name]
    extra = {"timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"}
    vision = CLIPVisionCfg(**({**cfg, **extra} if "timm_model_name" in cfg else cfg))
    tower = _build_vision_tower(dim, vision).eval()
    size = cfg["image_size"]
    pixels = torch.randn(n, 3, size, size)
    params = sum(p.numel() for p in tower.parameters())
    rate = _rate(tower, pixels, 1)
    del tower
    gc.collect()
    return {"tower": name, "kind": "image", "params_M": round(params / 1e6), "px": size,
            "batch": n, "per_s": round(rate, 2)}


def bench_text(name: str, build: Callable[[], Any]) -> dict[str, Any]:
    import torch

    tower = build().eval()
    # As users run them: open_clip pads every text to the context length (SigLIP 64, the HF
    # towers of NLLB-CLIP and XLM-R ViT-H/14 77); transformers MetaCLIP 2 pads to the longest.
    length = TEXT_TOKENS.get(name, getattr(tower, "context_length", 16))
    tokens = torch.randint(5, VOCAB - 1, (32, length))
    params = sum(p.numel() for p in tower.parameters()) - VOCAB * _width(tower)
    rate = _rate(tower, tokens, 2)
    del tower
    gc.collect()
    return {"tower": name, "kind": "text", "params_M": round(params / 1e6), "tokens": length,
            "batch": 32, "per_s": round(rate, 1)}


def _width(tower: Any) -> int:
    embedding = tower.get_input_embeddings() if hasattr(tower, "get_input_embeddings") else (
        tower.token_embedding)
    return int(embedding.weight.shape[1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", help="run towers whose name contains this text")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", help="write the rows here")
    args = parser.parse_args()
    import torch

    torch.manual_seed(0)
    torch.set_num_threads(args.threads)
    rows = []
    for name in IMAGE_TOWERS:
        if args.only and args.only not in name:
            continue
        rows.append(bench_images(name))
        print(json.dumps(rows[-1]), flush=True)
    for name, build in _text_towers().items():
        if args.only and args.only not in name:
            continue
        rows.append(bench_text(name, build))
        print(json.dumps(rows[-1]), flush=True)
    meta = {"threads": args.threads, "cpus": os.cpu_count(), "torch": torch.__version__}
    if args.json:
        with open(args.json, "w", encoding="utf-8") as file:
            json.dump({"meta": meta, "rows": rows}, file, indent=2)


if __name__ == "__main__":
    main()
