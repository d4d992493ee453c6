"""open_clip image towers (the M-CLIP pairings) and whole ``open_clip:`` models, on tiny twins."""

from __future__ import annotations

import json
import pickle
import shutil
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import load_model
from mclip_explorer.errors import PairingError, UnknownModelError, WeightsNotFoundError
from mclip_explorer.models.openclip import load_image_tower, spec_for
from mclip_explorer.models.registry import REGISTRY
from mclip_explorer.models.torch_base import weights_digest
from tests.test_models_st import photos
from tests.twins.openclip import XLMR_CLIP_REPO
from tests.twins.st import SCRIPT_SAMPLES

# One registry entry per distinct image tower M-CLIP pairs with, so each twin is exercised once
# (whole open_clip models are tested in test_models_modern.py).
TOWER_SPECS = {spec.image_repo: spec for spec in REGISTRY.values()
               if spec.image_arch and spec.family != "open_clip"}
EXPECTED = {  # image repo -> (tower class, patch size or None, needs QuickGELU)
    "timm/resnet50x4_clip.openai": ("ModifiedResNet", None, True),
    "timm/vit_base_patch32_clip_224.openai": ("VisionTransformer", 32, True),
    "timm/vit_large_patch14_clip_224.openai": ("VisionTransformer", 14, True),
    "timm/vit_base_patch16_plus_clip_240.laion400m_e32": ("VisionTransformer", 16, False),
}
XLMR_NAME = "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k"


def test_every_open_clip_tower_of_the_registry_has_a_twin() -> None:
    assert set(TOWER_SPECS) == set(EXPECTED)


def _reference(folder: Path, quick_gelu: bool):
    import open_clip

    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{folder}", force_quick_gelu=quick_gelu)
    return model.eval(), preprocess


@pytest.mark.parametrize("repo", sorted(EXPECTED))
def test_image_tower_pairing_and_parity(repo: str, weights_dir: Path) -> None:
    import torch
    from open_clip.transformer import QuickGELU

    spec = TOWER_SPECS[repo]
    kind, patch, quick_gelu = EXPECTED[repo]
    visual, transform = load_image_tower(spec, device="cpu", weights_dir=weights_dir)
    assert type(visual).__name__ == kind
    assert visual.output_dim == spec.dim
    if patch is not None:
        assert visual.patch_size == (patch, patch)
        assert any(isinstance(m, QuickGELU) for m in visual.modules()) == quick_gelu
    reference, preprocess = _reference(weights_dir / repo, quick_gelu)
    images = photos()
    ours = torch.stack([transform(image) for image in images])
    theirs = torch.stack([preprocess(image) for image in images])
    assert ours.shape == (5, 3, spec.image_size, spec.image_size)
    assert torch.equal(ours, theirs)
    with torch.inference_mode():
        diff = (visual(ours) - reference.encode_image(theirs)).abs().max().item()
    assert diff <= 1e-5


def test_tower_transform_is_the_openai_recipe_and_picklable(weights_dir: Path) -> None:
    spec = REGISTRY["M-BERT-Distil-40"]
    _, transform = load_image_tower(spec, device="cpu", weights_dir=weights_dir)
    text = repr(pickle.loads(pickle.dumps(transform)))
    assert "Resize(size=288, interpolation=bicubic" in text
    assert "CenterCrop(size=(288, 288))" in text
    assert "mean=(0.48145466, 0.4578275, 0.40821073)" in text


def test_quick_gelu_is_forced_for_openai_weights(weights_dir: Path, tmp_path: Path) -> None:
    import torch
    from open_clip.transformer import QuickGELU

    spec = REGISTRY["M-BERT-Base-ViT-B"]
    plain = tmp_path / "vit-b-32-no-flag"
    shutil.copytree(weights_dir / spec.image_repo, plain)
    config = json.loads((plain / "open_clip_config.json").read_text())
    del config["model_cfg"]["quick_gelu"]
    (plain / "open_clip_config.json").write_text(json.dumps(config))
    visual, transform = load_image_tower(spec, device="cpu", image=plain)
    assert any(isinstance(m, QuickGELU) for m in visual.modules())
    flagged, _ = load_image_tower(spec, device="cpu", weights_dir=weights_dir)
    pixels = torch.stack([transform(image) for image in photos(2)])
    with torch.inference_mode():
        assert torch.equal(visual(pixels), flagged(pixels))


def test_same_dim_wrong_tower_is_refused(weights_dir: Path) -> None:
    # ViT-B-16-plus-240 and RN50x4 are both 640-d: a dim check alone would let this through.
    spec = REGISTRY["XLM-Roberta-Large-Vit-B-16Plus"]
    wrong = weights_dir / "timm/resnet50x4_clip.openai"
    with pytest.raises(PairingError, match=r"image size 288 \(expected 240\).*ModifiedResNet"):
        load_image_tower(spec, device="cpu", image=wrong)


def test_other_dim_tower_is_refused(weights_dir: Path) -> None:
    spec = REGISTRY["M-BERT-Distil-40"]
    with pytest.raises(PairingError, match=r"output dim 512 \(expected 640\)"):
        load_image_tower(spec, device="cpu", image=weights_dir / TOWER_SPECS[
            "timm/vit_base_patch32_clip_224.openai"].image_repo)


def test_missing_tower_names_the_repo(tmp_path: Path) -> None:
    spec = REGISTRY["M-BERT-Distil-40"]
    with pytest.raises(WeightsNotFoundError, match=r"timm/resnet50x4_clip\.openai"):
        load_image_tower(spec, device="cpu", weights_dir=tmp_path)
    with pytest.raises(WeightsNotFoundError, match="does not exist"):
        load_image_tower(spec, device="cpu", image=tmp_path / "nowhere")


def test_folder_without_weights_is_refused(weights_dir: Path, tmp_path: Path) -> None:
    spec = REGISTRY["M-BERT-Distil-40"]
    empty = tmp_path / "config-only"
    empty.mkdir()
    shutil.copy(weights_dir / spec.image_repo / "open_clip_config.json", empty)
    with pytest.raises(WeightsNotFoundError, match="holds no weights"):
        load_image_tower(spec, device="cpu", image=empty)


# ----------------------------------------------------------------------- whole open_clip models
@pytest.fixture(scope="module")
def xlmr(weights_dir: Path):
    return load_model(XLMR_NAME, weights_dir=weights_dir, device="cpu")


def test_spec_for_open_clip_names() -> None:
    spec = spec_for(XLMR_NAME)
    assert (spec.dim, spec.image_size, spec.family) == (512, 224, "open_clip")
    assert spec.image_repo == XLMR_CLIP_REPO
    with pytest.raises(UnknownModelError, match="unknown open_clip architecture 'NoSuchArch'"):
        spec_for("open_clip:NoSuchArch/openai")
    with pytest.raises(UnknownModelError, match="laion5b_s13b_b90k"):
        spec_for("open_clip:xlm-roberta-base-ViT-B-32/no-such-tag")


def test_whole_model_loads_and_normalises(xlmr) -> None:
    from open_clip.hf_model import HFTextEncoder

    assert xlmr.dim == 512 and xlmr.text_max_tokens == 77
    assert isinstance(xlmr.model.text, HFTextEncoder)
    out = xlmr.encode_text(list(SCRIPT_SAMPLES.values()))
    images = xlmr.encode_images(photos(), num_workers=0)
    for array in (out, images):
        assert array.dtype == np.float32 and array.shape[1] == 512
        np.testing.assert_allclose(np.linalg.norm(array, axis=1), 1.0, atol=1e-5)


def test_whole_model_parity_with_open_clip(xlmr, weights_dir: Path) -> None:
    import torch
    from open_clip.tokenizer import HFTokenizer

    folder = weights_dir / XLMR_CLIP_REPO
    reference, preprocess = _reference_xlmr(folder, weights_dir)
    tokenizer = HFTokenizer(str(weights_dir / "xlm-roberta-base"), context_length=77)
    texts = [*SCRIPT_SAMPLES.values(), ""]
    images = photos()
    with torch.inference_mode():
        text = reference.encode_text(tokenizer(texts))
        image = reference.encode_image(torch.stack([preprocess(i) for i in images]))
        ours_text = xlmr._forward_text(texts)
        ours_image = xlmr._forward_images(torch.stack([xlmr.image_transform(i) for i in images]))
    assert (ours_text - text).abs().max().item() <= 1e-5
    assert (ours_image - image).abs().max().item() <= 1e-5


def _reference_xlmr(folder: Path, weights_dir: Path):
    import open_clip

    config = json.loads((folder / "open_clip_config.json").read_text())
    text_cfg = {**config["model_cfg"]["text_cfg"],
                "hf_model_name": str(weights_dir / "xlm-roberta-base"),
                "hf_model_pretrained": False}
    model, _, preprocess = open_clip.create_model_and_transforms(
        f"local-dir:{folder}", text_cfg=text_cfg)
    return model.eval(), preprocess


def test_whole_model_fingerprint(xlmr, weights_dir: Path) -> None:
    import torch

    again = load_model(XLMR_NAME, weights_dir=weights_dir, device="cpu")
    assert again.fingerprint == xlmr.fingerprint
    with torch.no_grad():
        again.model.visual.proj[0, 0] += 1e-3
    assert weights_digest(again._modules(), again._identity()) != xlmr.fingerprint


def test_checkpoint_file_of_another_size_is_refused(weights_dir: Path) -> None:
    # A bare checkpoint is read into the full-size built-in architecture; a tiny one cannot fit.
    spec = REGISTRY["M-BERT-Distil-40"]
    file = weights_dir / spec.image_repo / "open_clip_model.safetensors"
    with pytest.raises(PairingError, match=r"do not fit the RN50x4-quickgelu \(openai\) tower"):
        load_image_tower(spec, device="cpu", image=file)


def test_openai_whole_model_uses_quick_gelu_and_clip_tokenizer(weights_dir: Path) -> None:
    import open_clip
    import torch
    from open_clip.transformer import QuickGELU

    encoder = load_model("open_clip:ViT-B-32/openai", weights_dir=weights_dir, device="cpu")
    assert any(isinstance(m, QuickGELU) for m in encoder.model.modules())
    reference, _ = _reference(weights_dir / "timm/vit_base_patch32_clip_224.openai",
                              quick_gelu=True)
    tokenizer = open_clip.get_tokenizer("ViT-B-32")
    texts = ["a photo of a cat", "Фото кошки", "🐱", ""]
    with torch.inference_mode():
        diff = (encoder._forward_text(texts) - reference.encode_text(tokenizer(texts))).abs()
    assert diff.max().item() <= 1e-5
