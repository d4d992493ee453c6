"""sentence-transformers CLIP family: the registry model and any ST CLIP folder, on tiny twins."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mclip_explorer import load_model
from mclip_explorer.errors import PairingError, UnknownModelError
from mclip_explorer.models.st_clip import ClipText, StudentText
from mclip_explorer.models.torch_base import weights_digest
from tests.twins.st import SCRIPT_SAMPLES, ST_IMAGE_REPO, ST_TEXT_REPO

NAME = "clip-ViT-B-32-multilingual-v1"
TEXTS = [*SCRIPT_SAMPLES.values(), "", "a much longer sentence " * 5]


def photos(n: int = 5) -> list[Image.Image]:
    """Seeded noise images of different sizes and aspect ratios."""
    rng = np.random.default_rng(0)
    sizes = [(300, 200), (224, 224), (97, 413), (640, 480), (50, 50)]
    return [Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
            for w, h in sizes[:n]]


@pytest.fixture(scope="module")
def encoder(weights_dir: Path):
    return load_model(NAME, weights_dir=weights_dir, device="cpu")


@pytest.fixture(scope="module")
def raw_encoder(encoder):
    """Raw (unnormalised) outputs of the encoder's own forward passes."""
    import torch

    def text(texts: list[str]) -> np.ndarray:
        with torch.inference_mode():
            return encoder._forward_text(texts).numpy()

    def images(items: list[Image.Image]) -> np.ndarray:
        pixels = torch.stack([encoder.image_transform(image) for image in items])
        with torch.inference_mode():
            return encoder._forward_images(pixels).numpy()

    return text, images


def test_registry_model_loads_with_its_pairing(encoder) -> None:
    from transformers import CLIPModel, DistilBertModel

    assert encoder.dim == 512 and encoder.image_size == 224
    assert encoder.text_max_tokens == 128
    assert isinstance(encoder.text, StudentText)
    assert isinstance(encoder.text.transformer, DistilBertModel)
    assert encoder.text.pooling == "mean"
    assert isinstance(encoder.clip, CLIPModel)
    assert encoder.clip.config.vision_config.patch_size == 32
    assert "de" in encoder.languages and "zh-cn" in encoder.languages


def test_outputs_are_unit_float32(encoder) -> None:
    text = encoder.encode_text(TEXTS)
    images = encoder.encode_images(photos(), num_workers=0)
    for out, n in ((text, len(TEXTS)), (images, 5)):
        assert out.shape == (n, 512) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_text_parity_with_sentence_transformers(weights_dir: Path, raw_encoder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(weights_dir / ST_TEXT_REPO), device="cpu")
    texts = TEXTS[:-1]  # sentence-transformers pads per batch the same way; no truncation here
    expected = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    ours = np.concatenate([raw_encoder[0]([t]) for t in texts])
    assert np.abs(ours - expected).max() <= 1e-5
    # Batched (padded) forward passes agree too: the attention mask keeps padding out.
    assert np.abs(raw_encoder[0](texts) - expected).max() <= 1e-5


def test_image_parity_with_sentence_transformers(weights_dir: Path, raw_encoder) -> None:
    from sentence_transformers import SentenceTransformer

    reference = SentenceTransformer(str(weights_dir / ST_IMAGE_REPO), device="cpu")
    images = photos()
    expected = reference.encode(images, convert_to_numpy=True, normalize_embeddings=False)
    assert np.abs(raw_encoder[1](images) - expected).max() <= 1e-5


def test_image_transform_is_picklable_and_runs_in_workers(encoder) -> None:
    import pickle

    clone = pickle.loads(pickle.dumps(encoder.image_transform))
    image = photos(1)[0]
    assert clone(image).shape == (3, 224, 224)
    in_process = encoder.encode_images(photos(), num_workers=0)
    in_workers = encoder.encode_images(photos(), num_workers=2, batch_size=2)
    np.testing.assert_allclose(in_workers, in_process, atol=1e-6)


def test_fingerprint_tracks_the_weights(weights_dir: Path, encoder) -> None:
    import torch

    again = load_model(NAME, weights_dir=weights_dir, device="cpu")
    assert again.fingerprint == encoder.fingerprint
    with torch.no_grad():
        again.text.dense[0][0].weight[0, 0] += 1e-3
    assert weights_digest(again._modules(), again._identity()) != encoder.fingerprint
    with torch.no_grad():
        again.clip.visual_projection.weight[0, 0] += 1e-3
        again.text.dense[0][0].weight[0, 0] -= 1e-3
    assert weights_digest(again._modules(), again._identity()) != encoder.fingerprint


def test_st_clip_folder_serves_both_towers(weights_dir: Path) -> None:
    folder = weights_dir / ST_IMAGE_REPO
    encoder = load_model(str(folder), device="cpu")
    assert isinstance(encoder.text, ClipText) and encoder.text_max_tokens == 77
    assert encoder.dim == 512 and encoder.name == str(folder)
    out = encoder.encode_text(["a cat", "ein Hund"])
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_st_clip_folder_text_parity(weights_dir: Path) -> None:
    import torch
    from sentence_transformers import SentenceTransformer

    folder = weights_dir / ST_IMAGE_REPO
    encoder = load_model(str(folder), device="cpu")
    texts = ["a photo of a cat", "Фото кошки", "猫の写真", ""]
    reference = SentenceTransformer(str(folder), device="cpu")
    expected = reference.encode(texts, convert_to_numpy=True, normalize_embeddings=False)
    with torch.inference_mode():
        ours = encoder._forward_text(texts).numpy()
    assert np.abs(ours - expected).max() <= 1e-5


def test_text_only_folder_is_refused_with_advice(weights_dir: Path) -> None:
    with pytest.raises(UnknownModelError, match="no image tower"):
        load_model(str(weights_dir / ST_TEXT_REPO), device="cpu")


def test_wrong_image_tower_is_refused(weights_dir: Path, tmp_path: Path) -> None:
    import json

    wrong = tmp_path / "clip-wrong"
    shutil.copytree(weights_dir / ST_IMAGE_REPO, wrong)
    config_path = wrong / "0_CLIPModel" / "config.json"
    config = json.loads(config_path.read_text())
    config["vision_config"]["image_size"] = 256
    config_path.write_text(json.dumps(config))
    with pytest.raises(PairingError, match="image size 256"):
        load_model(NAME, weights_dir=weights_dir, image=wrong, device="cpu")


def test_head_argument_is_refused(weights_dir: Path) -> None:
    with pytest.raises(TypeError, match="head"):
        load_model(NAME, weights_dir=weights_dir, head="x.pkl", device="cpu")


def test_st_clip_hub_id_resolves_through_the_weights_folder(weights_dir: Path) -> None:
    encoder = load_model(ST_IMAGE_REPO, weights_dir=weights_dir, device="cpu")
    assert isinstance(encoder.text, ClipText) and encoder.name == ST_IMAGE_REPO
    assert encoder.fingerprint == load_model(str(weights_dir / ST_IMAGE_REPO),
                                             device="cpu").fingerprint


def test_st_clip_hub_id_missing_offline_names_the_repo(tmp_path: Path) -> None:
    from mclip_explorer.errors import WeightsNotFoundError

    with pytest.raises(WeightsNotFoundError, match="someone/clip-nowhere"):
        load_model("someone/clip-nowhere", weights_dir=tmp_path, device="cpu")


def test_bf16_autocast_stays_close_to_fp32(weights_dir: Path, encoder) -> None:
    half = load_model(NAME, weights_dir=weights_dir, device="cpu", dtype="bf16")
    for ours, full in ((half.encode_text(TEXTS), encoder.encode_text(TEXTS)),
                       (half.encode_images(photos(), num_workers=0),
                        encoder.encode_images(photos(), num_workers=0))):
        assert ours.dtype == np.float32  # normalised in fp32 whatever the autocast precision
        np.testing.assert_allclose(np.linalg.norm(ours, axis=1), 1.0, atol=1e-5)
        assert (ours * full).sum(axis=1).min() > 0.99


def test_towers_are_the_librarys_own_sentence_transformers(encoder) -> None:
    from sentence_transformers import SentenceTransformer

    assert isinstance(encoder.text.model, SentenceTransformer)
    # The fingerprint's view of the Dense layer is the library module's own parameter.
    assert encoder.text.dense[0][0].weight is encoder.text.model[2].linear.weight


def test_model_card_code_gives_the_same_similarities(weights_dir: Path, encoder) -> None:
    """The model card's example (two SentenceTransformers, encode, util.cos_sim), on the twins."""
    from sentence_transformers import SentenceTransformer, util

    img_model = SentenceTransformer(str(weights_dir / ST_IMAGE_REPO), device="cpu")
    text_model = SentenceTransformer(str(weights_dir / ST_TEXT_REPO), device="cpu")
    texts = TEXTS[:-1]
    img_emb = img_model.encode(photos())
    text_emb = text_model.encode(texts)
    expected = util.cos_sim(text_emb, img_emb).numpy()
    ours = encoder.encode_text(texts) @ encoder.encode_images(photos(), num_workers=0).T
    np.testing.assert_allclose(ours, expected, rtol=0, atol=2e-6)
    # Same ranking of images for every text: what a user of the explorer sees.
    assert (np.argsort(-ours, axis=1) == np.argsort(-expected, axis=1)).all()
