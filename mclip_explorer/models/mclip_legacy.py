"""Multilingual-CLIP text towers, and the 2021 models: bare (Distil)BERT + a separate head.

``M-BERT-Distil-40``, ``M-BERT-Base-69`` and ``M-BERT-Base-ViT-B`` are plain ``DistilBertModel`` /
``BertModel`` hub repos; their ``768 -> d`` projection was published only as a Keras weight
pickle, read here by :mod:`mclip_explorer.models.heads`. Every M-CLIP model (these and the 2022
ones in :mod:`mclip_explorer.models.mclip`) embeds a text the same way: attention-masked mean of
the last hidden states, then the linear head. The image towers are open_clip's.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import BadWeightsError
from mclip_explorer.models.heads import load_head
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.torch_base import TorchEncoder, select_device, warn_truncated
from mclip_explorer.models.weights import (
    OTHER_FRAMEWORK_FILES,
    check_weight_files,
    fetch_snapshot,
    resolve_head,
    resolve_repo,
)

if TYPE_CHECKING:
    import torch


class MclipEncoder(TorchEncoder):
    """An M-CLIP text tower (transformer, masked mean, linear head) and its open_clip image tower.

    Attributes:
        tokenizer: The transformer's Hugging Face tokenizer.
        transformer: The text transformer (eval mode).
        head: ``Linear(hidden, dim)`` applied to the pooled text vector.
        visual: The open_clip image tower; ``visual(pixels)`` is ``encode_image``.
    """

    def __init__(
        self,
        spec: ModelSpec,
        *,
        tokenizer: Any,
        transformer: torch.nn.Module,
        head: torch.nn.Module,
        visual: torch.nn.Module,
        transform: Any,
        device: str | torch.device | None,
        dtype: Any,
    ) -> None:
        super().__init__(None if device is None else str(device), dtype)
        self.spec = spec
        self.name, self.dim, self.languages = spec.name, spec.dim, spec.languages
        self.image_size, self.text_max_tokens = spec.image_size, spec.text_max_tokens
        self.tokenizer = tokenizer
        self.transformer = transformer.to(self.device).eval()
        self.head = head.to(self.device).eval()
        self.visual = visual.to(self.device).eval()
        self.image_transform = transform

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        batch = tokenize(self.tokenizer, texts, self.text_max_tokens, self.name)
        batch = {key: value.to(self.device) for key, value in batch.items()}
        hidden = self.transformer(**batch)[0]
        return self.head(masked_mean(hidden, batch["attention_mask"]))

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.visual(pixels)

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"transformer": self.transformer, "head": self.head, "visual": self.visual}

    def _identity(self) -> dict[str, Any]:
        backend = getattr(self.tokenizer, "backend_tokenizer", None)
        vocab = backend.to_str() if backend is not None else repr(self.tokenizer.get_vocab())
        return {**super()._identity(), "pooling": "masked-mean",
                "image_arch": self.spec.image_arch, "image_preprocess": repr(self.image_transform),
                "tokenizer": hashlib.sha256(vocab.encode()).hexdigest()}


def tokenize(tokenizer: Any, texts: list[str], limit: int, tower: str) -> dict[str, torch.Tensor]:
    """Pad and truncate to ``limit`` tokens, warning (once per batch) about texts that were cut.

    The reference code does not truncate, so a text over 512 tokens crashes it; here only the
    texts that reach the limit are re-tokenised in full to count the ones actually cut.
    """
    batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    at_limit = [text for text, length in zip(texts, lengths, strict=True) if length >= limit]
    if at_limit:
        full = tokenizer(at_limit, add_special_tokens=True, verbose=False)["input_ids"]
        warn_truncated(sum(len(ids) > limit for ids in full), limit, tower)
    return dict(batch)


def masked_mean(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of the token vectors the attention mask keeps, computed in float32."""
    import torch

    weights = mask.unsqueeze(-1).to(torch.float32)
    return (hidden.float() * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)


def load(
    spec: ModelSpec,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    text: str | Path | None = None,
    image: str | Path | None = None,
    head: str | Path | None = None,
) -> MclipEncoder:
    """Load a 2021 M-CLIP model: transformer (``text=``), head (``head=``), image tower.

    The head is looked for first (argument, ``$MCLIP_EXPLORER_HEAD``, then
    ``<weights_dir>/heads/``), so a missing head fails before gigabytes are read.

    Raises:
        WeightsNotFoundError: The head, the transformer or the image tower is not available.
        UnsafeFileError: The head pickle holds anything but NumPy arrays.
        BadWeightsError: The head does not fit the transformer or the model's dim.
    """
    from mclip_explorer.models.openclip import load_image_tower

    if spec.head_file is None:
        raise ValueError(f"{spec.name} is not a legacy M-CLIP model (it has no head file)")
    head_path = resolve_head(spec.head_file, head, weights_dir, spec.head_aliases)
    folder = resolve_repo(spec.text_repo, text, weights_dir)
    tokenizer, transformer = load_hf_text(folder, spec.text_repo)
    hidden = int(transformer.config.hidden_size)
    linear = load_head(head_path, in_features=hidden, out_features=spec.dim).to_linear()
    torch_device = select_device(device)
    visual, transform = load_image_tower(spec, device=torch_device, image=image,
                                         weights_dir=weights_dir)
    return MclipEncoder(spec, tokenizer=tokenizer, transformer=transformer, head=linear,
                        visual=visual, transform=transform, device=torch_device, dtype=dtype)


def load_hf_text(folder: str, repo: str) -> tuple[Any, Any]:
    """Tokenizer and bare transformer (a ``PreTrainedModel``) from a folder or the HF cache."""
    from transformers import AutoModel, AutoTokenizer

    if not Path(folder).exists():
        folder = str(fetch_snapshot(repo, ignore_patterns=OTHER_FRAMEWORK_FILES))
    check_weight_files(folder, repo)
    try:
        tokenizer = AutoTokenizer.from_pretrained(folder)
        transformer = AutoModel.from_pretrained(folder)
    except OSError as exc:
        raise BadWeightsError(f"cannot load the text tower from {folder}: {exc}") from exc
    return tokenizer, transformer
