"""Model registry and the one entry point that loads any of its models: :func:`load_model`."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mclip_explorer.errors import UnknownModelError
from mclip_explorer.models.base import Encoder, ImageBatch, normalize
from mclip_explorer.models.choice import ModelChoice, pick_model
from mclip_explorer.models.registry import DEFAULT_MODEL, LOADERS, REGISTRY, ModelSpec

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "DEFAULT_MODEL", "Encoder", "ImageBatch", "ModelChoice", "ModelSpec", "available_models",
    "get_spec", "load_model", "normalize", "pick_model",
]

PATH_KEYS = ("text", "image", "head")


def available_models() -> pd.DataFrame:
    """One row per registry model: name, dim, languages, towers, weights' source and licence."""
    import pandas as pd

    rows = [
        {
            "name": spec.name,
            "dim": spec.dim,
            "languages": len(spec.languages),
            "language_codes": " ".join(spec.languages),
            "text_tower": spec.text_repo,
            "image_tower": spec.image_tower,
            "image_size": spec.image_size,
            "head_file": spec.head_file or "",
            "weights": spec.source,
            "licence": spec.licence,
        }
        for spec in REGISTRY.values()
    ]
    return pd.DataFrame(rows)


def get_spec(name: str) -> ModelSpec:
    """The registry entry for ``name``, or an :class:`UnknownModelError` listing valid names."""
    if name in REGISTRY:
        return REGISTRY[name]
    if name.startswith("open_clip:"):
        from mclip_explorer.models.openclip import spec_for

        return spec_for(name)
    valid = ", ".join(sorted(REGISTRY))
    raise UnknownModelError(
        f"unknown model {name!r}. Valid names: {valid}; or 'open_clip:ARCH/PRETRAINED', "
        "or a local folder or hub id of a sentence-transformers CLIP model."
    )


def load_model(
    name_or_path: str | Path = DEFAULT_MODEL,
    *,
    device: str | None = None,
    dtype: Any = None,
    weights_dir: str | Path | None = None,
    **paths: str | Path,
) -> Encoder:
    """Load a multilingual CLIP model (text tower + its own image tower) as an :class:`Encoder`.

    Args:
        name_or_path: A registry name (see :func:`available_models`), ``open_clip:ARCH/PRETRAINED``,
            or a local folder / hub id of a sentence-transformers CLIP model.
        device: ``"cuda"``, ``"mps"``, ``"cpu"``...; default CUDA, then MPS, then CPU.
        dtype: Autocast precision (``"fp16"``, ``"bf16"``, ``"fp32"``); default bf16/fp16 on CUDA.
        weights_dir: Local weights folder mirroring hub ids (default ``$MCLIP_EXPLORER_WEIGHTS``).
        **paths: Local overrides of where weights come from: ``text=``, ``image=`` (folders or
            files in the hub repo's layout) and ``head=`` (legacy M-CLIP head file).

    Returns:
        The loaded encoder.
    """
    unknown = sorted(set(paths) - set(PATH_KEYS))
    if unknown:
        raise TypeError(f"unexpected argument(s) {unknown}; paths can be {list(PATH_KEYS)}")
    name = str(name_or_path)
    if name in REGISTRY or name.startswith("open_clip:"):
        spec = get_spec(name)
    elif Path(name).expanduser().exists() or "/" in name:
        from mclip_explorer.models.st_clip import spec_for_path

        spec = spec_for_path(name, weights_dir=weights_dir)
    else:
        spec = get_spec(name)  # raises UnknownModelError with the valid names
    if paths.get("head") is not None and spec.head_file is None:
        # Only the legacy M-CLIP models have a separately published head (see the registry).
        raise TypeError(f"{spec.name} has no separate head file: head= is for the legacy M-BERT "
                        "models only")
    module_name, function = LOADERS[spec.family].split(":")
    loader = getattr(importlib.import_module(module_name), function)
    encoder: Encoder = loader(spec, device=device, dtype=dtype, weights_dir=weights_dir, **paths)
    return encoder
