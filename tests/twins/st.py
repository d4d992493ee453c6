"""Tiny twins of the sentence-transformers CLIP repos, and the multi-script corpus all twins share.

* ``sentence-transformers/clip-ViT-B-32-multilingual-v1``: DistilBERT (WordPiece trained offline)
  -> mean pooling -> Dense (hidden -> 512, no bias), in the hub repo's module folders.
* ``sentence-transformers/clip-ViT-B-32``: one ``0_CLIPModel`` folder with a tiny transformers
  CLIPModel (224 px, patch 32, 512-d) and its processor; the CLIP BPE vocabulary comes from
  open_clip's ``bpe_simple_vocab_16e6.txt.gz``.
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

ST_TEXT_REPO = "sentence-transformers/clip-ViT-B-32-multilingual-v1"
ST_IMAGE_REPO = "sentence-transformers/clip-ViT-B-32"

# One sentence per script the explorer promises to handle (README, issue 2).
SCRIPT_SAMPLES: dict[str, str] = {
    "latin": "A photo of a cat sleeping on a red chair",
    "cyrillic": "Фотография кошки, спящей на красном стуле",
    "greek": "Μια φωτογραφία μιας γάτας που κοιμάται",  # noqa: RUF001
    "arabic": "صورة قطة نائمة على كرسي أحمر",
    "hebrew": "תמונה של חתול ישן על כיסא אדום",
    "devanagari": "लाल कुर्सी पर सोती हुई बिल्ली की तस्वीर",
    "thai": "ภาพแมวนอนบนเก้าอี้สีแดง",
    "cjk": "一只猫睡在红色椅子上的照片 赤い椅子で眠る猫",
    "hangul": "빨간 의자에서 자고 있는 고양이 사진",
    "emoji": "🐱💤🪑❤️ 🎉👍🏽",
}
CORPUS: list[str] = [*SCRIPT_SAMPLES.values(), "a dog running on the beach", "Ein Hund am Strand",
                     "un chien qui court sur la plage", "собака бежит по пляжу", "海滩上奔跑的狗"]


def corpus_alphabet() -> list[str]:
    """Every character of the corpus, so no script collapses to the unknown token."""
    return sorted(set("".join(CORPUS)))


def write_wordpiece(folder: Path) -> int:
    """Train a cased multilingual WordPiece vocabulary into ``folder/vocab.txt``; return size."""
    from tokenizers import BertWordPieceTokenizer

    folder.mkdir(parents=True, exist_ok=True)
    tokenizer = BertWordPieceTokenizer(lowercase=False, strip_accents=False,
                                       handle_chinese_chars=True)
    tokenizer.train_from_iterator(CORPUS * 4, vocab_size=500, initial_alphabet=corpus_alphabet())
    tokenizer.save_model(str(folder))
    return tokenizer.get_vocab_size()


def clip_tokenizer() -> Any:
    """The real CLIP BPE tokenizer (49,408 tokens) built from open_clip's merges file."""
    import open_clip
    from transformers import CLIPTokenizer

    bpe = Path(open_clip.__file__).parent / "bpe_simple_vocab_16e6.txt.gz"
    with gzip.open(bpe, "rt", encoding="utf-8") as file:
        merges = file.read().split("\n")[1 : 49152 - 256 - 2 + 1]
    pairs = [tuple(line.split()) for line in merges]
    tokens = list(_bytes_to_unicode().values())
    tokens += [v + "</w>" for v in tokens] + ["".join(pair) for pair in pairs]
    tokens += ["<|startoftext|>", "<|endoftext|>"]
    # In memory (not file paths): transformers parses merges files slowly (about 9 s).
    return CLIPTokenizer(vocab={t: i for i, t in enumerate(tokens)}, merges=pairs)


def _bytes_to_unicode() -> dict[int, str]:
    # GPT-2 / CLIP byte-to-printable-character table.
    keep = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1),
            *range(ord("®"), ord("ÿ") + 1)]
    chars = keep[:]
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, [chr(c) for c in chars], strict=True))


def build_st_text(folder: Path, seed: int = 0) -> None:
    """DistilBERT student -> mean pooling -> Dense(hidden -> 512, no bias), as the hub repo."""
    import torch
    from transformers import DistilBertConfig, DistilBertModel, DistilBertTokenizer

    vocab_size = write_wordpiece(folder)
    tokenizer = DistilBertTokenizer(vocab=str(folder / "vocab.txt"), do_lower_case=False,
                                    tokenize_chinese_chars=True, strip_accents=False)
    tokenizer.save_pretrained(folder)
    hidden = 32
    config = DistilBertConfig(vocab_size=vocab_size, dim=hidden, n_layers=1, n_heads=2,
                              hidden_dim=37, max_position_embeddings=512)
    torch.manual_seed(seed)
    DistilBertModel(config).save_pretrained(folder)
    modules = [
        {"idx": i, "name": str(i), "path": path, "type": f"sentence_transformers.models.{kind}"}
        for i, (path, kind) in enumerate(
            [("", "Transformer"), ("1_Pooling", "Pooling"), ("2_Dense", "Dense")])
    ]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))
    (folder / "sentence_bert_config.json").write_text(
        json.dumps({"max_seq_length": 128, "do_lower_case": False}))
    pooling = folder / "1_Pooling"
    pooling.mkdir()
    (pooling / "config.json").write_text(json.dumps({
        "word_embedding_dimension": hidden, "pooling_mode_cls_token": False,
        "pooling_mode_mean_tokens": True, "pooling_mode_max_tokens": False,
        "pooling_mode_mean_sqrt_len_tokens": False}))
    dense = folder / "2_Dense"
    dense.mkdir()
    (dense / "config.json").write_text(json.dumps({
        "in_features": hidden, "out_features": 512, "bias": False,
        "activation_function": "torch.nn.modules.linear.Identity"}))
    # The hub repo ships this one as a plain torch state dict (read with weights_only=True).
    torch.save({"linear.weight": torch.randn(512, hidden) / hidden**0.5},
               dense / "pytorch_model.bin")


def write_st_clip(folder: Path, seed: int = 0) -> None:
    """A sentence-transformers CLIP folder: ``modules.json`` + ``0_CLIPModel`` (model, processor)"""
    import torch
    from transformers import CLIPConfig, CLIPImageProcessor, CLIPModel, CLIPProcessor

    inner = folder / "0_CLIPModel"
    tokenizer = clip_tokenizer()
    text = {"vocab_size": len(tokenizer), "hidden_size": 32, "intermediate_size": 37,
            "num_hidden_layers": 1, "num_attention_heads": 2, "max_position_embeddings": 77}
    vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
              "num_attention_heads": 2, "image_size": 224, "patch_size": 32}
    config = CLIPConfig(text_config=text, vision_config=vision, projection_dim=512)
    torch.manual_seed(seed)
    CLIPModel(config).save_pretrained(inner)
    processor = CLIPProcessor(image_processor=CLIPImageProcessor(), tokenizer=tokenizer)
    processor.save_pretrained(inner)
    modules = [{"idx": 0, "name": "0", "path": "0_CLIPModel",
                "type": "sentence_transformers.models.CLIPModel"}]
    (folder / "modules.json").write_text(json.dumps(modules, indent=2))


def build(root: Path) -> None:
    """Write both sentence-transformers twins under ``root``."""
    build_st_text(root / ST_TEXT_REPO, seed=1)
    write_st_clip(root / ST_IMAGE_REPO, seed=2)
