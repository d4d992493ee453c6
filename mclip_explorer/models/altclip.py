"""transformers dual encoders whose towers share one checkpoint and one processor.

* AltCLIP (``BAAI/AltCLIP-m9``, ``BAAI/AltCLIP``): ``AltCLIPModel``. Texts are truncated at 77
  tokens, FlagAI's ``max_length`` (the tokenizer itself would allow 512, but the model was
  trained and evaluated at 77).
* MetaCLIP 2 worldwide (``facebook/metaclip-2-worldwide-*``): ``MetaClip2Model`` with its
  ``CLIPProcessor`` (XLM-V tokenizer, CLIP image preprocessing), 77 tokens.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import PairingError
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.st_clip import HFImageTransform, features, local_repo, tokenize
from mclip_explorer.models.torch_base import TorchEncoder
from mclip_explorer.models.weights import one_checkpoint

if TYPE_CHECKING:
    import torch


class AltClipEncoder(TorchEncoder):
    """A transformers CLIP-like model: ``get_text_features`` / ``get_image_features``."""

    def __init__(self, spec: ModelSpec, model: Any, processor: Any, *, device: str | None,
                 dtype: Any) -> None:
        super().__init__(device, dtype)
        self.name, self.dim, self.languages = spec.name, spec.dim, spec.languages
        self.image_size = spec.image_size
        self.text_max_tokens = spec.text_max_tokens
        self.model = model.eval().to(self.device)
        self.tokenizer = processor.tokenizer
        self.image_transform = HFImageTransform(processor.image_processor)

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        batch = tokenize(self.tokenizer, texts, self.text_max_tokens, self.name, self.device)
        return features(self.model.get_text_features(**batch))

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return features(self.model.get_image_features(pixel_values=pixels))

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "image_preprocess": repr(self.image_transform)}


def load(
    spec: ModelSpec,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    text: str | Path | None = None,
    image: str | Path | None = None,
    head: str | Path | None = None,
) -> AltClipEncoder:
    """Load an AltCLIP model; ``text=`` or ``image=`` may name its local folder (one checkpoint)."""
    from transformers import AltCLIPConfig, AltCLIPModel, AltCLIPProcessor

    del head  # load_model refuses head= for models without a head file
    return _load_dual(spec, AltCLIPConfig, AltCLIPModel, AltCLIPProcessor, device=device,
                      dtype=dtype, weights_dir=weights_dir, text=text, image=image)


def load_metaclip2(
    spec: ModelSpec,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    text: str | Path | None = None,
    image: str | Path | None = None,
    head: str | Path | None = None,
) -> AltClipEncoder:
    """Load a MetaCLIP 2 model; ``text=`` or ``image=`` may name its local folder."""
    from transformers import AutoProcessor, MetaClip2Config, MetaClip2Model

    del head  # load_model refuses head= for models without a head file
    return _load_dual(spec, MetaClip2Config, MetaClip2Model, AutoProcessor, device=device,
                      dtype=dtype, weights_dir=weights_dir, text=text, image=image)


def _load_dual(spec: ModelSpec, config_class: Any, model_class: Any, processor_class: Any, *,
               device: str | None, dtype: Any, weights_dir: str | Path | None,
               text: str | Path | None, image: str | Path | None) -> AltClipEncoder:
    folder = local_repo(spec.text_repo, one_checkpoint(spec.name, text, image), weights_dir)
    # Check the config before reading weights: a wrong model fails on what makes it wrong.
    config = config_class.from_pretrained(folder).to_dict()
    dim, size = config.get("projection_dim"), config.get("vision_config", {}).get("image_size")
    wrong = []
    if dim != spec.dim:
        wrong.append(f"projection dim {dim} (expected {spec.dim})")
    if size != spec.image_size:
        wrong.append(f"image size {size} (expected {spec.image_size})")
    if wrong:
        raise PairingError(f"{spec.name}: {folder} holds another model: " + "; ".join(wrong))
    model = model_class.from_pretrained(folder)
    processor = processor_class.from_pretrained(folder)
    encoder = AltClipEncoder(spec, model, processor, device=device, dtype=dtype)
    encoder.logit_scale = float(model.logit_scale.exp().item())
    return encoder
