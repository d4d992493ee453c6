"""Each analysis view, run on a collection with planted structure, finds exactly what was planted.

See ``tests/planted.py`` for the images and the encoders (the toy model, blind in Greek).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mclip_explorer import analysis
from mclip_explorer.analysis import _common
from tests.planted import (
    AND,
    BROKEN_LANGUAGE,
    PALETTE,
    WORDS,
    BlindLanguageToy,
    GapToy,
    captions_for,
    planted_images,
    solid_images,
)

GOOD = tuple(lang for lang in WORDS if lang != BROKEN_LANGUAGE)


@pytest.fixture(scope="module")
def planted(tmp_path_factory: pytest.TempPathFactory):
    """The planted image set as a collection, with parallel captions added as text items."""
    from mclip_explorer import Collection

    root = tmp_path_factory.mktemp("planted")
    meta = planted_images(root / "images")
    coll = Collection.build(meta, model=BlindLanguageToy(), out=root / "coll", progress=False)
    captions = captions_for(coll.items)
    coll.add_texts(captions["text"].tolist(), lang=captions["lang"].tolist())
    return coll, captions


def ids_where(coll, **conditions) -> set[int]:
    items = coll.items
    mask = (items["kind"] == "image").to_numpy().copy()
    for column, value in conditions.items():
        mask &= (items[column] == value).to_numpy()
    return set(items.loc[mask, "id"].tolist())


# ----------------------------------------------------------------------------- duplicates
def test_near_duplicates_finds_exactly_the_planted_groups(planted):
    coll, _ = planted
    found = analysis.near_duplicates(coll, threshold=0.95)
    items = coll.items.set_index("id")
    groups = {frozenset(g) for g in found.groupby("group")["id"].apply(set)}
    expected = {frozenset(group.index)
                for _, group in items[items["group"].notna()].groupby("group")}
    assert len(expected) == 3
    assert groups == expected
    # Keeper: the bigger picture (not its half-size copy), PNG over its JPEG re-encoding, and
    # the original over its same-size noisy PNG copy (the shorter path).
    keepers = set(found.loc[found["keeper"], "id"])
    assert keepers == set(items.index[items["path"] == items["group"]])
    assert found.groupby("group")["keeper"].sum().eq(1).all()
    assert (found["similarity"] >= 0.95).all()


def test_near_duplicates_through_the_index_match_exact(planted, monkeypatch):
    coll, _ = planted
    exact = analysis.near_duplicates(coll, threshold=0.95)
    monkeypatch.setattr(_common, "EXACT_LIMIT", 0)
    indexed = analysis.near_duplicates(coll, threshold=0.95)
    pd.testing.assert_frame_equal(exact[["group", "id", "keeper"]],
                                  indexed[["group", "id", "keeper"]])


# ------------------------------------------------------------------------------- outliers
def test_outliers_flags_exactly_the_planted_outliers(planted, monkeypatch):
    coll, _ = planted
    scores = analysis.outliers(coll, k=10)
    assert set(scores.loc[scores["outlier"], "id"]) == ids_where(coll, role="outlier")
    assert scores["score"].is_monotonic_decreasing
    monkeypatch.setattr(_common, "EXACT_LIMIT", 0)
    indexed = analysis.outliers(coll, k=10)
    assert set(indexed.loc[indexed["outlier"], "id"]) == ids_where(coll, role="outlier")


# -------------------------------------------------------------------------------- hubness
def test_hubness_finds_the_planted_hub_in_every_working_language(planted):
    coll, _ = planted
    # Each colour word alone and doubled (same colour, other trigram noise): 16 per language.
    queries = {lang: [*WORDS[lang].values(), *(f"{w} {w}" for w in WORDS[lang].values())]
               for lang in WORDS}
    # Every palette colour is in at most 8 images; the 9th slot is where a hub shows.
    result = analysis.hubness(coll, queries, k=9)
    hub = ids_where(coll, role="hub")
    for lang in ("all", *GOOD):
        assert set(result.hubs.loc[result.hubs["lang"] == lang, "id"]) == hub, lang
        assert result.summary.loc[lang, "skew"] > 1.0
    # Greek queries are noise: the hub is no hub for them.
    assert result.occurrence.loc[next(iter(hub)), BROKEN_LANGUAGE] < 2 * result.summary.loc[
        BROKEN_LANGUAGE, "mean"]
    assert result.summary.loc["all", "queries"] == 16 * len(WORDS)
    hub_id = next(iter(hub))
    hub_queries = result.queries_of(hub_id)
    assert len(hub_queries) == result.occurrence.loc[hub_id, "all"]
    assert set(hub_queries.loc[hub_queries["lang"] == "en", "text"]) <= set(queries["en"])
    assert (hub_queries["lang"] == "en").sum() == result.occurrence.loc[hub_id, "en"] >= 12


def test_hubness_defaults_to_the_collections_own_texts(planted):
    coll, captions = planted
    result = analysis.hubness(coll, k=5)
    assert result.summary.loc["all", "queries"] == len(captions)
    assert set(result.summary.index) == {"all", *WORDS}
    assert result.occurrence["all"].sum() == 5 * len(captions)


# ---------------------------------------------------------------------- retrieval audit
def test_retrieval_audit_singles_out_the_broken_language(planted):
    coll, captions = planted
    audit = analysis.retrieval_audit(coll, captions)
    recall = audit.recall.set_index(["lang", "direction"])
    weak = {lang for (lang, _), row in recall.iterrows() if row["recall@5"] < 0.5}
    assert weak == {BROKEN_LANGUAGE}
    for lang in GOOD:
        for direction in ("text_to_image", "image_to_text"):
            assert recall.loc[(lang, direction), "recall@10"] == 1.0
            assert recall.loc[(lang, direction), "recall@1"] >= 0.85
    failing = audit.failures
    assert (failing["lang"] == BROKEN_LANGUAGE).mean() > 0.9
    assert (failing["rank"] > audit.fail_at).all()
    assert recall["queries"].eq(28).all()


def test_retrieval_audit_confusion_view(planted):
    coll, captions = planted
    audit = analysis.retrieval_audit(coll, captions)
    items = coll.items.set_index("id")
    left = items["left"]
    good = audit.confusion(left, lang="en")
    broken = audit.confusion(left, lang=BROKEN_LANGUAGE)
    assert np.allclose(good.sum(axis=1), 1.0)
    assert np.diag(good.reindex(index=good.index, columns=good.index, fill_value=0)).mean() > 0.85
    diagonal = broken.reindex(index=broken.index, columns=broken.index, fill_value=0)
    assert np.diag(diagonal).mean() < 0.5
    with pytest.raises(ValueError, match="no text_to_image queries in language 'xx'"):
        audit.confusion(left, lang="xx")


def test_retrieval_audit_rejects_unknown_items(planted):
    coll, captions = planted
    bad = pd.concat([captions, pd.DataFrame([{"item_id": 9999, "lang": "en", "text": "x"}])])
    with pytest.raises(ValueError, match="9999"):
        analysis.retrieval_audit(coll, bad)
    with pytest.raises(ValueError, match="lacks column"):
        analysis.retrieval_audit(coll, captions.rename(columns={"text": "caption"}))


# --------------------------------------------------------------------------------- lanes
def test_language_lanes_agree_except_in_the_broken_language(planted):
    coll, _ = planted
    query = {lang: WORDS[lang]["red"] for lang in WORDS}
    reds = ids_where(coll, left="red") | ids_where(coll, right="red")
    lanes = analysis.language_lanes(coll, query, k=len(reds))
    tops = lanes.top_ids()
    for lang in GOOD:
        assert set(tops[lang]) == reds, lang
        assert lanes.overlap.loc["en", lang] == 1.0
    assert lanes.overlap.loc[BROKEN_LANGUAGE].drop(BROKEN_LANGUAGE).max() < 0.5
    assert lanes.reference == "en"
    placed = lanes.queries.set_index("lang")
    assert np.isfinite(placed[["x", "y", "stretch"]].to_numpy()).all()
    assert list(placed["text"]) == list(query.values())


# ------------------------------------------------------------------------------ zero-shot
@pytest.fixture(scope="module")
def solids(tmp_path_factory: pytest.TempPathFactory):
    from mclip_explorer import Collection

    root = tmp_path_factory.mktemp("solids")
    meta = solid_images(root / "images")
    return Collection.build(meta, model=BlindLanguageToy(), out=root / "coll", progress=False)


@pytest.mark.parametrize("lang", GOOD)
def test_zero_shot_in_each_working_language(solids, lang):
    labels = [WORDS[lang][c] for c in PALETTE]
    result = analysis.zero_shot(solids, labels)
    truth = solids.items.set_index("id").loc[result["id"], "colour"].map(WORDS[lang])
    assert (result["label"].astype(str).to_numpy() == truth.to_numpy()).all()
    assert (result["confidence"] > 0.5).all()
    assert list(result["label"].cat.categories) == labels


def test_zero_shot_with_labels_in_several_languages_and_templates(solids):
    labels = {c: [WORDS[lang][c] for lang in GOOD] for c in PALETTE}
    result = analysis.zero_shot(solids, labels, template=["{}", "a {} picture"])
    truth = solids.items.set_index("id").loc[result["id"], "colour"]
    assert (result["label"].astype(str).to_numpy() == truth.to_numpy()).all()
    assert (result["margin"] > 0).all()


def test_zero_shot_fails_in_the_broken_language(solids):
    result = analysis.zero_shot(solids, [WORDS[BROKEN_LANGUAGE][c] for c in PALETTE])
    truth = solids.items.set_index("id").loc[result["id"], "colour"].map(WORDS[BROKEN_LANGUAGE])
    assert (result["label"].astype(str).to_numpy() == truth.to_numpy()).mean() < 0.5


def test_zero_shot_rejects_bad_labels(solids):
    with pytest.raises(ValueError, match="at least two classes"):
        analysis.zero_shot(solids, ["rot"])
    with pytest.raises(ValueError, match="placeholder"):
        analysis.zero_shot(solids, ["rot", "blau"], template="ein Foto")
    with pytest.raises(TypeError, match="single string"):
        analysis.zero_shot(solids, "rot")


# ------------------------------------------------------------------------------ the gap
@pytest.fixture(scope="module")
def gap_collections(tmp_path_factory: pytest.TempPathFactory):
    """The same images and captions under three text towers pushed apart by a known offset."""
    from mclip_explorer import Collection

    root = tmp_path_factory.mktemp("gap")
    meta = solid_images(root / "images")
    texts = [f"{WORDS[lang][c]} {AND[lang]} {WORDS[lang][c]}" for lang in GOOD for c in PALETTE]
    out = {}
    for offset in (0.0, 1.0, 3.0):
        encoder = GapToy(offset)
        coll = Collection.build(meta, model=encoder, out=root / f"c{offset}", progress=False)
        coll.add_texts(texts, lang="xx")
        out[offset] = (coll, encoder)
    return out


def test_modality_gap_measures_the_planted_offset(gap_collections):
    gaps = {offset: analysis.modality_gap(coll) for offset, (coll, _) in gap_collections.items()}
    assert gaps[0.0].gap_norm < gaps[1.0].gap_norm < gaps[3.0].gap_norm
    for offset in (1.0, 3.0):
        gap, axis = gaps[offset], gap_collections[offset][1].axis
        extra = gap.gap - gaps[0.0].gap  # what the offset added to the toy's own gap
        assert extra @ -axis / np.linalg.norm(extra) > 0.9
        cos = gap.cosines.set_index("pair")
        assert cos.loc["image-text", "mean_corrected"] > cos.loc["image-text", "mean"]
        corrected_image = gap.corrected[gap.kinds == "image"].mean(axis=0)
        corrected_text = gap.corrected[gap.kinds == "text"].mean(axis=0)
        assert np.linalg.norm(corrected_image - corrected_text) < 0.5 * gap.gap_norm


def test_gap_corrected_coords_close_the_gap_on_the_map(gap_collections):
    coll, _ = gap_collections[3.0]
    gap = analysis.modality_gap(coll)
    separation = {}
    for corrected in (False, True):
        xy = gap.coords(corrected=corrected)
        assert xy.shape == (len(coll.items), 2)
        image, text = xy[gap.ids[gap.kinds == "image"]], xy[gap.ids[gap.kinds == "text"]]
        spread = np.sqrt(np.concatenate([image - image.mean(0), text - text.mean(0)]).var())
        separation[corrected] = np.linalg.norm(image.mean(0) - text.mean(0)) / spread
    assert separation[False] > 2.0
    assert separation[True] < 0.5 * separation[False]
    samples = gap.cosine_samples(200)
    assert set(samples["pair"]) == {"image-image", "text-text", "image-text"}


def test_modality_gap_needs_texts(solids):
    with pytest.raises(ValueError, match="add_texts"):
        analysis.modality_gap(solids)


def test_removed_items_leave_every_view(tmp_path):
    from mclip_explorer import Collection

    meta = solid_images(tmp_path / "images")
    coll = Collection.build(meta, model=BlindLanguageToy(), out=tmp_path / "coll", progress=False)
    coll.add_texts([WORDS["en"][c] for c in PALETTE], lang="en")
    gone = [0, 5]
    coll.remove(gone)
    assert not set(gone) & set(analysis.zero_shot(coll, list(WORDS["en"].values()))["id"])
    assert not set(gone) & set(analysis.outliers(coll)["id"])
    assert not set(gone) & set(analysis.near_duplicates(coll)["id"])
    assert not set(gone) & set(analysis.hubness(coll, k=3).occurrence.index)
    gap = analysis.modality_gap(coll)
    assert not set(gone) & set(gap.ids.tolist())
    assert np.isnan(gap.coords()[gone]).all()
