"""The 2022 M-CLIP models (XLM-R Large / LaBSE + head, OpenAI or LAION image tower)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mclip_explorer import load_model
from mclip_explorer.errors import (
    BadWeightsError,
    PairingError,
    TruncationWarning,
    WeightsNotFoundError,
)
from mclip_explorer.models.registry import REGISTRY
from tests.twins.mclip import MCLIP_2022, base_config, wordpiece_vocab

MCLIP = [name for name, spec in REGISTRY.items() if spec.family == "mclip"]
TEXTS = ["Three blind horses listening to Mozart.", "Älgen är skogens konung!",
         "Wie leben Eisbären in der Antarktis?", "Вы знали, что все белые медведи левши?",
         "मेज़ पर एक लाल सेब है।", "แมวสีดำนอนอยู่บนโซฟา", "탁자 위에 빨간 사과가 있다.", "🍎🐶"]


@pytest.fixture(scope="module", params=MCLIP)
def mclip(request: pytest.FixtureRequest, weights_dir: Path):
    return load_model(request.param, weights_dir=weights_dir, device="cpu")


def _reference(repo_folder: Path, config_of_base, monkeypatch: pytest.MonkeyPatch):
    """``pt_multilingual_clip.MultilingualCLIP`` on the twin's weights and its true base config.

    Its ``__init__`` downloads ``modelBase`` with ``AutoModel.from_pretrained``; offline, that call
    is pointed at a model built from the config the twin was made with.
    """
    import torch
    import transformers
    from multilingual_clip.Config_MCLIP import MCLIPConfig
    from multilingual_clip.pt_multilingual_clip import MultilingualCLIP

    config = json.loads((repo_folder / "config.json").read_text())
    monkeypatch.setattr(transformers.AutoModel, "from_pretrained",
                        lambda *a, **k: transformers.AutoModel.from_config(config_of_base))
    model = MultilingualCLIP(MCLIPConfig(modelBase=config["modelBase"],
                                         transformerDimSize=config["transformerDimensions"],
                                         imageDimSize=config["numDims"]))
    files = {p.name: p for p in repo_folder.iterdir()}
    if "model.safetensors" in files:
        from safetensors.torch import load_file

        state = load_file(str(files["model.safetensors"]))
    else:
        state = torch.load(files["pytorch_model.bin"], weights_only=True)
    state.pop("transformer.embeddings.position_ids")  # transformers 5 no longer keeps it
    model.load_state_dict(state, strict=True)
    return model.eval()


def test_loads_with_dim_unit_norm_and_its_own_image_tower(mclip, weights_dir: Path) -> None:
    from safetensors.torch import load_file

    spec = REGISTRY[mclip.name]
    assert mclip.dim == spec.dim and mclip.text_max_tokens == 512
    texts = mclip.encode_text([*TEXTS, ""])
    images = mclip.encode_images([Image.new("RGB", (300, 260), (30, 160, 40))], num_workers=0)
    for out, n in ((texts, len(TEXTS) + 1), (images, 1)):
        assert out.shape == (n, spec.dim) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    twin = load_file(str(weights_dir / spec.image_repo / "open_clip_model.safetensors"))
    state = mclip.visual.state_dict()
    assert {f"visual.{k}" for k in state} == {k for k in twin if k.startswith("visual.")}
    for key, value in state.items():
        np.testing.assert_array_equal(value.numpy(), twin[f"visual.{key}"].numpy())


def test_pairings_follow_the_model_cards() -> None:
    expected = {"XLM-Roberta-Large-Vit-B-32": ("ViT-B-32-quickgelu", "openai", 512, 224),
                "XLM-Roberta-Large-Vit-L-14": ("ViT-L-14-quickgelu", "openai", 768, 224),
                "XLM-Roberta-Large-Vit-B-16Plus": ("ViT-B-16-plus-240", "laion400m_e32", 640, 240),
                "LABSE-Vit-L-14": ("ViT-L-14-quickgelu", "openai", 768, 224)}
    found = {n: (REGISTRY[n].image_arch, REGISTRY[n].image_pretrained, REGISTRY[n].dim,
                 REGISTRY[n].image_size) for n in MCLIP}
    assert found == expected


def test_parity_with_reference_forward(
    mclip, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    spec = REGISTRY[mclip.name]
    model_base, hidden, _ = MCLIP_2022[spec.text_repo]
    truth = base_config(model_base, mclip.transformer.config.vocab_size, hidden)
    reference = _reference(weights_dir / spec.text_repo, truth, monkeypatch)
    # The config derived from the state dict matches the one the twin was built from.
    for key in ("num_attention_heads", "num_hidden_layers", "intermediate_size",
                "max_position_embeddings", "type_vocab_size", "layer_norm_eps", "pad_token_id"):
        assert getattr(mclip.transformer.config, key) == getattr(truth, key), key
    with torch.inference_mode():
        expected = reference.forward(TEXTS, mclip.tokenizer).numpy()
    ours = mclip._encode_text_batch(TEXTS)
    assert ours.shape == expected.shape == (len(TEXTS), spec.dim)
    assert np.abs(ours - expected).max() <= 1e-5


def test_tokenizer_is_the_repo_tokenizer(mclip, weights_dir: Path) -> None:
    from transformers import AutoTokenizer

    spec = REGISTRY[mclip.name]
    repo_tokenizer = AutoTokenizer.from_pretrained(str(weights_dir / spec.text_repo))
    assert mclip.tokenizer(TEXTS)["input_ids"] == repo_tokenizer(TEXTS)["input_ids"]


def test_text_handling(mclip) -> None:
    out = mclip.encode_text(["", "  ", *TEXTS])
    np.testing.assert_allclose(out[1], out[0], atol=1e-6)
    assert not np.isclose(out[2:] @ out[0], 1.0, atol=1e-4).any()
    alone = np.stack([mclip.encode_text(text)[0] for text in TEXTS])
    np.testing.assert_allclose(out[2:], alone, atol=1e-5)
    with pytest.warns(TruncationWarning, match="512 tokens"):
        long = mclip.encode_text([" ".join(TEXTS * 60)])
    assert np.isfinite(long).all()
    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        mclip.encode_text(TEXTS)


# ------------------------------------------------------------------------- loading choices
def _copy_repo(weights_dir: Path, root: Path, name: str) -> Path:
    """A private weights folder with ``name``'s repo copied (to edit) and its image tower linked."""
    spec = REGISTRY[name]
    folder = root / spec.text_repo
    shutil.copytree(weights_dir / spec.text_repo, folder)
    (root / spec.image_repo).parent.mkdir(parents=True, exist_ok=True)
    (root / spec.image_repo).symlink_to(weights_dir / spec.image_repo)
    return folder


def test_local_model_base_config_is_used(
    tmp_path: Path, weights_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import torch

    name = "XLM-Roberta-Large-Vit-B-32"
    folder = _copy_repo(weights_dir, tmp_path, name)
    derived = load_model(name, weights_dir=tmp_path, device="cpu")
    # Another head count fits the same weights: only a local config can tell.
    truth = base_config("xlm-roberta-large", derived.transformer.config.vocab_size, 1024)
    truth.num_attention_heads = 8
    truth.save_pretrained(tmp_path / "xlm-roberta-large")
    local = load_model(name, weights_dir=tmp_path, device="cpu")
    assert local.transformer.config.num_attention_heads == 8
    reference = _reference(folder, truth, monkeypatch)
    with torch.inference_mode():
        expected = reference.forward(TEXTS, local.tokenizer).numpy()
    assert np.abs(local._encode_text_batch(TEXTS) - expected).max() <= 1e-5
    assert np.abs(derived._encode_text_batch(TEXTS) - expected).max() > 1e-3


def test_wrong_num_dims_is_a_pairing_error(tmp_path: Path, weights_dir: Path) -> None:
    name = "XLM-Roberta-Large-Vit-B-16Plus"
    folder = _copy_repo(weights_dir, tmp_path, name)
    config = json.loads((folder / "config.json").read_text())
    config["numDims"] = 768
    (folder / "config.json").write_text(json.dumps(config))
    with pytest.raises(PairingError, match="768-d"):
        load_model(name, weights_dir=tmp_path)


def test_not_an_mclip_repo_is_refused(tmp_path: Path, weights_dir: Path) -> None:
    legacy = weights_dir / "M-CLIP/M-BERT-Base-69"
    with pytest.raises(BadWeightsError, match="not an M-CLIP 2022 config"):
        load_model("LABSE-Vit-L-14", text=legacy, weights_dir=weights_dir)


def test_damaged_weights_are_refused(tmp_path: Path, weights_dir: Path) -> None:
    from safetensors.torch import load_file, save_file

    name = "XLM-Roberta-Large-Vit-L-14"
    folder = _copy_repo(weights_dir, tmp_path, name)
    state = load_file(str(folder / "model.safetensors"))
    del state["transformer.encoder.layer.0.attention.self.query.weight"]
    save_file(state, str(folder / "model.safetensors"))
    with pytest.raises(BadWeightsError, match=r"missing \['encoder.layer.0.attention"):
        load_model(name, weights_dir=tmp_path)
    (folder / "model.safetensors").write_bytes(b"not safetensors")
    with pytest.raises(BadWeightsError, match="cannot read the weights"):
        load_model(name, weights_dir=tmp_path)
    (folder / "model.safetensors").unlink()
    with pytest.raises(WeightsNotFoundError, match="holds no weights"):
        load_model(name, weights_dir=tmp_path)


def test_missing_repo_and_stray_head_argument(tmp_path: Path, weights_dir: Path) -> None:
    with pytest.raises(WeightsNotFoundError, match="MCLIP_EXPLORER_WEIGHTS"):
        load_model("LABSE-Vit-L-14", weights_dir=tmp_path)
    with pytest.raises(TypeError, match="head= is for the legacy"):
        load_model("LABSE-Vit-L-14", weights_dir=weights_dir, head=tmp_path / "x.pkl")


@pytest.mark.parametrize(
    ("model_base", "family"),
    [("xlm-roberta-large", "xlm-roberta"), ("sentence-transformers/LaBSE", "bert"),
     ("LaBSE", "bert"), ("bert-base-multilingual-cased", "bert")],
)
def test_base_family_from_model_base(model_base: str, family: str) -> None:
    from mclip_explorer.models.mclip import base_family

    assert base_family(model_base).model_type == family


def test_unknown_model_base_asks_for_a_local_config() -> None:
    from mclip_explorer.models.mclip import base_family

    with pytest.raises(BadWeightsError, match=r"config\.json in <weights folder>/gpt2/"):
        base_family("gpt2")


def test_local_model_base_config_that_does_not_fit_is_refused(
    tmp_path: Path, weights_dir: Path
) -> None:
    name = "LABSE-Vit-L-14"
    _copy_repo(weights_dir, tmp_path, name)
    wrong = base_config("sentence-transformers/LaBSE", len(wordpiece_vocab()), 768)
    wrong.intermediate_size = 64  # the checkpoint's FFN is 37 wide
    wrong.save_pretrained(tmp_path / "sentence-transformers/LaBSE")
    with pytest.raises(BadWeightsError, match="do not fit a bert of hidden size 768"):
        load_model(name, weights_dir=tmp_path)
