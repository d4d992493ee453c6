"""The 2022 M-CLIP models (XLM-R Large and LaBSE text towers), loaded from config + state dict.

Their hub repos hold ``config.json`` (``model_type: "M-CLIP"``, ``modelBase``,
``transformerDimensions``, ``numDims``), one state dict (keys ``transformer.*`` and
``LinearTransformation.*``) and the base's tokenizer. The reference
``MultilingualCLIP.from_pretrained`` downloads the whole ``modelBase`` (2.2 GB for XLM-R Large)
only to overwrite it, and breaks on transformers 5. Here the base transformer's config comes from:

1. a local folder named like ``modelBase`` in the weights folder
   (``<weights_dir>/xlm-roberta-large/config.json``), if there is one; else
2. the state dict itself: every size is read off the tensor shapes, and what shapes cannot tell
   (attention heads, layer-norm epsilon, padding id) comes from the base family's published
   config (:data:`BASE_FAMILIES`).

Nothing of ``modelBase`` is ever downloaded. Encoding is :class:`MclipEncoder`'s masked mean + head.
"""

from __future__ import annotations

import json
import re
from contextlib import nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import BadWeightsError, PairingError, WeightsNotFoundError
from mclip_explorer.models.mclip_legacy import MclipEncoder
from mclip_explorer.models.registry import ModelSpec
from mclip_explorer.models.torch_base import select_device
from mclip_explorer.models.weights import fetch_snapshot, resolve_repo

if TYPE_CHECKING:
    import torch

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin")
REPO_FILES = ["config.json", *WEIGHT_FILES, "*.json", "*.txt", "*.model"]
# Buffers older transformers saved in checkpoints and transformers 5 no longer expects.
STALE_BUFFERS = ("embeddings.position_ids", "embeddings.token_type_ids")


@dataclass(frozen=True)
class BaseFamily:
    """What a base transformer's tensor shapes do not say; values from the published configs."""

    model_type: str
    head_dim: int
    settings: dict[str, Any]


BASE_FAMILIES = {
    # xlm-roberta-large: 16 heads of 64, LayerNorm eps 1e-5, <pad> = 1 (positions start at 2).
    "xlm-roberta": BaseFamily("xlm-roberta", 64, {"layer_norm_eps": 1e-5, "pad_token_id": 1,
                                                  "bos_token_id": 0, "eos_token_id": 2}),
    # sentence-transformers/LaBSE: a BERT-base, 12 heads of 64, eps 1e-12, [PAD] = 0.
    "bert": BaseFamily("bert", 64, {"layer_norm_eps": 1e-12, "pad_token_id": 0}),
}


def base_family(model_base: str) -> BaseFamily:
    """The family of a ``modelBase`` (``xlm-roberta-large``, ``sentence-transformers/LaBSE``)."""
    lowered = model_base.lower()
    if "roberta" in lowered:
        return BASE_FAMILIES["xlm-roberta"]
    if "labse" in lowered or "bert" in lowered:
        return BASE_FAMILIES["bert"]
    raise BadWeightsError(
        f"unknown modelBase {model_base!r}: cannot derive its config from the weights. Put its "
        f"config.json in <weights folder>/{model_base}/ (only the config is read)."
    )


def derive_base_config(model_base: str, state: dict[str, torch.Tensor]) -> Any:
    """A transformers config for ``model_base`` whose sizes are read from ``state``'s shapes.

    Args:
        model_base: The ``modelBase`` of the M-CLIP config.
        state: The transformer's state dict (``transformer.`` prefix already removed).
    """
    from transformers import AutoConfig

    family = base_family(model_base)
    try:
        words = state["embeddings.word_embeddings.weight"]
        positions = state["embeddings.position_embeddings.weight"]
        types = state["embeddings.token_type_embeddings.weight"]
        intermediate = state["encoder.layer.0.intermediate.dense.weight"]
    except KeyError as exc:
        raise BadWeightsError(
            f"the {model_base} weights lack {exc.args[0]!r}; is this an M-CLIP checkpoint?"
        ) from exc
    layers = {int(m.group(1)) for key in state if (m := re.match(r"encoder\.layer\.(\d+)\.", key))}
    hidden = int(words.shape[1])
    if hidden % family.head_dim:
        raise BadWeightsError(f"hidden size {hidden} of {model_base} is not a multiple of "
                              f"{family.head_dim}; put its config.json in the weights folder")
    return AutoConfig.for_model(
        family.model_type,
        vocab_size=int(words.shape[0]),
        hidden_size=hidden,
        num_hidden_layers=max(layers) + 1,
        num_attention_heads=hidden // family.head_dim,
        intermediate_size=int(intermediate.shape[0]),
        max_position_embeddings=int(positions.shape[0]),
        type_vocab_size=int(types.shape[0]),
        **family.settings,
    )


def read_mclip_config(folder: Path, spec: ModelSpec) -> dict[str, Any]:
    """The repo's ``config.json``, checked to be an M-CLIP config of ``spec``'s dim."""
    path = folder / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise WeightsNotFoundError(f"{folder} is not an M-CLIP repo: no config.json") from exc
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise BadWeightsError(f"{path} is not valid JSON: {exc}") from exc
    missing = [k for k in ("modelBase", "transformerDimensions", "numDims") if k not in config]
    if config.get("model_type") != "M-CLIP" or missing:
        raise BadWeightsError(
            f"{path} is not an M-CLIP 2022 config (model_type {config.get('model_type')!r}, "
            f"missing {missing}); the M-BERT models load through their own registry names"
        )
    if int(config["numDims"]) != spec.dim:
        raise PairingError(
            f"{spec.name} pairs with the {spec.dim}-d {spec.image_tower} tower, but {folder} "
            f"holds a {config['numDims']}-d M-CLIP model"
        )
    return config


def read_state_dict(folder: Path) -> dict[str, torch.Tensor]:
    """The repo's weights: ``model.safetensors`` if present, else ``pytorch_model.bin``.

    A ``.bin`` is read with ``torch.load(weights_only=True)``, which refuses anything but tensors
    and plain containers, so no code in the file runs.
    """
    import torch

    safetensors = folder / WEIGHT_FILES[0]
    binary = folder / WEIGHT_FILES[1]
    try:
        if safetensors.is_file():
            from safetensors.torch import load_file

            return load_file(str(safetensors))
        if binary.is_file():
            # Not memory-mapped: the model adopts these tensors (assign=True below), and a
            # file-backed parameter would crash the process if the file were truncated later.
            return torch.load(binary, map_location="cpu", weights_only=True)
    except Exception as exc:  # safetensors/torch raise many types for a damaged file
        raise BadWeightsError(f"cannot read the weights in {folder}: {exc}") from exc
    raise WeightsNotFoundError(f"{folder} holds no weights: expected one of {WEIGHT_FILES}")


def split_state(
    state: dict[str, torch.Tensor], folder: Path
) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """``(transformer, head)`` state dicts without their prefixes; stale buffers dropped."""
    transformer = {k[len("transformer."):]: v for k, v in state.items()
                   if k.startswith("transformer.")}
    head = {k[len("LinearTransformation."):]: v for k, v in state.items()
            if k.startswith("LinearTransformation.")}
    for key in STALE_BUFFERS:
        transformer.pop(key, None)
    other = sorted(k for k in state
                   if not k.startswith(("transformer.", "LinearTransformation.")))
    if not transformer or set(head) != {"weight", "bias"} or other:
        raise BadWeightsError(
            f"the weights in {folder} are not an M-CLIP 2022 state dict: expected transformer.* "
            f"and LinearTransformation.weight/bias keys, found {len(transformer)} transformer "
            f"keys, head keys {sorted(head)}, other keys {other[:5]}"
        )
    return transformer, head


def base_config_for(
    model_base: str, state: dict[str, torch.Tensor], weights_dir: str | Path | None
) -> Any:
    """A local ``modelBase`` folder's config if there is one, else one derived from ``state``."""
    from transformers import AutoConfig

    local = Path(resolve_repo(model_base, None, weights_dir))
    if (local / "config.json").is_file():
        return AutoConfig.from_pretrained(str(local))
    return derive_base_config(model_base, state)


def build_transformer(
    config: Any, state: dict[str, torch.Tensor], folder: Path
) -> torch.nn.Module:
    """``AutoModel.from_config(config)`` holding exactly ``state`` (a missing pooler is dropped)."""
    from transformers import AutoModel

    try:  # skip the random init that the state dict overwrites anyway (seconds for XLM-R Large)
        from transformers.initialization import no_init_weights
    except ImportError:  # pragma: no cover - older transformers
        no_init_weights = nullcontext  # type: ignore[assignment]
    with no_init_weights():
        model = AutoModel.from_config(config)
    try:
        # assign=True adopts the loaded tensors instead of copying them, so a 2.2 GB checkpoint
        # is not held twice (the uninitialised parameters were never touched).
        result = model.load_state_dict(state, strict=False, assign=True)
    except RuntimeError as exc:  # shape mismatches
        raise BadWeightsError(
            f"the transformer weights in {folder} do not fit a {config.model_type} of hidden size "
            f"{config.hidden_size}: {exc}"
        ) from exc
    missing = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if missing or result.unexpected_keys:
        raise BadWeightsError(
            f"the transformer weights in {folder} do not fit a {config.model_type} of hidden size "
            f"{config.hidden_size}: missing {missing[:5]}, unexpected {result.unexpected_keys[:5]}"
        )
    if result.missing_keys and hasattr(model, "pooler"):
        model.pooler = None  # never used by mean pooling, and left uninitialised above
    return model.float().eval()


def build_head(head_state: dict[str, torch.Tensor], config: dict[str, Any], folder: Path
               ) -> torch.nn.Linear:
    """``LinearTransformation`` as the config describes it."""
    import torch

    head = torch.nn.Linear(int(config["transformerDimensions"]), int(config["numDims"]))
    try:
        head.load_state_dict(head_state)
    except RuntimeError as exc:
        raise BadWeightsError(f"the head in {folder} does not fit its config.json: {exc}") from exc
    return head.float()


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
    """Load a 2022 M-CLIP model: its repo (``text=``) and its open_clip image tower (``image=``).

    Raises:
        WeightsNotFoundError: The repo or the image tower is not available locally.
        BadWeightsError: The repo's config or weights are not those of an M-CLIP 2022 model.
        PairingError: The repo's ``numDims`` is not the dim of the tower it must pair with.
    """
    from transformers import AutoTokenizer

    from mclip_explorer.models.openclip import load_image_tower

    del head  # load_model refuses head= for models without a head file
    folder = locate(spec.text_repo, text, weights_dir)
    config = read_mclip_config(folder, spec)
    transformer_state, head_state = split_state(read_state_dict(folder), folder)
    base = base_config_for(str(config["modelBase"]), transformer_state, weights_dir)
    transformer = build_transformer(base, transformer_state, folder)
    if int(base.hidden_size) != int(config["transformerDimensions"]):
        raise BadWeightsError(f"{folder}: transformerDimensions {config['transformerDimensions']}"
                              f" but the transformer's hidden size is {base.hidden_size}")
    linear = build_head(head_state, config, folder)
    # config= keeps AutoTokenizer from reading config.json, whose model_type it does not know.
    tokenizer = AutoTokenizer.from_pretrained(str(folder), config=base)
    torch_device = select_device(device)
    visual, transform = load_image_tower(spec, device=torch_device, image=image,
                                         weights_dir=weights_dir)
    return MclipEncoder(spec, tokenizer=tokenizer, transformer=transformer, head=linear,
                        visual=visual, transform=transform, device=torch_device, dtype=dtype)


def locate(repo: str, override: str | Path | None, weights_dir: str | Path | None) -> Path:
    """A local folder for ``repo``: override, weights folder, else the Hugging Face cache."""
    found = Path(resolve_repo(repo, override, weights_dir))
    if found.is_dir():
        return found
    if found.exists():
        raise WeightsNotFoundError(f"{found} is a file; {repo} needs its repo folder")
    return fetch_snapshot(repo, allow_patterns=REPO_FILES)
