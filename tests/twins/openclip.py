"""Tiny twins of open_clip repos: the four image towers M-CLIP pairs with, and LAION's XLM-R CLIP.

Each folder has the hub repo's layout (``open_clip_config.json`` + ``open_clip_model.safetensors``),
the real output dim and image size, and tiny widths/depths so all of them build in about a second.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tests.twins.altclip import build_xlmr_base

# hub repo -> (embed dim, vision cfg, quick_gelu). Widths are tiny; sizes/patches are the real ones.
IMAGE_TOWERS: dict[str, tuple[int, dict[str, Any], bool]] = {
    "timm/resnet50x4_clip.openai": (
        640, {"image_size": 288, "layers": [1, 1, 1, 1], "width": 8, "patch_size": None}, True),
    "timm/vit_base_patch32_clip_224.openai": (
        512, {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
        True),
    "timm/vit_large_patch14_clip_224.openai": (
        768, {"image_size": 224, "layers": 1, "width": 32, "patch_size": 14, "head_width": 16},
        True),
    "timm/vit_base_patch16_plus_clip_240.laion400m_e32": (
        640, {"image_size": 240, "layers": 1, "width": 32, "patch_size": 16, "head_width": 16},
        False),
}
CLIP_TEXT = {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 1}
XLMR_CLIP_REPO = "laion/CLIP-ViT-B-32-xlm-roberta-base-laion5B-s13B-b90k"
OPENAI_PREPROCESS = {"mean": [0.48145466, 0.4578275, 0.40821073],
                     "std": [0.26862954, 0.26130258, 0.27577711],
                     "interpolation": "bicubic", "resize_mode": "shortest"}


def write_open_clip_repo(folder: Path, model_cfg: dict[str, Any], seed: int = 0) -> None:
    """Build a random open_clip model from ``model_cfg`` and save it in the hub layout."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    config = {"model_cfg": model_cfg, "preprocess_cfg": OPENAI_PREPROCESS}
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
    torch.manual_seed(seed)
    # open_clip logs "no CLIP weights found" at WARNING: expected here, as the weights are new.
    logging.disable(logging.WARNING)
    try:
        model = open_clip.create_model(f"local-dir:{folder}", device="cpu", pretrained_text=False)
    finally:
        logging.disable(logging.NOTSET)
    state = {key: value.contiguous() for key, value in model.state_dict().items()}
    save_file(state, str(folder / "open_clip_model.safetensors"))


def build(root: Path) -> None:
    """Write every open_clip twin under ``root``."""
    for seed, (repo, (dim, vision, quick_gelu)) in enumerate(IMAGE_TOWERS.items()):
        cfg: dict[str, Any] = {"embed_dim": dim, "vision_cfg": vision, "text_cfg": CLIP_TEXT}
        if quick_gelu:
            cfg["quick_gelu"] = True
        write_open_clip_repo(root / repo, cfg, seed=seed)
    # xlm-roberta-base-ViT-B-32: the config names its text base "xlm-roberta-base", which the
    # loader finds in the weights folder, as users keep it next to the CLIP repo.
    base = build_xlmr_base(root / "xlm-roberta-base")
    text = {"hf_model_name": "xlm-roberta-base", "hf_tokenizer_name": "xlm-roberta-base",
            "hf_pooler_type": "mean_pooler"}
    vision = {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16}
    cfg = {"embed_dim": 512, "vision_cfg": vision, "text_cfg": {**text, "hf_model_name": base}}
    folder = root / XLMR_CLIP_REPO
    write_open_clip_repo(folder, cfg, seed=10)
    # The saved config names the hub id, exactly like the real repo.
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"] = text
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))
