"""Tiny twins of the 2023-2025 multilingual models: MetaCLIP 2, SigLIP 2, NLLB-CLIP, XLM-R ViT-H/14.

Layouts follow the hub repos: MetaCLIP 2 is a transformers folder (``config.json`` of
``MetaClip2Model``, ``model.safetensors``, a ``CLIPProcessor`` with an XLM-R-style tokenizer);
the others are open_clip folders (``open_clip_config.json`` + weights) whose text tower names its
base by hub id (``facebook/nllb-200-distilled-600M``, ``xlm-roberta-large``), kept beside them in
the weights folder as config + tokenizer only. SigLIP 2 repos carry their own tokenizer files.

Tokenizers are the real classes trained offline on :data:`tests.twins.st.CORPUS`: Gemma's and
NLLB's are byte-level-free BPE models of the same transformers classes (``GemmaTokenizer``,
``NllbTokenizer``, with NLLB's 202 language tags); the XLM-V tokenizer of MetaCLIP 2 is an
XLM-R Unigram (same class, ``XLMRobertaTokenizer``).

timm image towers (SigLIP) cannot shrink through open_clip's config, so the two SigLIP twins
have real-size ViT-B/16 image towers (86 M parameters); every other tower is tiny.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

from tests.twins.altclip import build_xlmr_base, xlmr_tokenizer
from tests.twins.openclip import write_open_clip_repo
from tests.twins.st import CORPUS, corpus_alphabet

METACLIP2 = {  # repo size -> (projection dim, image px, patch)
    "s16": (384, 224, 16), "m16": (512, 224, 16), "b32": (512, 224, 32), "b16": (512, 224, 16),
    "l14": (768, 224, 14), "huge-quickgelu": (1024, 224, 14), "huge-378": (1024, 378, 14),
    "giant": (1280, 224, 14), "giant-378": (1280, 378, 14),
}
SIGLIP_PREPROCESS = {"mean": [0.5, 0.5, 0.5], "std": [0.5, 0.5, 0.5],
                     "interpolation": "bicubic", "resize_mode": "squash"}
NLLB_BASES = ("facebook/nllb-200-distilled-600M", "facebook/nllb-200-distilled-1.3B")
SIGLIP2_REPO = "timm/ViT-B-16-SigLIP2-256"
XLMR_H14_REPO = "laion/CLIP-ViT-H-14-frozen-xlm-roberta-large-laion5B-s13B-b90k"
# repo -> (embed dim, vision cfg, NLLB base, preprocess): the NLLB-CLIP twins.
NLLB_CLIP: dict[str, tuple[int, dict[str, Any], str, dict[str, Any] | None]] = {
    "visheratin/nllb-clip-base-oc": (
        512, {"image_size": 224, "layers": 1, "width": 32, "patch_size": 32, "head_width": 16},
        "facebook/nllb-200-distilled-600M", None),
    "visheratin/nllb-clip-large-oc": (
        1024, {"image_size": 224, "layers": 1, "width": 32, "patch_size": 14, "head_width": 16},
        "facebook/nllb-200-distilled-1.3B", None),
    "visheratin/nllb-clip-base-siglip": (
        768, {"image_size": 384, "timm_model_name": "vit_base_patch16_siglip_384",
              "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"},
        "facebook/nllb-200-distilled-600M", SIGLIP_PREPROCESS),
}
# Registry entries without a twin: same loader and architecture as a twinned one, but a real-size
# SO400M/giant timm tower (0.4-1 B parameters) is too heavy to build per test session.
UNTWINNED = {
    "SigLIP2-B-32-256": "ViT-B/32 SigLIP tower (88 M); same code path as SigLIP2-B-16-256",
    "SigLIP2-B-16-384": "second ViT-B/16 tower; same code path as SigLIP2-B-16-256",
    "SigLIP2-L-16-256": "ViT-L/16 SigLIP tower (300 M)",
    "SigLIP2-SO400M-14": "SO400M tower (400 M)",
    "SigLIP2-SO400M-16-384": "SO400M tower (400 M)",
    "SigLIP2-gopt-16-384": "giant-opt tower (1 B)",
    "nllb-clip-large-siglip": "SO400M tower (400 M); same code path as nllb-clip-base-siglip",
    "nllb-siglip-mrl-base": "same architecture as nllb-clip-base-siglip (another repo)",
    "nllb-siglip-mrl-large": "SO400M tower (400 M)",
}


def bpe_vocab(specials: list[str]) -> tuple[dict[str, int], list[tuple[str, str]]]:
    """A small BPE vocabulary and merges trained on :data:`CORPUS` (specials first)."""
    from tokenizers import Tokenizer, models, pre_tokenizers, trainers

    bpe = Tokenizer(models.BPE(unk_token="<unk>"))
    bpe.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.BpeTrainer(vocab_size=500, special_tokens=specials,
                                  initial_alphabet=[*corpus_alphabet(), "▁"])
    bpe.train_from_iterator(CORPUS * 4, trainer)
    model = json.loads(bpe.to_str())["model"]
    merges = [tuple(m) if isinstance(m, list) else tuple(m.split(" ")) for m in model["merges"]]
    return model["vocab"], merges  # type: ignore[return-value]


def nllb_tokenizer() -> Any:
    """An ``NllbTokenizer`` (``<s> <pad> </s> <unk>`` at 0-3, NLLB's language tags appended)."""
    from transformers import NllbTokenizer

    vocab, merges = bpe_vocab(["<s>", "<pad>", "</s>", "<unk>"])
    return NllbTokenizer(vocab=vocab, merges=merges, src_lang="eng_Latn")


def gemma_tokenizer() -> Any:
    """A ``GemmaTokenizer`` (``<pad> <eos> <bos> <unk>`` at 0-3, as Gemma numbers them)."""
    from transformers import GemmaTokenizer

    vocab, merges = bpe_vocab(["<pad>", "<eos>", "<bos>", "<unk>"])
    return GemmaTokenizer(vocab=vocab, merges=merges)


def build_metaclip2(root: Path) -> None:
    """The nine MetaCLIP 2 worldwide repos: real dims, sizes and patches; tiny widths."""
    import torch
    from transformers import CLIPImageProcessor, CLIPProcessor, MetaClip2Config, MetaClip2Model

    tokenizer = xlmr_tokenizer()
    for seed, (size, (dim, px, patch)) in enumerate(METACLIP2.items()):
        text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37,
                "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77,
                "pad_token_id": 1, "bos_token_id": 0, "eos_token_id": 2}
        vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "image_size": px, "patch_size": patch}
        config = MetaClip2Config(text_config=text, vision_config=vision, projection_dim=dim)
        torch.manual_seed(500 + seed)
        folder = root / f"facebook/metaclip-2-worldwide-{size}"
        MetaClip2Model(config).save_pretrained(folder)
        image_processor = CLIPImageProcessor(size={"shortest_edge": px},
                                             crop_size={"height": px, "width": px})
        CLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(folder)


def _nllb_base(folder: Path) -> str:
    """A tiny NLLB (M2M100) base folder: config.json and the tokenizer, as open_clip reads."""
    from transformers import M2M100Config

    tokenizer = nllb_tokenizer()
    config = M2M100Config(vocab_size=len(tokenizer), d_model=32, encoder_layers=1,
                          decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
                          encoder_ffn_dim=37, decoder_ffn_dim=37, max_position_embeddings=128,
                          pad_token_id=1, bos_token_id=0, eos_token_id=2,
                          decoder_start_token_id=2)
    folder.mkdir(parents=True, exist_ok=True)
    config.save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def _write_with_hub_names(folder: Path, cfg: dict[str, Any], text_hub: dict[str, Any],
                          seed: int, preprocess: dict[str, Any] | None) -> None:
    """Build from local bases, then name the bases by hub id, as the real configs do."""
    logging.getLogger("timm").setLevel(logging.ERROR)
    write_open_clip_repo(folder, cfg, seed=seed)
    config = json.loads((folder / "open_clip_config.json").read_text())
    config["model_cfg"]["text_cfg"] = {**config["model_cfg"]["text_cfg"], **text_hub}
    if preprocess is not None:
        config["preprocess_cfg"] = preprocess
    (folder / "open_clip_config.json").write_text(json.dumps(config, indent=2))


def build_nllb(root: Path, *, siglip: bool = False) -> None:
    """The NLLB-CLIP twins (plain, or ``siglip``) and the NLLB base folders they name."""
    bases = {name: _nllb_base(root / name) for name in NLLB_BASES}
    for seed, (repo, (dim, vision, base, preprocess)) in enumerate(NLLB_CLIP.items()):
        if ("timm_model_name" in vision) != siglip:
            continue
        text = {"hf_model_name": base, "hf_tokenizer_name": base, "hf_proj_type": "linear",
                "hf_pooler_type": "cls_pooler"}
        cfg: dict[str, Any] = {"embed_dim": dim, "vision_cfg": vision,
                               "text_cfg": {**text, "hf_model_name": bases[base]}}
        if "timm_model_name" in vision:
            cfg.update({"custom_text": True, "init_logit_bias": -10})
        _write_with_hub_names(root / repo, cfg, {"hf_model_name": base}, 600 + seed, preprocess)


def build_siglip2(root: Path) -> None:
    """``timm/ViT-B-16-SigLIP2-256``: real ViT-B/16 tower, tiny text tower, Gemma tokenizer."""
    folder = root / SIGLIP2_REPO
    tokenizer = gemma_tokenizer()
    vision = {"image_size": 256, "timm_model_name": "vit_base_patch16_siglip_256",
              "timm_model_pretrained": False, "timm_pool": "map", "timm_proj": "none"}
    text = {"context_length": 64, "vocab_size": len(tokenizer), "hf_tokenizer_name": SIGLIP2_REPO,
            "tokenizer_kwargs": {"clean": "canonicalize"}, "width": 32, "heads": 2, "layers": 1,
            "no_causal_mask": True, "proj_bias": True, "pool_type": "last",
            "norm_kwargs": {"eps": 1e-6}, "act_kwargs": {"approximate": "tanh"}}
    cfg = {"embed_dim": 768, "init_logit_bias": -10, "custom_text": True, "vision_cfg": vision,
           "text_cfg": text}
    _write_with_hub_names(folder, cfg, {}, 700, SIGLIP_PREPROCESS)
    tokenizer.save_pretrained(folder)


def build_xlmr_h14(root: Path) -> None:
    """``xlm-roberta-large-ViT-H-14``: a tiny ViT with patch 14 and a tiny XLM-R base."""
    base = build_xlmr_base(root / "xlm-roberta-large")
    text = {"hf_model_name": "xlm-roberta-large", "hf_tokenizer_name": "xlm-roberta-large",
            "hf_pooler_type": "mean_pooler"}
    vision = {"image_size": 224, "layers": 1, "width": 32, "patch_size": 14, "head_width": 16}
    cfg = {"embed_dim": 1024, "vision_cfg": vision, "text_cfg": {**text, "hf_model_name": base}}
    _write_with_hub_names(root / XLMR_H14_REPO, cfg, text, 800, None)


def build(root: Path) -> None:
    """Write the light twins under ``root`` (every test session builds these).

    The XLM-R ViT-H/14 twin is left out: its base folder ``xlm-roberta-large`` would shadow the
    config the M-CLIP 2022 twins derive from their weights; its test builds it in its own folder.
    """
    build_metaclip2(root)
    build_nllb(root)


def build_heavy(root: Path) -> None:
    """The twins with real-size SigLIP towers (350 MB each); only their own tests build them."""
    build_nllb(root, siglip=True)
    build_siglip2(root)
