"""open_clip models: the OpenAI/LAION image towers M-CLIP pairs with, and whole open_clip models.

Weights are read from a folder in the hub repo's layout (``open_clip_config.json`` plus
``open_clip_model.safetensors`` or ``open_clip_pytorch_model.bin``), found through
:mod:`mclip_explorer.models.weights`, or from the Hugging Face cache when only a hub id is known.
Every tower is checked against its registry entry, so a wrong pairing fails loudly.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mclip_explorer.errors import PairingError, UnknownModelError, WeightsNotFoundError
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.torch_base import (
    TorchEncoder,
    hf_lengths,
    select_device,
    warn_truncated,
)
from mclip_explorer.models.weights import locate_repo, one_checkpoint, resolve_repo

if TYPE_CHECKING:
    import torch

PREFIX = "open_clip:"
CONFIG_NAME = "open_clip_config.json"
WEIGHT_NAMES = ("open_clip_model.safetensors", "open_clip_pytorch_model.bin")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json")


# ------------------------------------------------------------------------------ image towers
def load_image_tower(
    spec: ModelSpec,
    *,
    device: str | torch.device | None,
    image: str | Path | None = None,
    weights_dir: str | Path | None = None,
) -> tuple[torch.nn.Module, Callable[[Any], Any]]:
    """Load the open_clip image tower ``spec`` pairs with, and its picklable preprocessing.

    Args:
        spec: A registry entry with ``image_arch`` / ``image_pretrained`` set.
        device: Where the tower runs (``None``: CUDA, then MPS, then CPU).
        image: A local folder in the hub repo's layout, or a checkpoint file of ``image_arch``.
        weights_dir: Local weights folder mirroring hub ids.

    Returns:
        ``(visual, transform)``: the eval-mode tower (``visual(pixels)`` equals open_clip's
        ``encode_image`` before normalisation) and ``PIL RGB -> FloatTensor[3, S, S]``.

    Raises:
        WeightsNotFoundError: The weights are neither local nor in the Hugging Face cache.
        PairingError: The weights found are not the tower ``spec`` was trained against.
    """
    model = _create_checked(spec, image, weights_dir)
    visual = model.visual
    # The text half of the checkpoint is never used with an M-CLIP text tower: free it.
    del model
    visual.to(select_device(None if device is None else str(device))).eval()
    return visual, image_transform(spec)


def image_transform(spec: ModelSpec) -> Callable[[Any], Any]:
    """The pretrained tag's eval preprocessing (resize shortest side, centre crop, mean/std)."""
    import open_clip

    tag = open_clip.get_pretrained_cfg(spec.image_arch, spec.image_pretrained) or {}
    transform: Callable[[Any], Any] = open_clip.image_transform(
        spec.image_size,
        is_train=False,
        mean=tag.get("mean", open_clip.OPENAI_DATASET_MEAN),
        std=tag.get("std", open_clip.OPENAI_DATASET_STD),
        resize_mode=tag.get("resize_mode", "shortest"),
        interpolation=tag.get("interpolation", "bicubic"),
    )
    return transform


def _create_checked(
    spec: ModelSpec, override: str | Path | None, weights_dir: str | Path | None
) -> Any:
    """Build the open_clip model of ``spec`` from local files, checking it matches ``spec``."""
    import open_clip

    arch, tag = spec.image_arch, spec.image_pretrained
    if arch is None or open_clip.get_model_config(arch) is None:
        raise UnknownModelError(f"{spec.name}: {arch!r} is not an open_clip architecture")
    reference = open_clip.get_model_config(arch)
    # QuickGELU if the architecture says so (``-quickgelu``) or the tag's weights were trained so.
    tag_cfg = open_clip.get_pretrained_cfg(arch, tag) or {}
    quick_gelu = bool(reference.get("quick_gelu") or tag_cfg.get("quick_gelu"))
    where = _locate(spec.image_repo, override, weights_dir)
    try:
        if where.is_file():
            # A bare checkpoint carries no config: it must fit the built-in architecture.
            model = open_clip.create_model(arch, pretrained=str(where), device="cpu")
        else:
            config = _read_config(where)
            _check_config(spec, config, reference, where)
            extra = _local_text_cfg(config["model_cfg"], where, weights_dir)
            # OpenAI weights were trained with QuickGELU; open_clip no longer switches by itself.
            model = open_clip.create_model(
                f"local-dir:{where}", force_quick_gelu=quick_gelu, device="cpu", **extra
            )
    except PairingError:
        raise
    except (RuntimeError, KeyError, ValueError, AssertionError) as exc:
        # open_clip reports shape mismatches as RuntimeError, KeyError or even AssertionError.
        raise PairingError(
            f"{spec.name}: the weights at {where} do not fit the {arch} ({tag}) tower it must "
            f"pair with: {exc}"
        ) from exc
    _check_model(spec, model, quick_gelu, where)
    return model


def _locate(repo: str, override: str | Path | None, weights_dir: str | Path | None) -> Path:
    """A local folder (or checkpoint file) for ``repo``; the Hugging Face cache as last resort."""
    return locate_repo(repo, override, weights_dir, allow_patterns=[CONFIG_NAME, *WEIGHT_NAMES],
                       file_ok=True)


def _read_config(folder: Path) -> dict[str, Any]:
    path = folder / CONFIG_NAME
    if not path.is_file():
        raise WeightsNotFoundError(f"{folder} is not an open_clip model folder: no {CONFIG_NAME}")
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PairingError(f"{path} is not valid JSON: {exc}") from exc
    if not isinstance(config, dict) or not isinstance(config.get("model_cfg"), dict):
        raise PairingError(f"{path} has no 'model_cfg' object")
    if not any((folder / name).is_file() for name in WEIGHT_NAMES):
        raise WeightsNotFoundError(f"{folder} holds no weights: expected one of {WEIGHT_NAMES}")
    return config


def _tower_kind(vision: dict[str, Any]) -> str:
    if "timm_model_name" in vision:
        return f"timm {vision['timm_model_name']}"
    if isinstance(vision.get("layers"), (list, tuple)):
        return "ModifiedResNet"
    return f"ViT patch {vision.get('patch_size')}"


def _check_config(
    spec: ModelSpec, config: dict[str, Any], reference: dict[str, Any], where: Path
) -> None:
    """Compare the folder's config with the architecture the registry names, before building."""
    model_cfg = config["model_cfg"]
    vision = model_cfg.get("vision_cfg", {})
    found = {"output dim": model_cfg.get("embed_dim"), "image size": vision.get("image_size"),
             "tower": _tower_kind(vision)}
    wanted = {"output dim": spec.dim, "image size": spec.image_size,
              "tower": _tower_kind(reference["vision_cfg"])}
    wrong = [f"{key} {found[key]} (expected {wanted[key]})" for key in wanted
             if found[key] != wanted[key]]
    pre = config.get("preprocess_cfg", {})
    import open_clip

    tag = open_clip.get_pretrained_cfg(spec.image_arch, spec.image_pretrained) or {}
    for key in ("mean", "std"):
        if key in pre and key in tag and tuple(pre[key]) != tuple(tag[key]):
            wrong.append(f"preprocess {key} {tuple(pre[key])} (expected {tuple(tag[key])})")
    if wrong:
        raise PairingError(
            f"{spec.name} pairs with {spec.image_tower}, but {where} holds another model: "
            + "; ".join(wrong)
        )


def _check_model(spec: ModelSpec, model: Any, quick_gelu: bool, where: Path) -> None:
    """The built tower must produce ``spec.dim`` vectors from ``spec.image_size`` squares."""
    from open_clip.transformer import QuickGELU

    visual = model.visual
    size = visual.image_size
    size = size[0] if isinstance(size, (tuple, list)) else size
    wrong = []
    if getattr(visual, "output_dim", spec.dim) != spec.dim:
        wrong.append(f"output dim {visual.output_dim} (expected {spec.dim})")
    if size != spec.image_size:
        wrong.append(f"image size {size} (expected {spec.image_size})")
    if quick_gelu and not any(isinstance(m, QuickGELU) for m in model.modules()):
        wrong.append("activations are GELU, but these weights were trained with QuickGELU")
    if wrong:
        raise PairingError(f"{spec.name}: the tower built from {where} is wrong: "
                           + "; ".join(wrong))


def _local_text_cfg(
    model_cfg: dict[str, Any], folder: Path, weights_dir: str | Path | None
) -> dict[str, Any]:
    """Point a Hugging Face text tower's config at a local copy of its base model, if any."""
    text = dict(model_cfg.get("text_cfg", {}))
    name = text.get("hf_model_name")
    if not name:
        return {}
    local = resolve_repo(name, None, weights_dir)
    if Path(local).exists():
        text["hf_model_name"] = local
    # The CLIP checkpoint holds the text weights: build the base from its config only.
    text["hf_model_pretrained"] = False
    return {"text_cfg": text}


# --------------------------------------------------------------------------- whole models
def spec_for(name: str) -> ModelSpec:
    """The spec of ``open_clip:ARCH/PRETRAINED`` (a pretrained tag with a hub repo).

    Example: ``open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k``.

    Raises:
        UnknownModelError: Unknown architecture or tag; the message names the valid choices.
    """
    import open_clip

    body = name[len(PREFIX):] if name.startswith(PREFIX) else name
    arch, _, tag = body.partition("/")
    config = open_clip.get_model_config(arch) if arch else None
    if config is None:
        raise UnknownModelError(
            f"unknown open_clip architecture {arch!r} in {name!r}; write open_clip:ARCH/PRETRAINED "
            "with ARCH from open_clip.list_models()"
        )
    pretrained = open_clip.get_pretrained_cfg(arch, tag) if tag else None
    if not pretrained or not pretrained.get("hf_hub"):
        tags = [t for t in open_clip.list_pretrained_tags_by_model(arch)
                if (open_clip.get_pretrained_cfg(arch, t) or {}).get("hf_hub")]
        raise UnknownModelError(
            f"{name!r}: {tag or '(none)'} is not a pretrained tag of {arch} with a hub repo; "
            f"valid tags: {', '.join(tags) or 'none'}"
        )
    repo = pretrained["hf_hub"].rstrip("/")
    vision, text = config["vision_cfg"], config.get("text_cfg", {})
    size = vision.get("image_size", 224)
    return ModelSpec(
        name=f"{PREFIX}{arch}/{tag}", family="open_clip", dim=int(config["embed_dim"]),
        languages=(), text_repo=repo, image_repo=repo, image_arch=arch, image_pretrained=tag,
        image_size=int(size[0] if isinstance(size, (list, tuple)) else size),
        text_max_tokens=int(text.get("context_length", 77)), source=f"Hugging Face Hub ({repo})",
    )


class OpenClipEncoder(TorchEncoder):
    """Both towers of one open_clip model, with the architecture's own tokenizer."""

    def __init__(self, spec: ModelSpec, model: Any, tokenizer: Any, *, device: str | None,
                 dtype: Any) -> None:
        super().__init__(device, dtype)
        self.name, self.dim, self.languages = spec.name, spec.dim, spec.languages
        self.image_size = spec.image_size
        self.text_max_tokens = int(tokenizer.context_length)
        self.model = model.to(self.device).eval()
        self.tokenizer = tokenizer
        self.image_transform = image_transform(spec)
        self.logit_scale = float(model.logit_scale.exp().item())
        bias = getattr(model, "logit_bias", None)
        self.logit_bias = None if bias is None else float(bias.item())
        # NLLB's tokenizer opens every text with a language tag (src_lang).
        self.needs_language = hasattr(getattr(tokenizer, "tokenizer", None), "src_lang")

    def _encode_text_batch_in(self, texts: list[str], language: str) -> np.ndarray:
        # open_clip's HFTokenizer.set_language calls set_src_lang_special_tokens, which no
        # longer changes the tag under transformers 5; the src_lang setter does.
        self.tokenizer.tokenizer.src_lang = language
        return self._encode_text_batch(texts)

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        warn_truncated(texts, self.text_max_tokens, self.name,
                       _full_lengths(self.tokenizer))
        tokens = self.tokenizer(texts).to(self.device)
        embedded: torch.Tensor = self.model.encode_text(tokens)
        return embedded

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        embedded: torch.Tensor = self.model.encode_image(pixels)
        return embedded

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"model": self.model}

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "image_preprocess": repr(self.image_transform),
                "tokenizer": type(self.tokenizer).__name__}


def _full_lengths(tokenizer: Any) -> Callable[[list[str]], list[int]]:
    """Token counts without truncation (special tokens included) for ``warn_truncated``."""
    hf = getattr(tokenizer, "tokenizer", None)
    if hf is not None and callable(hf):
        return hf_lengths(hf)
    return lambda texts: [len(tokenizer.encode(text)) + 2 for text in texts]  # + start/end


def load(
    spec: ModelSpec,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    text: str | Path | None = None,
    image: str | Path | None = None,
    head: str | Path | None = None,
) -> OpenClipEncoder:
    """Load a whole open_clip model; ``text=`` or ``image=`` may name its local folder."""
    import open_clip

    del head  # load_model refuses head= for models without a head file
    override = one_checkpoint(spec.name, text, image)
    model = _create_checked(spec, override, weights_dir)
    where = _locate(spec.image_repo, override, weights_dir)
    # The folder's own config says how to tokenize (SigLIP 2: canonicalising clean-up, Gemma).
    model_cfg = (_read_config(where)["model_cfg"] if where.is_dir()
                 else open_clip.get_model_config(spec.image_arch))
    text_cfg = model_cfg.get("text_cfg", {})
    context = text_cfg.get("context_length", 77)
    hf_name = text_cfg.get("hf_tokenizer_name")
    if hf_name:
        from open_clip.tokenizer import HFTokenizer

        if where.is_dir() and any((where / name).is_file() for name in TOKENIZER_FILES):
            source = str(where)
        else:
            source = resolve_repo(hf_name, None, weights_dir)
        tokenizer = HFTokenizer(source, context_length=context,
                                tokenizer_mode=text_cfg.get("tokenizer_mode"),
                                **text_cfg.get("tokenizer_kwargs", {}))
    else:
        tokenizer = open_clip.get_tokenizer(spec.image_arch)
    return OpenClipEncoder(spec, model, tokenizer, device=device, dtype=dtype)
