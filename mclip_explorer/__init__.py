"""Explore multilingual CLIP embedding spaces in JupyterLab.

``import mclip_explorer`` stays light: torch, transformers, umap and the widget load on first use of
the names below, so a notebook pays for a model only when it asks for one.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from mclip_explorer._version import __version__

if TYPE_CHECKING:
    from mclip_explorer.collection import Collection
    from mclip_explorer.models import Encoder, available_models, load_model
    from mclip_explorer.widget import explore

__all__ = ["Collection", "Encoder", "__version__", "available_models", "explore", "load_model"]

# Public name -> module that defines it; resolved on first attribute access (PEP 562).
_LAZY = {
    "explore": "mclip_explorer.widget",
    "Collection": "mclip_explorer.collection",
    "Encoder": "mclip_explorer.models",
    "available_models": "mclip_explorer.models",
    "load_model": "mclip_explorer.models",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'mclip_explorer' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
