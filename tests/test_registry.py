"""The model registry: the table users read, the errors they get, and a loader for every family."""

from __future__ import annotations

import importlib
from pathlib import Path

import pytest

from mclip_explorer import available_models, load_model
from mclip_explorer.errors import UnknownModelError
from mclip_explorer.models import get_spec
from mclip_explorer.models.registry import DEFAULT_MODEL, LOADERS, REGISTRY


def test_available_models_lists_every_entry() -> None:
    table = available_models()
    for column in ("name", "dim", "languages", "text_tower", "image_tower", "weights"):
        assert column in table.columns
    assert list(table["name"]) == list(REGISTRY)
    row = table.set_index("name").loc[DEFAULT_MODEL]
    assert row["dim"] == 512
    assert row["image_tower"] == "sentence-transformers/clip-ViT-B-32"
    assert table.set_index("name").loc["M-BERT-Distil-40", "image_tower"] == \
        "RN50x4-quickgelu (openai)"


def test_unknown_name_lists_the_valid_ones() -> None:
    with pytest.raises(UnknownModelError) as info:
        load_model("clip-multilingual-typo")
    message = str(info.value)
    assert "clip-multilingual-typo" in message
    for name in REGISTRY:
        assert name in message
    assert isinstance(info.value, ValueError)  # the issue promises a ValueError


def test_unknown_path_keyword_is_a_type_error() -> None:
    with pytest.raises(TypeError, match=r"\['txt'\]"):
        load_model(DEFAULT_MODEL, txt="folder")


def test_missing_local_folder_is_not_mistaken_for_a_name(tmp_path: Path) -> None:
    from mclip_explorer.errors import WeightsNotFoundError

    with pytest.raises((UnknownModelError, WeightsNotFoundError), match="no-such-model"):
        load_model(str(tmp_path / "no-such-model"))


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_every_entry_has_a_loader(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.family in LOADERS
    module_name, function = LOADERS[spec.family].split(":")
    assert callable(getattr(importlib.import_module(module_name), function))
    assert get_spec(name) is spec


@pytest.mark.parametrize("name", sorted(REGISTRY))
def test_entries_are_complete(name: str) -> None:
    spec = REGISTRY[name]
    assert spec.dim > 0 and spec.image_size > 0 and spec.text_max_tokens > 0
    assert spec.languages and spec.source
    if spec.image_arch is not None:  # an open_clip tower: the tag must be a real one
        import open_clip

        assert open_clip.get_pretrained_cfg(spec.image_arch, spec.image_pretrained)
        assert open_clip.get_model_config(spec.image_arch)["embed_dim"] == spec.dim


def test_open_clip_names_resolve_through_get_spec() -> None:
    spec = get_spec("open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k")
    assert spec.family == "open_clip" and spec.family in LOADERS
