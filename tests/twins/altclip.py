"""Tiny twins of ``BAAI/AltCLIP-m9`` and ``BAAI/AltCLIP``, plus the XLM-R tokenizer they share.

The XLM-R tokenizer is a ``tokenizers`` Unigram model trained offline on a few sentences in every
script the tests use, with XLM-R's special tokens at ids 0-3 and ``<mask>`` last.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.twins.st import CORPUS, corpus_alphabet

ALTCLIP_REPOS = ("BAAI/AltCLIP-m9", "BAAI/AltCLIP")
XLMR_SPECIALS = ["<s>", "<pad>", "</s>", "<unk>"]


def xlmr_tokenizer() -> Any:
    """An XLM-R (Unigram) tokenizer trained on :data:`CORPUS` in a fraction of a second."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=600, special_tokens=XLMR_SPECIALS,
                                      unk_token="<unk>", initial_alphabet=corpus_alphabet())
    unigram.train_from_iterator(CORPUS * 4, trainer)
    vocab = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=vocab)


def build_xlmr_base(folder: Path) -> str:
    """A tiny ``xlm-roberta-base`` (config, weights, tokenizer) at ``folder``; returns its path."""
    import torch
    from transformers import XLMRobertaConfig, XLMRobertaModel

    tokenizer = xlmr_tokenizer()
    config = XLMRobertaConfig(vocab_size=len(tokenizer), hidden_size=32, num_hidden_layers=1,
                              num_attention_heads=2, intermediate_size=37,
                              max_position_embeddings=514, pad_token_id=1, bos_token_id=0,
                              eos_token_id=2)
    torch.manual_seed(20)
    XLMRobertaModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)
    return str(folder)


def build(root: Path) -> None:
    """Write both AltCLIP twins under ``root`` (same architecture family, different weights)."""
    import torch
    from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, CLIPImageProcessor

    tokenizer = xlmr_tokenizer()
    for seed, repo in enumerate(ALTCLIP_REPOS):
        text = {"vocab_size": len(tokenizer), "hidden_size": 32, "num_hidden_layers": 1,
                "num_attention_heads": 2, "intermediate_size": 37, "project_dim": 32,
                "max_position_embeddings": 514, "pad_token_id": 1, "bos_token_id": 0,
                "eos_token_id": 2}
        # Real AltCLIP vision towers are ViT-L/14 at 224 px; only widths and depth shrink.
        vision = {"hidden_size": 32, "intermediate_size": 37, "num_hidden_layers": 1,
                  "num_attention_heads": 2, "image_size": 224, "patch_size": 14}
        config = AltCLIPConfig(text_config=text, vision_config=vision, projection_dim=768)
        torch.manual_seed(100 + seed)
        folder = root / repo
        AltCLIPModel(config).save_pretrained(folder)
        image_processor = CLIPImageProcessor(size={"shortest_edge": 224},
                                             crop_size={"height": 224, "width": 224})
        AltCLIPProcessor(image_processor=image_processor, tokenizer=tokenizer).save_pretrained(
            folder)
