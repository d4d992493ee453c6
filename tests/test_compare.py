"""compare_models and the side-by-side query view, on planted images and two toy models.

The second model is the toy model with a text tower blind to Greek (tests/planted.py): the
comparison must show it losing in Greek only, and both models agreeing everywhere else.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

from mclip_explorer.analysis import compare_models
from mclip_explorer.models.toy import ToyEncoder
from mclip_explorer.widget import compare_view
from tests.planted import AND, WORDS, BlindLanguageToy, planted_images

LANGS = ("en", "de", "el")
K = 5


def blind() -> BlindLanguageToy:
    model = BlindLanguageToy()
    model.name = "toy-blind-el"
    return model


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, pd.DataFrame, pd.DataFrame]:
    root = tmp_path_factory.mktemp("compare")
    images = planted_images(root / "images")
    pairs = images[images["role"] == "pair"]
    captions = pd.DataFrame([
        {"path": row.path, "lang": lang,
         "text": f"{WORDS[lang][row.left]} {AND[lang]} {WORDS[lang][row.right]}"}
        for row in pairs.itertuples() for lang in LANGS])
    return root, images, captions


@pytest.fixture(scope="module")
def result(planted: tuple[Path, pd.DataFrame, pd.DataFrame]) -> Any:
    root, images, captions = planted
    return compare_models(images, [ToyEncoder(), blind()], out=root / "models",
                          captions=captions, k=K, map_method="pca")


def _expected_recall(model: ToyEncoder, images: pd.DataFrame, captions: pd.DataFrame,
                     lang: str, cut: int) -> float:
    """Text->image recall@cut computed here, straight from the encoder's outputs."""
    image_vectors = model.encode_images(images["path"].tolist(), num_workers=0)
    rows = captions[captions["lang"] == lang]
    text_vectors = model.encode_text(rows["text"].tolist())
    sims = text_vectors @ image_vectors.T
    target = images["path"].reset_index(drop=True).tolist()
    right = np.array([target.index(p) for p in rows["path"]])
    rank = (sims > sims[np.arange(len(rows)), right][:, None]).sum(axis=1) + 1
    return float((rank <= cut).mean())


def test_recall_per_language_matches_a_direct_computation(result: Any, planted: Any) -> None:
    _, images, captions = planted
    for model, name in ((ToyEncoder(), "toy"), (blind(), "toy-blind-el")):
        for lang in LANGS:
            expected = _expected_recall(model, images, captions, lang, 10)
            assert result.by_language.loc[lang, name] == pytest.approx(expected), (name, lang)


def test_the_blind_model_loses_in_greek_only(result: Any) -> None:
    table = result.by_language
    assert list(table.columns) == ["toy", "toy-blind-el"]
    assert table.loc["el", "toy-blind-el"] < table.loc["el", "toy"] - 0.3
    for lang in ("en", "de"):
        assert table.loc[lang, "toy-blind-el"] == table.loc[lang, "toy"]
    summary = result.summary
    assert list(summary.index) == ["toy", "toy-blind-el"]
    assert (summary["captions"] == 28 * len(LANGS)).all() and (summary["images"] > 28).all()
    assert set(summary["score"]) == {"cosine"}


def test_agreement_is_full_where_the_models_are_the_same(result: Any) -> None:
    overlap = result.agreement.set_index("lang")[f"overlap@{K}"]
    assert overlap["en"] == overlap["de"] == 1.0
    assert overlap["el"] < 0.8
    assert overlap["all"] == pytest.approx(np.mean([overlap[lang] for lang in LANGS]))


def test_hubness_rows_per_model_and_language(result: Any) -> None:
    hubs = result.hubness
    assert set(zip(hubs["model"], hubs["lang"], strict=True)) == {
        (m, lang) for m in ("toy", "toy-blind-el") for lang in ("all", *LANGS)}
    assert (hubs["queries"][hubs["lang"] != "all"] == 28).all()


def test_a_second_run_reuses_every_collection(planted: Any, result: Any,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    root, images, captions = planted
    encoded: list[int] = []
    original = ToyEncoder.iter_image_batches

    def counting(self: ToyEncoder, items: Any, **kwargs: Any) -> Any:
        encoded.append(len(items))
        return original(self, items, **kwargs)

    monkeypatch.setattr(ToyEncoder, "iter_image_batches", counting)
    again = compare_models(images, [ToyEncoder(), blind()], out=root / "models",
                           captions=captions, k=K, map_method="pca")
    assert sum(encoded) == 0
    pd.testing.assert_frame_equal(again.by_language, result.by_language)


def test_captions_from_a_source_column(planted: Any, tmp_path: Path) -> None:
    _, images, _ = planted
    source = images.assign(caption=[f"{r} {r}" if isinstance(r, str) else None
                                     for r in images["left"]])
    result = compare_models(source, [ToyEncoder(), blind()], out=tmp_path, captions="caption",
                            caption_lang="en", map_method="pca")
    assert list(result.by_language.index) == ["en"]
    assert (result.summary["captions"] == images["left"].notna().sum()).all()
    with pytest.raises(ValueError, match="names no column"):
        compare_models(source, [ToyEncoder(), blind()], out=tmp_path, captions="nope")
    with pytest.raises(ValueError, match="at least two models"):
        compare_models(source, [ToyEncoder()], out=tmp_path)


def test_compare_view_runs_one_query_through_every_model(result: Any) -> None:
    view = compare_view(result, "rot", k=4)
    assert set(view.results) == {"toy", "toy-blind-el"}
    assert len(view.columns.children) == 2
    for name, column in zip(view.results, view.columns.children, strict=True):
        hits = view.results[name]
        assert column.children[0].value == name
        cards = column.children[1:]
        assert len(cards) == len(hits) == 4
        image, score, title = cards[0].children
        assert image.value[:4] == b"RIFF" and image.value[8:12] == b"WEBP"
        assert score.value == f"#1 {hits['score'].iloc[0]:.3f}"
        assert title.value == str(hits["title"].iloc[0])
    pd.testing.assert_frame_equal(view.results["toy"],
                                  result.collections["toy"].search("rot", k=4))
