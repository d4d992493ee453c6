"""MetaCLIP 2, SigLIP 2, NLLB-CLIP and XLM-R ViT-H/14 on tiny twins.

Parity is against the libraries users load them with (transformers ``MetaClip2Model``, open_clip).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import load_model
from mclip_explorer.errors import PairingError, UnknownModelError
from mclip_explorer.models.registry import REGISTRY
from tests.test_models_st import photos
from tests.twins import modern
from tests.twins.st import SCRIPT_SAMPLES

TEXTS = [*SCRIPT_SAMPLES.values(), "", "a cat"]
METACLIP2 = [name for name, spec in REGISTRY.items() if spec.family == "metaclip2"]
NEW_OPEN_CLIP = {  # registry name -> hub repo of its twin
    "nllb-clip-base": "visheratin/nllb-clip-base-oc",
    "nllb-clip-large": "visheratin/nllb-clip-large-oc",
    "nllb-clip-base-siglip": "visheratin/nllb-clip-base-siglip",
    "SigLIP2-B-16-256": modern.SIGLIP2_REPO,
    "xlm-roberta-large-ViT-H-14": modern.XLMR_H14_REPO,
}
HEAVY = {"nllb-clip-base-siglip", "SigLIP2-B-16-256"}
OWN_FOLDER = {"xlm-roberta-large-ViT-H-14"}


@pytest.fixture(scope="session")
def heavy_weights(weights_dir: Path) -> Path:
    """The SigLIP twins (real-size image towers) added to the session's weights folder."""
    modern.build_heavy(weights_dir)
    return weights_dir


@pytest.fixture(scope="session")
def xlmr_weights(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The XLM-R ViT-H/14 twin in a folder of its own (see tests/twins/modern.build)."""
    root = tmp_path_factory.mktemp("xlmr-h14")
    modern.build_xlmr_h14(root)
    return root


def test_every_new_entry_has_a_twin_or_a_reason() -> None:
    prefixes = ("SigLIP2", "nllb", "xlm-roberta-large-ViT")
    new = {name for name, spec in REGISTRY.items()
           if spec.family == "metaclip2" or name.startswith(prefixes)}
    assert new == set(METACLIP2) | set(NEW_OPEN_CLIP) | set(modern.UNTWINNED)
    assert len(METACLIP2) == 9
    for name in new:
        assert REGISTRY[name].licence, name


def test_registry_matches_open_clip_tables() -> None:
    import open_clip

    for name, spec in REGISTRY.items():
        if spec.family != "open_clip":
            continue
        config = open_clip.get_model_config(spec.image_arch)
        tag = open_clip.get_pretrained_cfg(spec.image_arch, spec.image_pretrained)
        assert tag["hf_hub"].rstrip("/") == spec.image_repo, name
        assert config["embed_dim"] == spec.dim, name
        assert config["vision_cfg"]["image_size"] == spec.image_size, name
        assert config["text_cfg"].get("context_length", 77) == spec.text_max_tokens, name


# ------------------------------------------------------------------------------ MetaCLIP 2
@pytest.fixture(scope="module",
                params=["metaclip-2-worldwide-b32", "metaclip-2-worldwide-huge-378"])
def metaclip(request: pytest.FixtureRequest, weights_dir: Path):
    return load_model(request.param, weights_dir=weights_dir, device="cpu")


def test_metaclip2_parity_with_transformers(metaclip, weights_dir: Path) -> None:
    import torch
    from transformers import AutoProcessor, MetaClip2Model

    spec = REGISTRY[metaclip.name]
    folder = weights_dir / spec.text_repo
    model = MetaClip2Model.from_pretrained(folder).eval()
    processor = AutoProcessor.from_pretrained(folder)
    images = photos()
    with torch.inference_mode():
        inputs = processor(text=TEXTS, padding=True, truncation=True, max_length=77,
                           return_tensors="pt")
        text = model.get_text_features(**inputs).pooler_output.numpy()
        pixels = processor(images=images, return_tensors="pt")["pixel_values"]
        image = model.get_image_features(pixel_values=pixels).pooler_output.numpy()
        ours_pixels = torch.stack([metaclip.image_transform(i) for i in images])
        ours_text = metaclip._forward_text(TEXTS).numpy()
        ours_image = metaclip._forward_images(ours_pixels).numpy()
    assert ours_pixels.shape[-1] == spec.image_size
    assert torch.equal(ours_pixels, pixels)
    assert np.abs(ours_text - text).max() <= 1e-5
    assert np.abs(ours_image - image).max() <= 1e-5
    assert metaclip.score_kind == "cosine" and not metaclip.needs_language


def test_metaclip2_wrong_size_is_refused(weights_dir: Path) -> None:
    with pytest.raises(PairingError, match=r"projection dim 512 \(expected 1024\)"):
        load_model("metaclip-2-worldwide-huge-quickgelu", device="cpu",
                   text=weights_dir / "facebook/metaclip-2-worldwide-b32")


# ------------------------------------------------------------------------ open_clip models
def _reference(name: str, weights_dir: Path):
    """open_clip's own model, preprocessing and tokenizer for a twin folder."""
    import open_clip
    from open_clip.tokenizer import HFTokenizer

    folder = weights_dir / NEW_OPEN_CLIP[name]
    config = json.loads((folder / "open_clip_config.json").read_text())
    text_cfg = dict(config["model_cfg"]["text_cfg"])
    extra = {}
    if "hf_model_name" in text_cfg:
        text_cfg.update(hf_model_name=str(weights_dir / text_cfg["hf_model_name"]),
                        hf_model_pretrained=False)
        extra["text_cfg"] = text_cfg
        tokenizer = HFTokenizer(str(weights_dir / text_cfg["hf_tokenizer_name"]),
                                context_length=text_cfg.get("context_length", 77))
    else:
        tokenizer = open_clip.get_tokenizer(f"local-dir:{folder}")
    model, _, preprocess = open_clip.create_model_and_transforms(f"local-dir:{folder}", **extra)
    return model.eval(), preprocess, tokenizer


def _folder(name: str, weights_dir: Path, request: pytest.FixtureRequest) -> Path:
    """The weights folder holding ``name``'s twin (built on first use for the heavy ones)."""
    if name in HEAVY:
        request.getfixturevalue("heavy_weights")
    if name in OWN_FOLDER:
        return Path(request.getfixturevalue("xlmr_weights"))
    return weights_dir


@pytest.mark.parametrize("name", sorted(NEW_OPEN_CLIP))
def test_open_clip_parity(name: str, weights_dir: Path, request: pytest.FixtureRequest) -> None:
    import torch

    weights_dir = _folder(name, weights_dir, request)
    encoder = load_model(name, weights_dir=weights_dir, device="cpu")
    model, preprocess, tokenizer = _reference(name, weights_dir)
    images = photos()
    texts = ["A photo of a cat sleeping on a red chair", "a cat", ""]
    if encoder.needs_language:
        # The reference is told the language by hand; ours detects it (English here).
        tokenizer.tokenizer.src_lang = "eng_Latn"
    tokens = tokenizer(texts)
    with torch.inference_mode():
        ours_pixels = torch.stack([encoder.image_transform(i) for i in images])
        theirs_pixels = torch.stack([preprocess(i) for i in images])
        image = model.encode_image(theirs_pixels)
        text = model.encode_text(tokens)
    assert torch.equal(ours_pixels, theirs_pixels)
    ours_image = encoder.encode_images(images, num_workers=0)
    ours_text = encoder.encode_text(texts)
    ref_image = torch.nn.functional.normalize(image, dim=-1).numpy()
    ref_text = torch.nn.functional.normalize(text, dim=-1).numpy()
    assert np.abs(ours_image - ref_image).max() <= 1e-5
    assert np.abs(ours_text - ref_text).max() <= 1e-5
    assert encoder.text_max_tokens == tokens.shape[1]


def test_siglip2_tokenizer_and_preprocessing_are_siglips(heavy_weights: Path) -> None:
    encoder = load_model("SigLIP2-B-16-256", weights_dir=heavy_weights, device="cpu")
    assert type(encoder.tokenizer.tokenizer).__name__ == "GemmaTokenizer"
    assert encoder.text_max_tokens == 64
    text = repr(encoder.image_transform)
    assert "Resize(size=(256, 256)" in text  # squash, no centre crop
    assert "mean=(0.5, 0.5, 0.5)" in text


@pytest.mark.parametrize("name", ["SigLIP2-B-16-256", "nllb-clip-base-siglip"])
def test_sigmoid_scores_match_the_library_logits(name: str, heavy_weights: Path) -> None:
    import torch

    encoder = load_model(name, weights_dir=heavy_weights, device="cpu")
    model, preprocess, tokenizer = _reference(name, heavy_weights)
    texts = ["a cat", "a dog on a beach"]
    if encoder.needs_language:
        tokenizer.tokenizer.src_lang = "eng_Latn"
    images = photos(3)
    with torch.inference_mode():
        image, text, scale, bias = model(torch.stack([preprocess(i) for i in images]),
                                         tokenizer(texts))[:4]
        expected = torch.sigmoid(scale * image @ text.T + bias).numpy()
    cos = encoder.encode_images(images, num_workers=0) @ encoder.encode_text(texts).T
    assert encoder.score_kind == "sigmoid"
    np.testing.assert_allclose(encoder.score(cos), expected, atol=1e-5)
    assert not np.allclose(encoder.score(cos), cos)


def test_cosine_models_score_is_the_cosine(xlmr_weights: Path) -> None:
    encoder = load_model("xlm-roberta-large-ViT-H-14", weights_dir=xlmr_weights, device="cpu")
    cos = np.array([[0.25, -0.5]], dtype=np.float32)
    assert encoder.score_kind == "cosine"
    np.testing.assert_array_equal(encoder.score(cos), cos)


# ------------------------------------------------------------------- NLLB-CLIP's language
@pytest.fixture(scope="module")
def nllb(weights_dir: Path):
    return load_model("nllb-clip-base", weights_dir=weights_dir, device="cpu")


def _nllb_reference_text(weights_dir: Path, texts: list[str], flores: str) -> np.ndarray:
    import torch

    model, _, tokenizer = _reference("nllb-clip-base", weights_dir)
    tokenizer.tokenizer.src_lang = flores
    tokens = tokenizer(texts)
    # The tag opens every text: an independent check that the language reached the tokens.
    tag = tokenizer.tokenizer.convert_tokens_to_ids(flores)
    assert (tokens[:, 0] == tag).all()
    with torch.inference_mode():
        return torch.nn.functional.normalize(model.encode_text(tokens), dim=-1).numpy()


def test_nllb_detects_each_texts_language(nllb, weights_dir: Path) -> None:
    german, russian = "Ein Hund läuft am Strand entlang", "собака бежит по пляжу"
    assert nllb.text_languages([german, russian]) == ["deu_Latn", "rus_Cyrl"]
    ours = nllb.encode_text([german, russian])
    for row, text, flores in ((0, german, "deu_Latn"), (1, russian, "rus_Cyrl")):
        expected = _nllb_reference_text(weights_dir, [text], flores)[0]
        assert np.abs(ours[row] - expected).max() <= 1e-5


def test_nllb_lang_override(nllb, weights_dir: Path) -> None:
    text = "Ein Hund läuft am Strand entlang"
    as_french = nllb.encode_text([text], lang="fr")
    expected = _nllb_reference_text(weights_dir, [text], "fra_Latn")
    assert np.abs(as_french - expected).max() <= 1e-5
    assert not np.allclose(as_french, nllb.encode_text([text]))
    assert np.allclose(nllb.encode_text([text], lang=["fra_Latn"]), as_french)
    with pytest.raises(UnknownModelError, match="no NLLB language code for 'xx'"):
        nllb.encode_text([text], lang="xx")
    with pytest.raises(ValueError, match="lang has 2 entries for 1 texts"):
        nllb.encode_text([text], lang=["de", "fr"])


def test_other_models_ignore_language(xlmr_weights: Path) -> None:
    encoder = load_model("xlm-roberta-large-ViT-H-14", weights_dir=xlmr_weights, device="cpu")
    assert not encoder.needs_language
    assert np.array_equal(encoder.encode_text(["Ein Hund"], lang="fr"),
                          encoder.encode_text(["Ein Hund"]))
