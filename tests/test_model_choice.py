"""``pick_model``: the real model when its weights are here, the toy only when they are missing.

The Hugging Face cache is a temporary folder in the hub's own layout (``models--org--name/refs``,
``snapshots/<commit>``), filled with the tiny twins, so the lookup runs the real hub code offline.
"""

from __future__ import annotations

import shutil
import warnings
from pathlib import Path

import pytest

from mclip_explorer.errors import BadWeightsError, WeightsNotFoundError
from mclip_explorer.models import DEFAULT_MODEL, get_spec, load_model
from mclip_explorer.models.choice import MODEL_ENV, ModelFallbackWarning, pick_model
from mclip_explorer.models.weights import HEAD_ENV, WEIGHTS_ENV

COMMIT = "0123456789abcdef0123456789abcdef01234567"


@pytest.fixture
def hf_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    import huggingface_hub.constants as constants

    cache = tmp_path / "hub"
    cache.mkdir()
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(cache))
    for name in (MODEL_ENV, WEIGHTS_ENV, HEAD_ENV):
        monkeypatch.delenv(name, raising=False)
    return cache


def _cache_repo(cache: Path, repo: str, source: Path) -> Path:
    entry = cache / f"models--{repo.replace('/', '--')}"
    (entry / "refs").mkdir(parents=True)
    (entry / "refs" / "main").write_text(COMMIT)
    snapshot = entry / "snapshots" / COMMIT
    shutil.copytree(source, snapshot)
    return snapshot


def _cache_default_model(cache: Path, weights_dir: Path) -> dict[str, Path]:
    spec = get_spec(DEFAULT_MODEL)
    return {repo: _cache_repo(cache, repo, weights_dir / repo)
            for repo in (spec.text_repo, spec.image_repo)}


def test_missing_weights_fall_back_to_the_toy_model_with_a_note(hf_cache: Path):
    with pytest.warns(ModelFallbackWarning) as caught:
        choice = pick_model()
    assert (choice.name, choice.wanted, choice.fell_back) == ("toy", DEFAULT_MODEL, True)
    assert choice.encoder.name == "toy"
    note = str(caught[0].message)
    assert note == choice.note
    assert DEFAULT_MODEL in note and "'toy'" in note and "network access" in note
    assert "Note:" in choice._repr_markdown_() and "toy" in str(choice)


def test_weights_in_the_cache_are_used(hf_cache: Path, weights_dir: Path):
    _cache_default_model(hf_cache, weights_dir)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelFallbackWarning)
        choice = pick_model(device="cpu")
    assert (choice.name, choice.fell_back, choice.note) == (DEFAULT_MODEL, False, "")
    expected = load_model(DEFAULT_MODEL, weights_dir=weights_dir, device="cpu")
    assert choice.encoder.fingerprint == expected.fingerprint


@pytest.mark.parametrize("damage", ["truncated", "garbage"])
def test_a_damaged_cached_file_is_an_error_naming_it(hf_cache: Path, weights_dir: Path,
                                                     damage: str):
    snapshots = _cache_default_model(hf_cache, weights_dir)
    bad = snapshots[get_spec(DEFAULT_MODEL).text_repo] / "model.safetensors"
    data = bad.read_bytes()
    bad.write_bytes(data[: len(data) // 2] if damage == "truncated" else b"\0" * 64)
    with warnings.catch_warnings():
        warnings.simplefilter("error", ModelFallbackWarning)
        with pytest.raises(BadWeightsError) as caught:
            pick_model(device="cpu")
    message = str(caught.value)
    assert str(bad) in message and "header" in message


def test_a_damaged_file_in_the_weights_folder_is_an_error(hf_cache: Path, weights_dir: Path,
                                                          tmp_path: Path):
    spec = get_spec(DEFAULT_MODEL)
    local = tmp_path / "weights"
    for repo in (spec.text_repo, spec.image_repo):
        shutil.copytree(weights_dir / repo, local / repo)
    bad = local / spec.image_repo / "0_CLIPModel" / "model.safetensors"
    bad.write_bytes(bad.read_bytes()[:1000])
    with pytest.raises(BadWeightsError, match=str(bad)):
        pick_model(weights_dir=local, device="cpu")


def test_a_model_asked_for_must_load(hf_cache: Path, monkeypatch: pytest.MonkeyPatch):
    with pytest.raises(WeightsNotFoundError):
        pick_model("AltCLIP-m9")
    monkeypatch.setenv(MODEL_ENV, DEFAULT_MODEL)
    with pytest.raises(WeightsNotFoundError):
        pick_model()
    monkeypatch.setenv(MODEL_ENV, "toy")
    assert pick_model().name == "toy" and not pick_model().note


def test_a_broken_install_is_not_blamed_on_the_network(hf_cache: Path,
                                                       monkeypatch: pytest.MonkeyPatch):
    import sys

    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # import fails
    with pytest.raises(ImportError):
        pick_model()


def test_a_mistyped_weights_folder_is_an_error(hf_cache: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch):
    missing = tmp_path / "wieghts"
    monkeypatch.setenv(WEIGHTS_ENV, str(missing))
    with pytest.raises(WeightsNotFoundError, match=f"{WEIGHTS_ENV} points to {missing}"):
        pick_model()
    monkeypatch.delenv(WEIGHTS_ENV)
    with pytest.raises(WeightsNotFoundError, match="weights_dir points to"):
        pick_model(weights_dir=missing)


def test_a_damaged_open_clip_tower_names_the_file(weights_dir: Path, tmp_path: Path):
    spec = get_spec("XLM-Roberta-Large-Vit-B-32")
    local = tmp_path / "weights"
    for repo in (spec.text_repo, spec.image_repo):
        shutil.copytree(weights_dir / repo, local / repo)
    bad = next((local / spec.image_repo).glob("*.safetensors"))
    bad.write_bytes(bad.read_bytes()[:500])
    with pytest.raises(BadWeightsError, match=str(bad)):
        load_model(spec.name, weights_dir=local, device="cpu")
