"""Tiny twins of the M-CLIP text repos (2021 legacy and 2022) and of the legacy head pickles.

Layouts follow the hub repos: the legacy repos are bare ``DistilBertModel`` / ``BertModel`` folders
with a WordPiece ``vocab.txt``; the 2022 repos hold the ``model_type: "M-CLIP"`` config.json, a
state dict with ``transformer.*`` and ``LinearTransformation.*`` keys (one ``pytorch_model.bin``
like the hub, the others ``model.safetensors``) and an XLM-R or BERT tokenizer. The heads under
``root/heads/`` are ``pickle.dumps`` of a Keras ``[kernel (768, d), bias (d,)]`` list with NumPy
1.x module paths, as the 2021 files were written. Hidden sizes are the real ones (the heads need
them); depth, heads' FFN width and vocabularies are tiny.
"""

from __future__ import annotations

import json
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from mclip_explorer.models.registry import REGISTRY

# Every script the tests encode, emoji included, so no test text is all <unk>.
CORPUS = [
    "A red apple on a wooden table.", "Two dogs run on the beach at sunset.",
    "Ein roter Apfel liegt auf dem Tisch.", "Älgen är skogens konung!",
    "Un chat noir dort sur le canapé.", "Вы знали, что все белые медведи левши?",
    "Ένα κόκκινο μήλο στο τραπέζι.", "تفاحة حمراء على الطاولة", "תפוח אדום על השולחן",
    "मेज़ पर एक लाल सेब है।", "แมวสีดำนอนอยู่บนโซฟา", "桌子上有一个红苹果。",
    "テーブルの上に赤いリンゴがあります。", "탁자 위에 빨간 사과가 있다.",
    "🍎 🐶 🌅 😀 🚲", "Wie leben Eisbären in der Antarktis?",
]
LEGACY_REPOS = {"M-CLIP/M-BERT-Distil-40": "distilbert", "M-CLIP/M-BERT-Base-69": "bert",
                "M-CLIP/M-BERT-Base-ViT-B": "bert"}
# 2022 repo -> (modelBase as the real config.json names it, hidden size, weights file name).
MCLIP_2022 = {
    "M-CLIP/XLM-Roberta-Large-Vit-B-32": ("xlm-roberta-large", 1024, "pytorch_model.bin"),
    "M-CLIP/XLM-Roberta-Large-Vit-L-14": ("xlm-roberta-large", 1024, "model.safetensors"),
    "M-CLIP/XLM-Roberta-Large-Vit-B-16Plus": ("xlm-roberta-large", 1024, "model.safetensors"),
    "M-CLIP/LABSE-Vit-L-14": ("sentence-transformers/LaBSE", 768, "model.safetensors"),
}
MAX_POSITIONS = 512
TINY = {"num_hidden_layers": 1, "intermediate_size": 37}


def alphabet() -> list[str]:
    """Every character of :data:`CORPUS` (tokenizers must know them all)."""
    return sorted({ch for text in CORPUS for ch in text if not ch.isspace()})


def wordpiece_vocab() -> list[str]:
    """A cased multilingual WordPiece vocabulary, as ``bert-base-multilingual-cased`` has."""
    from tokenizers import BertWordPieceTokenizer

    wordpiece = BertWordPieceTokenizer(lowercase=False, strip_accents=False,
                                       handle_chinese_chars=True)
    wordpiece.train_from_iterator(CORPUS * 4, vocab_size=400, initial_alphabet=alphabet())
    vocab = wordpiece.get_vocab()
    return sorted(vocab, key=vocab.__getitem__)


def write_wordpiece(folder: Path, vocab: list[str]) -> None:
    """``vocab.txt`` + ``tokenizer_config.json`` as the legacy M-CLIP and LaBSE repos hold them."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    config = {"do_lower_case": False, "strip_accents": False, "tokenize_chinese_chars": True,
              "model_max_length": MAX_POSITIONS}
    (folder / "tokenizer_config.json").write_text(json.dumps(config), encoding="utf-8")


def xlmr_tokenizer() -> Any:
    """An XLM-R Unigram tokenizer (``<s> <pad> </s> <unk>`` at ids 0-3, ``<mask>`` last)."""
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import XLMRobertaTokenizer

    unigram = Tokenizer(models.Unigram())
    unigram.normalizer = normalizers.NFKC()
    unigram.pre_tokenizer = pre_tokenizers.Metaspace()
    trainer = trainers.UnigramTrainer(vocab_size=500, special_tokens=["<s>", "<pad>", "</s>",
                                      "<unk>"], unk_token="<unk>", initial_alphabet=alphabet())
    unigram.train_from_iterator(CORPUS * 4, trainer)
    vocab = [tuple(piece) for piece in json.loads(unigram.to_str())["model"]["vocab"]]
    return XLMRobertaTokenizer(vocab=vocab, model_max_length=MAX_POSITIONS)


def base_config(model_base: str, vocab_size: int, hidden: int) -> Any:
    """The transformers config of a 2022 twin's text tower (what ``modelBase`` would hold).

    Heads are ``hidden // 64`` wide, as in the real ``xlm-roberta-large`` and LaBSE.
    """
    from transformers import BertConfig, XLMRobertaConfig

    common = {**TINY, "vocab_size": vocab_size, "hidden_size": hidden,
              "num_attention_heads": hidden // 64}
    if "roberta" in model_base.lower():
        return XLMRobertaConfig(**common, max_position_embeddings=MAX_POSITIONS + 2,
                                type_vocab_size=1, layer_norm_eps=1e-5, pad_token_id=1,
                                bos_token_id=0, eos_token_id=2)
    return BertConfig(**common, max_position_embeddings=MAX_POSITIONS, type_vocab_size=2,
                      layer_norm_eps=1e-12, pad_token_id=0)


def keras_head_pickle(dim: int, seed: int) -> bytes:
    """``pickle.dumps(dense.get_weights())`` of a Keras Dense 768 -> ``dim``, NumPy 1.x paths."""
    rng = np.random.default_rng(seed)
    kernel = (rng.standard_normal((768, dim)) / np.sqrt(768)).astype(np.float32)
    bias = (rng.standard_normal(dim) * 0.01).astype(np.float32)
    # Protocol 3 names globals as text, so the NumPy 2 module path can be rewritten to 1.x.
    data = pickle.dumps([kernel, bias], protocol=3)
    return data.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")


def build_legacy(root: Path, vocab: list[str]) -> None:
    """The three 2021 text repos (bare transformers) and their head pickles."""
    import torch
    from transformers import BertConfig, BertModel, DistilBertConfig, DistilBertModel

    for seed, (repo, kind) in enumerate(LEGACY_REPOS.items()):
        torch.manual_seed(200 + seed)
        if kind == "distilbert":
            model: Any = DistilBertModel(DistilBertConfig(
                vocab_size=len(vocab), dim=768, n_layers=1, n_heads=12, hidden_dim=37,
                max_position_embeddings=MAX_POSITIONS))
        else:
            model = BertModel(BertConfig(vocab_size=len(vocab), hidden_size=768, **TINY,
                                         num_attention_heads=12,
                                         max_position_embeddings=MAX_POSITIONS))
        folder = root / repo
        model.save_pretrained(folder)
        write_wordpiece(folder, vocab)
    heads = root / "heads"
    heads.mkdir(parents=True, exist_ok=True)
    for seed, spec in enumerate(s for s in REGISTRY.values() if s.family == "mclip-legacy"):
        # Under the name users download it by: the reference package's, not our registry's.
        (heads / reference_head_name(spec.name)).write_bytes(keras_head_pickle(spec.dim, seed))


def reference_head_name(model: str) -> str:
    """The head file name ``multilingual_clip``'s own ``AVAILABLE_MODELS`` table gives ``model``."""
    from multilingual_clip.legacy_multilingual_clip import AVAILABLE_MODELS

    return str(AVAILABLE_MODELS[model]["head_name"])


def build_2022(root: Path, vocab: list[str]) -> None:
    """The four 2022 repos: M-CLIP config.json, one state dict, the base's tokenizer."""
    import torch
    from safetensors.torch import save_file
    from transformers import AutoModel, BertTokenizer

    xlmr = xlmr_tokenizer()
    dims = {spec.text_repo: spec.dim for spec in REGISTRY.values() if spec.family == "mclip"}
    for seed, (repo, (model_base, hidden, weights)) in enumerate(MCLIP_2022.items()):
        folder = root / repo
        folder.mkdir(parents=True, exist_ok=True)
        roberta = "roberta" in model_base
        vocab_size = len(xlmr) if roberta else len(vocab)
        torch.manual_seed(300 + seed)
        transformer = AutoModel.from_config(base_config(model_base, vocab_size, hidden))
        head = torch.nn.Linear(hidden, dims[repo])
        state = {f"transformer.{k}": v for k, v in transformer.state_dict().items()}
        state.update({f"LinearTransformation.{k}": v for k, v in head.state_dict().items()})
        # The 2022 checkpoints (transformers 4.8) also saved the position-id buffer.
        state["transformer.embeddings.position_ids"] = torch.arange(
            transformer.config.max_position_embeddings)[None]
        state = {k: v.contiguous() for k, v in state.items()}
        if weights.endswith(".bin"):
            torch.save(state, folder / weights)
        else:
            save_file(state, str(folder / weights))
        config = {"architectures": ["SentenceModelWithLinearTransformation"],
                  "modelBase": model_base, "model_type": "M-CLIP", "numDims": dims[repo],
                  "transformerDimensions": hidden, "transformers_version": "4.8.1"}
        (folder / "config.json").write_text(json.dumps(config, indent=2), encoding="utf-8")
        if roberta:
            xlmr.save_pretrained(folder)
        else:
            write_wordpiece(folder, vocab)
            BertTokenizer(str(folder / "vocab.txt"), do_lower_case=False,
                          model_max_length=MAX_POSITIONS).save_pretrained(folder)


def build(root: Path) -> None:
    """Write every M-CLIP twin under ``root``."""
    vocab = wordpiece_vocab()
    build_legacy(root, vocab)
    build_2022(root, vocab)
