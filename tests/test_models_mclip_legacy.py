"""The 2021 M-CLIP models (M-BERT + legacy head + OpenAI image tower), loaded from their twins."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mclip_explorer import load_model
from mclip_explorer.errors import BadWeightsError, TruncationWarning, WeightsNotFoundError
from mclip_explorer.models.heads import convert_head
from mclip_explorer.models.registry import REGISTRY
from mclip_explorer.models.weights import HEAD_ENV
from tests.twins.mclip import reference_head_name

LEGACY = [name for name, spec in REGISTRY.items() if spec.family == "mclip-legacy"]
TEXTS = ["A red apple on a wooden table.", "Älgen är skogens konung!", "",
         "Вы знали, что все белые медведи левши?", "تفاحة حمراء على الطاولة",
         "桌子上有一个红苹果。", "🍎 🐶"]
SCRIPTS = {"latin": "Un chat noir dort sur le canapé.", "cyrillic": "Белые медведи",
           "greek": "Ένα κόκκινο μήλο", "arabic": "تفاحة حمراء", "hebrew": "תפוח אדום",
           "devanagari": "लाल सेब", "thai": "แมวสีดำ", "cjk": "红苹果", "hangul": "빨간 사과",
           "emoji": "🍎🐶🌅", "mixed": "red 苹果 🍎 яблоко"}


@pytest.fixture(autouse=True)
def _no_head_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(HEAD_ENV, raising=False)


@pytest.fixture(scope="module", params=LEGACY)
def legacy(request: pytest.FixtureRequest, weights_dir: Path):
    return load_model(request.param, weights_dir=weights_dir, device="cpu")


def test_loads_with_dim_unit_norm_and_its_own_image_tower(legacy, weights_dir: Path) -> None:
    from safetensors.torch import load_file

    spec = REGISTRY[legacy.name]
    assert legacy.dim == spec.dim and legacy.head.out_features == spec.dim
    assert legacy.text_max_tokens == 512 and legacy.image_size == spec.image_size
    texts = legacy.encode_text(TEXTS)
    images = legacy.encode_images([Image.new("RGB", (320, 240), (200, 30, 30)),
                                   Image.new("RGB", (100, 100), (20, 40, 220))], num_workers=0)
    for out, n in ((texts, len(TEXTS)), (images, 2)):
        assert out.shape == (n, spec.dim) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # Pairing: the image tower holds exactly the weights of the repo the registry names.
    twin = load_file(str(weights_dir / spec.image_repo / "open_clip_model.safetensors"))
    state = legacy.visual.state_dict()
    assert {f"visual.{k}" for k in state} == {k for k in twin if k.startswith("visual.")}
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), twin[f"visual.{key}"].numpy())


def test_pairings_follow_the_registry() -> None:
    assert REGISTRY["M-BERT-Distil-40"].image_arch == "RN50x4-quickgelu"
    assert REGISTRY["M-BERT-Base-69"].image_arch == "RN50x4-quickgelu"
    assert REGISTRY["M-BERT-Base-ViT-B"].image_arch == "ViT-B-32-quickgelu"
    assert REGISTRY["M-BERT-Base-ViT-B"].dim == 512  # not the reference's hard-coded 640


def test_parity_with_reference_multilingual_clip(legacy, weights_dir: Path) -> None:
    from multilingual_clip.legacy_multilingual_clip import MultilingualClip

    spec = REGISTRY[legacy.name]
    folder = str(weights_dir / spec.text_repo)
    # The reference reads the head with pickle.loads(weights_dir + head_name): our own file.
    reference = MultilingualClip(folder, folder, spec.head_file,
                                 weights_dir=str(weights_dir / "heads") + "/").eval()
    texts = [t for t in TEXTS if t]  # the reference has no empty-text rule
    import torch

    with torch.inference_mode():
        expected = reference(texts).numpy()
    ours = legacy._encode_text_batch(texts)
    assert ours.shape == expected.shape == (len(texts), spec.dim)
    assert np.abs(ours - expected).max() <= 1e-5


def test_batching_and_order_do_not_change_results(legacy) -> None:
    together = legacy.encode_text(TEXTS, batch_size=3)
    alone = np.stack([legacy.encode_text(text)[0] for text in TEXTS])
    np.testing.assert_allclose(together, alone, atol=1e-5)


@pytest.mark.parametrize("script", sorted(SCRIPTS))
def test_any_script_encodes(legacy, script: str) -> None:
    out = legacy.encode_text([SCRIPTS[script], ""])
    assert np.isfinite(out).all()
    assert not np.allclose(out[0], out[1], atol=1e-4)  # the text is not read as empty


def test_empty_and_whitespace_texts_are_the_empty_text(legacy) -> None:
    out = legacy.encode_text(["", "   ", "\n\t"])
    np.testing.assert_allclose(out[1:], np.repeat(out[:1], 2, axis=0), atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_long_text_is_truncated_with_a_warning(legacy) -> None:
    long_text = " ".join(["Älgen är skogens konung!"] * 200)
    with pytest.warns(TruncationWarning, match="512 tokens"):
        out = legacy.encode_text([long_text, "short"])
    assert out.shape == (2, legacy.dim) and np.isfinite(out).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        legacy.encode_text(["short", "also short"])


# ------------------------------------------------------------------------------ head files
def test_missing_head_names_where_it_looked(tmp_path: Path, weights_dir: Path) -> None:
    with pytest.raises(WeightsNotFoundError) as info:
        load_model("M-BERT-Distil-40", weights_dir=tmp_path)
    message = str(info.value)
    assert str(tmp_path / "heads" / reference_head_name("M-BERT-Distil-40")) in message
    assert "M-BERT Distil 40 Linear Weights.safetensors" in message
    with pytest.raises(WeightsNotFoundError, match="nowhere"):
        load_model("M-BERT-Distil-40", text=weights_dir / "M-CLIP/M-BERT-Distil-40")


@pytest.mark.parametrize("name", LEGACY)
def test_head_file_names_are_the_reference_packages(name: str) -> None:
    assert REGISTRY[name].head_file == reference_head_name(name)


def test_the_old_spelling_of_the_distil_head_still_loads(tmp_path: Path, weights_dir: Path) -> None:
    name = "M-BERT-Distil-40"
    spec = REGISTRY[name]
    (tmp_path / "heads").mkdir()
    for repo in (spec.text_repo, spec.image_repo):
        (tmp_path / repo).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / repo).symlink_to(weights_dir / repo)
    published = weights_dir / "heads" / reference_head_name(name)
    old = "M BERT Distil 40 Linear Weights.pkl"  # our registry's spelling until 0.1
    assert old != published.name
    (tmp_path / "heads" / old).write_bytes(published.read_bytes())
    from_old = load_model(name, weights_dir=tmp_path, device="cpu")
    from_published = load_model(name, weights_dir=weights_dir, device="cpu")
    np.testing.assert_array_equal(from_old.encode_text(TEXTS), from_published.encode_text(TEXTS))


def test_head_from_argument_env_and_converted_file_agree(
    tmp_path: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    name = "M-BERT-Base-ViT-B"
    spec = REGISTRY[name]
    pickle_head = weights_dir / "heads" / spec.head_file
    converted = convert_head(pickle_head, tmp_path / "head.safetensors")
    pickled = load_model(name, weights_dir=weights_dir, device="cpu")
    from_dir = pickled.encode_text(TEXTS)
    from_arg = load_model(name, weights_dir=weights_dir, head=converted, device="cpu")
    np.testing.assert_array_equal(from_arg.encode_text(TEXTS), from_dir)
    monkeypatch.setenv(HEAD_ENV, str(converted))
    from_env = load_model(name, weights_dir=weights_dir, device="cpu")
    np.testing.assert_array_equal(from_env.encode_text(TEXTS), from_dir)
    # Same weights, same fingerprint, whichever file format the head came in.
    assert pickled.fingerprint == from_arg.fingerprint == from_env.fingerprint
    monkeypatch.delenv(HEAD_ENV)
    other = load_model("M-BERT-Base-69", weights_dir=weights_dir, device="cpu")
    assert other.fingerprint != pickled.fingerprint


def test_head_of_another_model_is_refused(weights_dir: Path) -> None:
    vit_head = weights_dir / "heads" / REGISTRY["M-BERT-Base-ViT-B"].head_file
    with pytest.raises(BadWeightsError, match="512 dims but this model's space is 640"):
        load_model("M-BERT-Distil-40", weights_dir=weights_dir, head=vit_head)


def test_missing_text_tower_is_reported(tmp_path: Path, weights_dir: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_model("M-BERT-Base-69", weights_dir=weights_dir, text=tmp_path / "nope")
