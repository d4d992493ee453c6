"""sentence-transformers CLIP models, read from their module folders without sentence-transformers.

* ``clip-ViT-B-32-multilingual-v1``: the multilingual student (Transformer -> Pooling -> Dense, as
  listed in the text repo's ``modules.json``) paired with ``sentence-transformers/clip-ViT-B-32``.
* Any sentence-transformers CLIP folder or hub id (``0_CLIPModel`` serving both towers):
  :func:`spec_for_path`.

The image tower is a transformers ``CLIPModel``; its image processor runs in DataLoader workers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import (
    BadWeightsError,
    PairingError,
    UnknownModelError,
    WeightsNotFoundError,
)
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.torch_base import TorchEncoder, warn_truncated
from mclip_explorer.models.weights import (
    OTHER_FRAMEWORK_FILES,
    check_weight_files,
    fetch_snapshot,
    resolve_repo,
)

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
        return self.image_processor(images=image, return_tensors="pt")["pixel_values"][0]

    def __repr__(self) -> str:
        return f"HFImageTransform({self.image_processor.to_json_string()})"


def tokenize(tokenizer: Any, texts: list[str], limit: int, tower: str,
             device: torch.device) -> dict[str, torch.Tensor]:
    """Pad and truncate ``texts`` at ``limit`` tokens, warning once if any text was cut."""
    # Lengths without truncation first: the only reliable count of what truncation removes.
    full = tokenizer(texts, add_special_tokens=True, truncation=False, verbose=False)["input_ids"]
    warn_truncated(sum(len(ids) > limit for ids in full), limit, tower)
    batch = tokenizer(texts, padding=True, truncation=True, max_length=limit, return_tensors="pt")
    return {key: value.to(device) for key, value in batch.items()}


def features(output: Any) -> torch.Tensor:
    """``get_*_features`` returns a tensor (transformers 4) or an output object (transformers 5)."""
    pooled = getattr(output, "pooler_output", None)
    return output if pooled is None else pooled


def local_repo(repo: str, override: str | Path | None, weights_dir: str | Path | None) -> Path:
    """A local folder for ``repo``: override, weights folder, then the Hugging Face cache."""
    found = resolve_repo(repo, override, weights_dir)
    if Path(found).is_dir():
        check_weight_files(found, repo)
        return Path(found)
    if Path(found).exists():
        raise WeightsNotFoundError(f"{found} is a file; {repo!r} needs its repo folder")
    # Hub repos also carry ONNX/OpenVINO/TF/Flax copies of the weights that are never read.
    return fetch_snapshot(repo, ignore_patterns=OTHER_FRAMEWORK_FILES)


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
            return folder / module.get("path", "")
    return None


# ------------------------------------------------------------------------------ text towers
class StudentText:
    """The student text tower: Transformer -> Pooling -> Dense layers, per ``modules.json``."""

    def __init__(self, folder: Path) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        modules = _modules(folder)
        types = [str(module.get("type", "")).rsplit(".", 1)[-1] for module in modules]
        # Normalize is a no-op here (every output is normalised); anything else would be ignored
        # silently, so refuse it.
        if (types[0] != "Transformer" or "Pooling" not in types
                or set(types) - {"Transformer", "Pooling", "Dense", "Normalize"}):
            raise UnknownModelError(
                f"{folder}: expected Transformer -> Pooling -> Dense modules, got {types}")
        root = folder / modules[0].get("path", "")
        self.tokenizer = AutoTokenizer.from_pretrained(root)
        self.transformer = AutoModel.from_pretrained(root).eval()
        settings = _json(root / "sentence_bert_config.json", required=False)
        positions = getattr(self.transformer.config, "max_position_embeddings", 512)
        self.max_tokens = int(settings.get("max_seq_length") or min(positions, 512))
        self.pooling = _pooling_mode(folder / modules[types.index("Pooling")]["path"])
        self.dense = torch.nn.Sequential(*[
            _dense(folder / module["path"]) for module, kind in zip(modules, types, strict=True)
            if kind == "Dense"
        ]).eval()
        self.dim = _output_dim(self.dense, self.transformer.config)

    def modules(self) -> dict[str, torch.nn.Module]:
        """Modules whose weights identify this tower."""
        return {"text.transformer": self.transformer, "text.dense": self.dense}

    def to(self, device: torch.device) -> None:
        """Move the tower to ``device``."""
        self.transformer.to(device)
        self.dense.to(device)

    def __call__(self, texts: list[str], device: torch.device, tower: str) -> torch.Tensor:
        """Raw embeddings of ``texts``; ``tower`` names the model in truncation warnings."""
        batch = tokenize(self.tokenizer, texts, self.max_tokens, tower, device)
        names = self.tokenizer.model_input_names
        hidden = self.transformer(**{k: v for k, v in batch.items() if k in names})[0]
        mask = batch["attention_mask"].unsqueeze(-1).to(hidden.dtype)
        if self.pooling == "cls":
            pooled = hidden[:, 0]
        else:  # mean over real tokens, as sentence-transformers' Pooling computes it
            pooled = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
        return self.dense(pooled)


def _json(path: Path, *, required: bool = True) -> dict[str, Any]:
    if not path.is_file():
        if required:
            raise WeightsNotFoundError(f"missing {path}")
        return {}
    return dict(json.loads(path.read_text(encoding="utf-8")))


def _pooling_mode(folder: Path) -> str:
    config = _json(folder / "config.json")
    if config.get("pooling_mode_mean_tokens") or config.get("pooling_mode") == "mean":
        return "mean"
    if config.get("pooling_mode_cls_token") or config.get("pooling_mode") == "cls":
        return "cls"
    raise UnknownModelError(f"{folder}: only mean or CLS pooling is supported, got {config}")


def _dense(folder: Path) -> torch.nn.Module:
    """One sentence-transformers Dense layer from safetensors, or a tensors-only torch file."""
    import torch

    config = _json(folder / "config.json")
    activation = str(config.get("activation_function", "torch.nn.modules.linear.Identity"))
    acts = {"Identity": torch.nn.Identity, "Tanh": torch.nn.Tanh}
    kind = activation.rsplit(".", 1)[-1]
    if kind not in acts:
        raise UnknownModelError(f"{folder}: unsupported Dense activation {activation!r}")
    linear = torch.nn.Linear(int(config["in_features"]), int(config["out_features"]),
                             bias=bool(config.get("bias", True)))
    if (folder / "model.safetensors").is_file():
        from safetensors.torch import load_file

        state = load_file(str(folder / "model.safetensors"))
    elif (folder / "pytorch_model.bin").is_file():
        # weights_only: a restricted unpickler that admits tensors only, never code.
        try:
            state = torch.load(folder / "pytorch_model.bin", map_location="cpu",
                               weights_only=True)
        except Exception as exc:  # noqa: BLE001 - torch raises many types for a damaged file
            raise BadWeightsError(f"damaged weights file {folder / 'pytorch_model.bin'}: "
                                  f"{exc}") from None
    else:
        raise WeightsNotFoundError(f"{folder} holds no model.safetensors or pytorch_model.bin")
    linear.load_state_dict({k.removeprefix("linear."): v for k, v in state.items()})
    return torch.nn.Sequential(linear, acts[kind]())


def _output_dim(dense: torch.nn.Sequential, config: Any) -> int:
    import torch

    linears = [m for m in dense.modules() if isinstance(m, torch.nn.Linear)]
    return linears[-1].out_features if linears else int(config.hidden_size)


class ClipText:
    """The text tower of a transformers ``CLIPModel`` (truncated at its 77 positions)."""

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.max_tokens = int(model.config.text_config.max_position_embeddings)
        self.dim = int(model.config.projection_dim)

    def modules(self) -> dict[str, torch.nn.Module]:
        """None of its own: the same CLIPModel is fingerprinted as the image tower."""
        return {}

    def to(self, device: torch.device) -> None:
        """Move the tower to ``device``."""
        self.model.to(device)

    def __call__(self, texts: list[str], device: torch.device, tower: str) -> torch.Tensor:
        """Raw embeddings of ``texts``; ``tower`` names the model in truncation warnings."""
        batch = tokenize(self.tokenizer, texts, self.max_tokens, tower, device)
        return features(self.model.get_text_features(**batch))


# ------------------------------------------------------------------------------------ encoder
class StClipEncoder(TorchEncoder):
    """A sentence-transformers text tower and the CLIP image model it was distilled against."""

    def __init__(self, spec: ModelSpec, text: StudentText | ClipText, clip: Any,
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
    from transformers import AutoProcessor, CLIPModel

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
    clip = CLIPModel.from_pretrained(inner)
    processor = AutoProcessor.from_pretrained(inner)
    text_inner = _clip_folder(text_folder)
    if text_inner is None:
        tower: StudentText | ClipText = StudentText(text_folder)
    elif text_inner == inner:
        tower = ClipText(clip, processor.tokenizer)
    else:
        raise PairingError(f"{spec.name}: text tower {text_folder} is another CLIP model than "
                           f"the image tower {image_folder}")
    _check_pairing(spec, clip.config.to_dict(), tower)
    return StClipEncoder(spec, tower, clip, processor.image_processor, device=device, dtype=dtype)


def _check_pairing(spec: ModelSpec, config: dict[str, Any],
                   tower: StudentText | ClipText | None) -> None:
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
