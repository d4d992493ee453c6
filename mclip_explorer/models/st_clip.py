"""sentence-transformers CLIP models, loaded by ``sentence_transformers.SentenceTransformer``.

* ``clip-ViT-B-32-multilingual-v1``: the multilingual student (Transformer -> Pooling -> Dense, as
  listed in the text repo's ``modules.json``) paired with ``sentence-transformers/clip-ViT-B-32``.
* Any sentence-transformers CLIP folder or hub id (``0_CLIPModel`` serving both towers):
  :func:`spec_for_path`.

Both towers are ``SentenceTransformer`` objects, so tokenisation, pooling and the Dense layers are
the library's own (the model card's code; tests/test_models_st.py checks parity). Two things are
added around it: the truncation warning, and the image pipeline: the CLIP image processor runs in
DataLoader workers and the pixels go through the same model's ``get_image_features``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import (
    PairingError,
    UnknownModelError,
    WeightsNotFoundError,
)
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.torch_base import TorchEncoder, hf_lengths, warn_truncated
from mclip_explorer.models.weights import OTHER_FRAMEWORK_FILES, locate_repo

if TYPE_CHECKING:
    import torch

CLIP_MODULE = "CLIPModel"
CLIP_TEXT_LIMIT = 77


# ------------------------------------------------------------------------------- helpers
class HFImageTransform:
    """Picklable ``PIL RGB -> FloatTensor[3, S, S]`` through a transformers image processor."""

    def __init__(self, image_processor: Any) -> None:
        self.image_processor = image_processor

    def __call__(self, image: Any) -> torch.Tensor:
        """Preprocess one RGB image."""
        pixels: torch.Tensor = self.image_processor(images=image, return_tensors="pt")[
            "pixel_values"][0]
        return pixels

    def __repr__(self) -> str:
        return f"HFImageTransform({self.image_processor.to_json_string()})"


def tokenize(tokenizer: Any, texts: list[str], limit: int, tower: str,
             device: torch.device) -> dict[str, torch.Tensor]:
    """Pad and truncate ``texts`` at ``limit`` tokens, warning once if any text was cut."""
    warn_truncated(texts, limit, tower, hf_lengths(tokenizer))
    batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    return {key: value.to(device) for key, value in batch.items()}


def features(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output object (transformers 5)."""
    pooled: torch.Tensor | None = getattr(output, "pooler_output", None)
    result: torch.Tensor = output if pooled is None else pooled
    return result


def local_repo(repo: str, override: str | Path | None, weights_dir: str | Path | None) -> Path:
    """A local folder for ``repo`` (see :func:`.weights.locate_repo`).

    Hub repos also carry ONNX/OpenVINO/TF/Flax copies of the weights that are never read.
    """
    return locate_repo(repo, override, weights_dir, ignore_patterns=OTHER_FRAMEWORK_FILES)


def _modules(folder: Path) -> list[dict[str, Any]]:
    path = folder / "modules.json"
    if not path.is_file():
        raise UnknownModelError(f"{folder} is not a sentence-transformers model: no modules.json")
    modules = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(modules, list) or not modules:
        raise UnknownModelError(f"{path} lists no modules")
    return sorted(modules, key=lambda module: int(module.get("idx", 0)))


def _clip_folder(folder: Path) -> Path | None:
    """The ``0_CLIPModel`` sub-folder of a sentence-transformers CLIP model, if it is one."""
    for module in _modules(folder):
        if str(module.get("type", "")).endswith(CLIP_MODULE):
            return folder / str(module.get("path", ""))
    return None


# ------------------------------------------------------------------------------ text towers
def sentence_transformer(folder: Path) -> Any:
    """``SentenceTransformer`` of a local module folder, on the CPU (the encoder moves it).

    Only the library's own module types load: ``trust_remote_code`` stays off, so nothing in
    the folder is executed.
    """
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu", trust_remote_code=False).eval()


class StText:
    """A text tower run through its ``SentenceTransformer``: preprocess, then the module chain.

    Args:
        model: The loaded ``SentenceTransformer``.
        max_tokens: Token limit (the model's ``max_seq_length`` is set to it).
    """

    def __init__(self, model: Any, max_tokens: int) -> None:
        self.model = model
        self.model.max_seq_length = self.max_tokens = int(max_tokens)
        self.tokenizer = model.tokenizer
        # get_embedding_dimension since sentence-transformers 5.4; the older name before.
        dimension = getattr(model, "get_embedding_dimension", None)
        self.dim = int((dimension or model.get_sentence_embedding_dimension)())

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules whose weights identify this tower."""
        return {}

    def to(self, device: torch.device) -> None:
        """Move the tower to ``device``."""
        self.model.to(device)

    def __call__(self, texts: list[str], device: torch.device, tower: str) -> torch.Tensor:
        """Raw embeddings of ``texts``; ``tower`` names the model in truncation warnings."""
        warn_truncated(texts, self.max_tokens, tower, hf_lengths(self.tokenizer))
        # preprocess since sentence-transformers 5.4 (tokenize, its older name, now warns).
        features = getattr(self.model, "preprocess", self.model.tokenize)(texts)
        features = {k: v.to(device) if hasattr(v, "to") else v for k, v in features.items()}
        embedded: torch.Tensor = self.model(features)["sentence_embedding"]
        return embedded


class StudentText(StText):
    """The student text tower: Transformer -> Pooling -> Dense layers, per ``modules.json``."""

    def __init__(self, folder: Path) -> None:
        import torch

        types = [str(m.get("type", "")).rsplit(".", 1)[-1] for m in _modules(folder)]
        # Normalize is a no-op here (every output is normalised); anything else would change
        # the embedding in ways the explorer does not know about, so refuse it.
        if (types[0] != "Transformer" or "Pooling" not in types
                or set(types) - {"Transformer", "Pooling", "Dense", "Normalize"}):
            raise UnknownModelError(
                f"{folder}: expected Transformer -> Pooling -> Dense modules, got {types}")
        model = sentence_transformer(folder)
        super().__init__(model, model.max_seq_length)
        self.transformer = model[0].auto_model
        self.pooling = _pooling_mode(model[types.index("Pooling")])
        # A view of the Dense layers' own parameters, named as the fingerprint has always seen
        # them ("0.0.weight"), so collections built before keep matching.
        self.dense = torch.nn.Sequential(*[
            torch.nn.Sequential(module.linear, module.activation_function)
            for module, kind in zip(model, types, strict=True) if kind == "Dense"])

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules whose weights identify this tower."""
        return {"text.transformer": self.transformer, "text.dense": self.dense}


def _pooling_mode(pooling: Any) -> str:
    mode = str(getattr(pooling, "pooling_mode", None) or pooling.get_pooling_mode_str())
    if mode not in ("mean", "cls"):
        raise UnknownModelError(f"only mean or CLS pooling is supported, got {mode!r}")
    return mode


class ClipText(StText):
    """The text tower of a sentence-transformers CLIP folder (truncated at its 77 positions)."""

    def __init__(self, model: Any) -> None:
        clip = model[0].auto_model
        super().__init__(model, clip.config.text_config.max_position_embeddings)
        self.dim = int(clip.config.projection_dim)


def _json(path: Path, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise WeightsNotFoundError(f"missing {path}")
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


# ------------------------------------------------------------------------------------ encoder
class StClipEncoder(TorchEncoder):
    """A sentence-transformers text tower and the CLIP image model it was distilled against."""

    def __init__(self, spec: ModelSpec, text: StText, clip: Any,
                 image_processor: Any, *, device: str | None, dtype: Any) -> None:
        super().__init__(device, dtype)
        self.name, self.dim, self.languages = spec.name, spec.dim, spec.languages
        self.image_size = spec.image_size
        self.text = text
        self.text_max_tokens = text.max_tokens
        self.clip = clip.eval().to(self.device)
        text.to(self.device)
        self.image_transform = HFImageTransform(image_processor)

    def _forward_text(self, texts: list[str]) -> torch.Tensor:
        return self.text(texts, self.device, self.name)

    def _forward_images(self, pixels: torch.Tensor) -> torch.Tensor:
        return features(self.clip.get_image_features(pixel_values=pixels))

    def _modules(self) -> dict[str, torch.nn.Module]:
        return {"image.clip": self.clip, **self.text.modules()}

    def _identity(self) -> dict[str, Any]:
        return {**super()._identity(), "image_preprocess": repr(self.image_transform),
                "text_tower": type(self.text).__name__,
                "pooling": getattr(self.text, "pooling", "clip-eos")}


def spec_for_path(name_or_path: str | Path, weights_dir: str | Path | None = None) -> ModelSpec:
    """A spec for any sentence-transformers CLIP model (local folder or hub id).

    Raises:
        UnknownModelError: The folder is not a sentence-transformers CLIP model.
        WeightsNotFoundError: A hub id that is neither local nor in the Hugging Face cache.
    """
    name = str(name_or_path)
    is_path = Path(name).expanduser().exists()
    folder = local_repo(name, name if is_path else None, weights_dir)
    inner = _clip_folder(folder)
    if inner is None:
        raise UnknownModelError(
            f"{name!r} is a sentence-transformers model without a {CLIP_MODULE} module, so it has "
            "no image tower. Text-only towers load through the registry with the image tower they "
            "were trained against (see available_models())."
        )
    config = _json(inner / "config.json")
    vision = config.get("vision_config", {})
    text = config.get("text_config", {})
    return ModelSpec(
        name=name, family="st-clip", dim=int(config.get("projection_dim", 512)), languages=(),
        text_repo=str(folder) if is_path else name, image_repo=str(folder) if is_path else name,
        image_arch=None, image_pretrained=None,
        image_size=int(vision.get("image_size", 224)),
        text_max_tokens=int(text.get("max_position_embeddings", CLIP_TEXT_LIMIT)),
        source="local folder" if is_path else "Hugging Face Hub",
    )


def load(
    spec: ModelSpec,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    text: str | Path | None = None,
    image: str | Path | None = None,
    head: str | Path | None = None,
) -> StClipEncoder:
    """Load both towers of ``spec``; ``text=`` / ``image=`` point the hub ids at local folders."""
    del head  # load_model refuses head= for models without a head file
    image_folder = local_repo(spec.image_repo, image, weights_dir)
    inner = _clip_folder(image_folder)
    if inner is None:
        raise PairingError(f"{spec.name}: {image_folder} is not a sentence-transformers CLIP model")
    # Check the config before reading weights: a wrong tower fails on what makes it wrong.
    _check_pairing(spec, _json(inner / "config.json"), None)
    # Both towers found (and their files checked) before either is read.
    text_folder = (image_folder if text is None and spec.text_repo == spec.image_repo
                   else local_repo(spec.text_repo, text, weights_dir))
    image_model = sentence_transformer(image_folder)
    clip = image_model[0].auto_model
    text_inner = _clip_folder(text_folder)
    if text_inner is None:
        tower: StText = StudentText(text_folder)
    elif text_inner == inner:
        tower = ClipText(image_model)
    else:
        raise PairingError(f"{spec.name}: text tower {text_folder} is another CLIP model than "
                           f"the image tower {image_folder}")
    _check_pairing(spec, clip.config.to_dict(), tower)
    return StClipEncoder(spec, tower, clip, image_model.processor.image_processor, device=device,
                         dtype=dtype)


def _check_pairing(spec: ModelSpec, config: dict[str, Any], tower: StText | None) -> None:
    wrong = []
    dim = config.get("projection_dim", 512)
    size = config.get("vision_config", {}).get("image_size", 224)
    if dim != spec.dim:
        wrong.append(f"image tower dim {dim} (expected {spec.dim})")
    if size != spec.image_size:
        wrong.append(f"image size {size} (expected {spec.image_size})")
    if tower is not None and tower.dim != spec.dim:
        wrong.append(f"text tower dim {tower.dim} (expected {spec.dim})")
    if wrong:
        raise PairingError(f"{spec.name} pairs {spec.text_repo} with {spec.image_repo}, but the "
                           "weights found do not fit: " + "; ".join(wrong))
