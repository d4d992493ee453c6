"""The Encoder base-class contract, exercised through the torch-free toy model."""

from __future__ import annotations

import io
import warnings

import numpy as np
import pytest
from PIL import Image

from mclip_explorer.errors import BadImageError, BadImageWarning
from mclip_explorer.models import load_model, normalize
from mclip_explorer.models.toy import ToyEncoder


def _png(colour: tuple[int, int, int]) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", (48, 48), colour).save(buffer, format="PNG")
    return buffer.getvalue()


def test_text_rows_are_unit_and_order_is_restored(toy_encoder: ToyEncoder) -> None:
    texts = ["a", "a much longer text about a red bicycle", "", "blue", "ein grünes Haus am See"]
    one_by_one = np.vstack([toy_encoder.encode_text([t]) for t in texts])
    batched = toy_encoder.encode_text(texts, batch_size=2)
    np.testing.assert_allclose(batched, one_by_one, atol=1e-6)
    np.testing.assert_allclose(np.linalg.norm(batched, axis=1), 1.0, atol=1e-5)


def test_empty_and_whitespace_texts_are_defined(toy_encoder: ToyEncoder) -> None:
    vectors = toy_encoder.encode_text(["", "   ", "\n\t"])
    assert np.isfinite(vectors).all()
    np.testing.assert_allclose(vectors[0], vectors[1])
    np.testing.assert_allclose(vectors[0], vectors[2])


def test_bad_text_types_name_the_index(toy_encoder: ToyEncoder) -> None:
    with pytest.raises(TypeError, match=r"texts\[1\] is int"):
        toy_encoder.encode_text(["ok", 3])  # type: ignore[list-item]
    with pytest.raises(ValueError, match="batch_size"):
        toy_encoder.encode_text(["ok"], batch_size=0)


def test_colour_words_match_colour_images_across_languages(toy_encoder: ToyEncoder) -> None:
    images = toy_encoder.encode_images([_png((220, 30, 30)), _png((30, 70, 210))])
    for word in ["red", "rot", "красный", "赤い", "أحمر", "빨간 차"]:
        scores = toy_encoder.encode_text([word]) @ images.T
        assert scores[0, 0] > scores[0, 1], word


def test_bad_images_leave_nan_rows_and_one_warning(toy_encoder: ToyEncoder) -> None:
    items = [_png((0, 200, 0)), b"", b"not an image", Image.new("L", (8, 8), 128)]
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        vectors = toy_encoder.encode_images(items, batch_size=2)
    assert np.isfinite(vectors[[0, 3]]).all()
    assert np.isnan(vectors[[1, 2]]).all()
    (warning,) = [w.message for w in caught if isinstance(w.message, BadImageWarning)]
    assert set(warning.failures) == {1, 2}
    assert "empty" in warning.failures[1]
    assert "not an image" in warning.failures[2]


def test_errors_raise_stops_at_the_first_bad_item(toy_encoder: ToyEncoder) -> None:
    with pytest.raises(BadImageError, match="not an image"):
        toy_encoder.encode_images([_png((1, 2, 3)), b"junk"], errors="raise")


def test_fingerprint_is_stable_and_tracks_parameters() -> None:
    assert ToyEncoder().fingerprint == load_model("toy").fingerprint
    assert ToyEncoder(seed=1).fingerprint != ToyEncoder().fingerprint


def test_normalize_keeps_zero_rows_finite() -> None:
    out = normalize(np.array([[3.0, 4.0], [0.0, 0.0]]))
    np.testing.assert_allclose(out, [[0.6, 0.8], [0.0, 0.0]])
