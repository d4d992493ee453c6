"""AltCLIP family (AltCLIP-m9, AltCLIP) on tiny twins, with parity against transformers."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import load_model
from mclip_explorer.errors import PairingError
from mclip_explorer.models.registry import REGISTRY
from mclip_explorer.models.torch_base import weights_digest
from tests.test_models_st import photos
from tests.twins.st import SCRIPT_SAMPLES

NAMES = ["AltCLIP-m9", "AltCLIP"]
TEXTS = [*SCRIPT_SAMPLES.values(), "", "a cat"]


@pytest.fixture(scope="module", params=NAMES)
def encoder(request: pytest.FixtureRequest, weights_dir: Path):
    return load_model(request.param, weights_dir=weights_dir, device="cpu")


def test_loads_with_its_own_towers(encoder) -> None:
    from transformers import AltCLIPModel

    spec = REGISTRY[encoder.name]
    assert encoder.dim == spec.dim == 768 and encoder.image_size == 224
    assert encoder.text_max_tokens == 77
    assert isinstance(encoder.model, AltCLIPModel)
    assert encoder.model.config.vision_config.patch_size == 14  # ViT-L/14 image tower
    assert encoder.languages == spec.languages


def test_outputs_are_unit_float32(encoder) -> None:
    text = encoder.encode_text(TEXTS)
    images = encoder.encode_images(photos(), num_workers=0)
    for out, n in ((text, len(TEXTS)), (images, 5)):
        assert out.shape == (n, 768) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_parity_with_transformers(encoder, weights_dir: Path) -> None:
    import torch
    from transformers import AltCLIPModel, AltCLIPProcessor

    folder = weights_dir / REGISTRY[encoder.name].text_repo
    model = AltCLIPModel.from_pretrained(folder).eval()
    processor = AltCLIPProcessor.from_pretrained(folder)
    images = photos()
    with torch.inference_mode():
        inputs = processor(text=TEXTS, padding=True, truncation=True, max_length=77,
                           return_tensors="pt")
        text = model.get_text_features(**inputs)
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image = model.get_image_features(pixel_values=pixels)
        # transformers 5 returns output objects; 4.x returned tensors.
        text = getattr(text, "pooler_output", text).numpy()
        image = getattr(image, "pooler_output", image).numpy()
        ours_text = encoder._forward_text(TEXTS).numpy()
        ours_image = encoder._forward_images(
            torch.stack([encoder.image_transform(i) for i in images])).numpy()
    assert np.abs(ours_text - text).max() <= 1e-5
    assert np.abs(ours_image - image).max() <= 1e-5


def test_the_two_models_differ(weights_dir: Path) -> None:
    first, second = (load_model(name, weights_dir=weights_dir, device="cpu") for name in NAMES)
    assert first.fingerprint != second.fingerprint
    assert not np.allclose(first.encode_text(["a cat"]), second.encode_text(["a cat"]))


def test_fingerprint_tracks_the_weights(encoder, weights_dir: Path) -> None:
    import torch

    again = load_model(encoder.name, weights_dir=weights_dir, device="cpu")
    assert again.fingerprint == encoder.fingerprint
    with torch.no_grad():
        again.model.text_projection.weight[0, 0] += 1e-3
    assert weights_digest(again._modules(), again._identity()) != encoder.fingerprint


def test_wrong_projection_is_refused(weights_dir: Path, tmp_path: Path) -> None:
    wrong = tmp_path / "altclip-m18-like"
    shutil.copytree(weights_dir / "BAAI/AltCLIP-m9", wrong)
    config = json.loads((wrong / "config.json").read_text())
    config["projection_dim"] = 1024  # AltCLIP-m18's space, not m9's
    (wrong / "config.json").write_text(json.dumps(config))
    with pytest.raises(PairingError, match="projection dim 1024"):
        load_model("AltCLIP-m9", weights_dir=weights_dir, text=wrong, device="cpu")


def test_features_accepts_both_return_forms() -> None:
    import torch
    from transformers.modeling_outputs import BaseModelOutputWithPooling

    from mclip_explorer.models.st_clip import features

    tensor = torch.arange(6.0).reshape(2, 3)
    assert features(tensor) is tensor  # transformers 4.x
    wrapped = BaseModelOutputWithPooling(last_hidden_state=torch.zeros(2, 4, 3),
                                         pooler_output=tensor)
    assert features(wrapped) is tensor  # transformers 5.x


@pytest.mark.parametrize("name", ["AltCLIP-m9", "metaclip-2-worldwide-s16",
                                  "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"])
def test_one_checkpoint_models_refuse_two_different_folders(name: str, tmp_path: Path) -> None:
    # Both towers live in one checkpoint: a text= and an image= that differ cannot both be it.
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    with pytest.raises(TypeError, match="keeps both towers in one checkpoint: pass its folder "
                                        r"once \(text= or image=\)"):
        load_model(name, text=tmp_path / "a", image=tmp_path / "b", device="cpu")
