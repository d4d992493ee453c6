"""Text handling shared by every text tower of the ST, AltCLIP and open_clip families.

Truncation warns and never crashes, empty input has a defined result, length-sorted batching
restores the input order, every script works, and bad types are named by index.
"""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import load_model
from mclip_explorer.errors import TruncationWarning
from tests.twins.st import SCRIPT_SAMPLES, ST_IMAGE_REPO

# name -> token limit of its text tower
MODELS = {
    "clip-ViT-B-32-multilingual-v1": 128,
    "AltCLIP-m9": 77,
    "open_clip:xlm-roberta-base-ViT-B-32/laion5b_s13b_b90k": 77,
    "open_clip:ViT-B-32/openai": 77,  # CLIP's own BPE tokenizer
    ST_IMAGE_REPO: 77,  # a sentence-transformers CLIP folder: CLIP's own text tower
}


@pytest.fixture(scope="module", params=sorted(MODELS))
def encoder(request: pytest.FixtureRequest, weights_dir: Path):
    name = request.param
    if name == ST_IMAGE_REPO:
        return load_model(str(weights_dir / name), device="cpu")
    return load_model(name, weights_dir=weights_dir, device="cpu")


def _limit(encoder) -> int:
    key = next(k for k in MODELS if encoder.name == k or encoder.name.endswith(k))
    return MODELS[key]


def test_token_limit_matches_the_tower(encoder) -> None:
    assert encoder.text_max_tokens == _limit(encoder)


@pytest.mark.parametrize("script", ["latin", "cjk", "arabic", "emoji"])
def test_long_texts_warn_and_are_truncated(encoder, script: str) -> None:
    long = " ".join([SCRIPT_SAMPLES[script]] * 200)  # thousands of tokens, far past any limit
    with pytest.warns(TruncationWarning, match=f"limit of {_limit(encoder)} tokens"):
        out = encoder.encode_text([long, "short"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # What the tower sees is the first ``limit`` tokens: more text beyond changes nothing.
    with pytest.warns(TruncationWarning):
        longer = encoder.encode_text([long + " " + SCRIPT_SAMPLES["latin"] * 50])
    np.testing.assert_allclose(longer[0], out[0], atol=1e-5)


def test_texts_within_the_limit_do_not_warn(encoder) -> None:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error", TruncationWarning)
        encoder.encode_text(list(SCRIPT_SAMPLES.values()))


def test_empty_and_whitespace_give_the_empty_text(encoder) -> None:
    out = encoder.encode_text(["", " ", "\t\n  ", "\u3000"])
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    for row in out[1:]:
        np.testing.assert_allclose(row, out[0], atol=1e-6)


def test_batching_restores_input_order(encoder) -> None:
    texts = [*SCRIPT_SAMPLES.values(), "a", "a cat on a mat", "", "dog " * 10, "猫"]
    random.Random(7).shuffle(texts)
    one_by_one = encoder.encode_text(texts, batch_size=1)
    batched = encoder.encode_text(texts, batch_size=7)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-5)
    single = encoder.encode_text(texts[3])
    np.testing.assert_allclose(single[0], one_by_one[3], atol=1e-5)


def test_every_script_gets_its_own_embedding(encoder) -> None:
    out = encoder.encode_text(list(SCRIPT_SAMPLES.values()))
    assert out.shape == (len(SCRIPT_SAMPLES), encoder.dim)
    assert np.isfinite(out).all()
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    # No script collapsed to the unknown token: every sentence lands somewhere else (tiny random
    # towers put all texts close together, so compare coordinates rather than cosine).
    gaps = np.abs(out[:, None, :] - out[None, :, :]).max(axis=2)
    np.fill_diagonal(gaps, np.inf)
    assert gaps.min() > 1e-4


@pytest.mark.parametrize("bad", [None, 3, b"bytes", ["list"]])
def test_bad_text_types_name_the_index(encoder, bad: object) -> None:
    with pytest.raises(TypeError, match=rf"texts\[2\] is {type(bad).__name__}"):
        encoder.encode_text(["fine", "also fine", bad])  # type: ignore[list-item]


# Strings a user can type, paste, pass on a command line or send from the widget (issue 9, 5).
ODD_TEXTS = {
    "lone high surrogate": "\ud800",
    "lone low surrogate (an undecodable argv byte)": "red \udcff car",
    "reversed surrogate pair": "\udc00\ud800",
    "NUL": "\x00",
    "NULs inside": "red\x00\x00car",
    "byte-order mark": "\ufeff",
    "zero-width space": "\u200b",
    "right-to-left override": "\u202eabc",
    "combining marks": "e" + "\u0301" * 300,
    "noncharacters": "\ufffe\uffff\U0010ffff",
    "private use": "\ue000\U000f0000",
    "escape codes": "\x1b[31mred\x1b[0m",
    "control characters": "\r\n\t\x07\x08\x7f",
    "emoji ZWJ sequence": "\U0001f3f3\ufe0f\u200d\U0001f308",
    "mathematical letters": "\U0001d573\U0001d58a\U0001d591\U0001d591\U0001d594",
    "ideographic space": "\u3000",
}


def test_odd_strings_give_a_result_or_a_named_error(encoder) -> None:
    from mclip_explorer.errors import BadTextError

    for what, text in ODD_TEXTS.items():
        try:
            out = encoder.encode_text([text, "a cat"])
        except BadTextError as exc:
            assert "surrogate" in what, f"{what}: refused ({exc})"
            assert "texts[0]" in str(exc) and "surrogate U+D" in str(exc), str(exc)
            continue
        assert "surrogate" not in what, f"{what}: encoded a string that is not valid Unicode"
        assert out.shape == (2, encoder.dim) and np.isfinite(out).all(), what
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-4, err_msg=what)
