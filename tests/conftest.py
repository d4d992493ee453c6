"""Shared fixtures: offline hub settings, tiny model twins built once per session, toy encoder."""

from __future__ import annotations

import importlib
import os
import pkgutil
from pathlib import Path

import pytest

# No test may reach a hub; set before transformers / huggingface_hub are imported anywhere.
os.environ["HF_HUB_OFFLINE"] = "1"
os.environ["TRANSFORMERS_OFFLINE"] = "1"
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


@pytest.fixture(scope="session")
def weights_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A weights folder holding a tiny twin of every registry model, in hub layouts."""
    import tests.twins as twins

    root = tmp_path_factory.mktemp("weights")
    for module in pkgutil.iter_modules(twins.__path__):
        importlib.import_module(f"tests.twins.{module.name}").build(root)
    return root


@pytest.fixture(scope="session")
def toy_encoder():
    """The built-in toy colour encoder (no torch, no weights)."""
    from mclip_explorer.models.toy import ToyEncoder

    return ToyEncoder()
