"""The array-level cores of the analysis views, on synthetic vectors with known answers."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from mclip_explorer import analysis
from mclip_explorer.analysis._common import as_unit, top_k

DIM = 16


def unit(rows: np.ndarray) -> np.ndarray:
    return rows / np.linalg.norm(rows, axis=1, keepdims=True)


def clustered(n_clusters: int = 5, per: int = 12, spread: float = 0.15, seed: int = 0):
    rng = np.random.default_rng(seed)
    centres = unit(rng.standard_normal((n_clusters, DIM)))
    labels = np.repeat(np.arange(n_clusters), per)
    vectors = unit(centres[labels] + spread * rng.standard_normal((len(labels), DIM)))
    return centres, labels, vectors.astype(np.float32)


# ------------------------------------------------------------------------------- helpers
def test_top_k_matches_a_full_sort_and_can_leave_out_self():
    _, _, vectors = clustered()
    rng = np.random.default_rng(1)
    queries = unit(rng.standard_normal((7, DIM))).astype(np.float32)
    positions, scores = top_k(queries, vectors, 5)
    full = queries @ vectors.T
    assert np.array_equal(positions, np.argsort(-full, axis=1)[:, :5])
    assert np.allclose(scores, np.sort(full, axis=1)[:, ::-1][:, :5])
    own, _ = top_k(vectors, vectors, 3, exclude=np.arange(len(vectors)))
    assert not (own == np.arange(len(vectors))[:, None]).any()


def test_bad_vectors_are_named():
    with pytest.raises(ValueError, match=r"non-finite rows .*\[1\]"):
        as_unit(np.array([[1.0, 0.0], [np.nan, 1.0]]))
    with pytest.raises(ValueError, match="2-D array"):
        as_unit(np.ones(3))
    with pytest.raises(ValueError, match="repeated ids"):
        analysis.outliers_from_vectors([1, 1, 2], np.eye(3))
    with pytest.raises(ValueError, match="k must be a positive integer"):
        analysis.outliers_from_vectors([0, 1, 2], np.eye(3), k=0)


# ------------------------------------------------------------------------------ the gap
def test_gap_from_vectors_recovers_a_planted_shift():
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((40, DIM)))
    shift = np.zeros(DIM)
    shift[0] = 2.0
    images = unit(base[:20] + shift)
    texts = unit(base[20:] - shift)
    gap = analysis.gap_from_vectors(np.arange(20), images, np.arange(20, 40), texts)
    assert gap.gap[0] / gap.gap_norm > 0.95
    assert np.allclose(gap.gap, images.mean(0) - texts.mean(0), atol=1e-6)
    cos = gap.cosines.set_index("pair")
    brute = images @ texts.T
    assert cos.loc["image-text", "mean"] == pytest.approx(brute.mean(), abs=1e-5)
    within = images @ images.T
    assert cos.loc["image-image", "mean"] == pytest.approx(
        within[~np.eye(20, dtype=bool)].mean(), abs=1e-5)
    assert cos.loc["image-image", "pairs"] == 190 and cos.loc["image-text", "pairs"] == 400
    # Unrelated images and texts: cosine about 0 once the gap is gone, strongly negative before.
    assert cos.loc["image-text", "mean"] < -0.5
    assert abs(cos.loc["image-text", "mean_corrected"]) < 0.1
    assert np.allclose(np.linalg.norm(gap.corrected, axis=1), 1.0, atol=1e-5)
    xy = gap.coords(corrected=False)
    assert xy.shape == (40, 2) and np.isfinite(xy).all()


def test_gap_from_vectors_rejects_bad_input():
    with pytest.raises(ValueError, match="both the image and the text ids"):
        analysis.gap_from_vectors([0, 1], np.eye(2, 4), [1, 2], np.eye(2, 4))
    with pytest.raises(ValueError, match="differ in dim"):
        analysis.gap_from_vectors([0], np.eye(1, 4), [1], np.eye(1, 3))
    with pytest.raises(ValueError, match="at least one image and one text"):
        analysis.gap_from_vectors([], np.zeros((0, 4)), [1], np.eye(1, 4))


# --------------------------------------------------------------------------------- lanes
def test_lanes_rank_correlation_singles_out_a_random_lane():
    _, _, vectors = clustered()
    rng = np.random.default_rng(3)
    reference = unit(rng.standard_normal((1, DIM)))[0]
    good = [unit((reference + 0.05 * rng.standard_normal(DIM))[None])[0] for _ in range(3)]
    broken = unit(rng.standard_normal((1, DIM)))[0]
    queries = np.stack([reference, *good, broken])
    langs = ["en", "de", "fr", "it", "el"]
    lanes = analysis.lanes_from_vectors(queries, langs, np.arange(60) * 10, vectors, k=5)
    assert lanes.reference == "en"
    assert (lanes.rank_corr[["de", "fr", "it"]] > 0.9).all()
    assert lanes.rank_corr["el"] < 0.5
    assert np.allclose(lanes.overlap.to_numpy(), lanes.overlap.to_numpy().T)
    assert np.allclose(np.diag(lanes.overlap), 1.0)
    assert set(lanes.top_ids()) == set(langs)
    assert all(i % 10 == 0 for ids in lanes.top_ids().values() for i in ids)
    other = analysis.lanes_from_vectors(queries, langs, np.arange(60), vectors, reference="el")
    assert other.rank_corr["el"] == pytest.approx(1.0)


def test_lanes_reject_bad_queries():
    with pytest.raises(ValueError, match="reference language 'ja'"):
        analysis.lanes_from_vectors(np.eye(2, DIM), ["en", "de"], [0, 1], np.eye(2, DIM),
                                    reference="ja")
    with pytest.raises(ValueError, match="one unique language per query"):
        analysis.lanes_from_vectors(np.eye(2, DIM), ["en", "en"], [0, 1], np.eye(2, DIM))
    with pytest.raises(ValueError, match="non-empty mapping"):
        analysis.language_lanes(None, {})
    with pytest.raises(ValueError, match="query for language 'de'"):
        analysis.language_lanes(None, {"en": "red", "de": "  "})


# ------------------------------------------------------------------------------ zero-shot
def test_classify_picks_the_nearest_class_with_a_softmax():
    centres, labels, vectors = clustered(n_clusters=3)
    names = ["a", "b", "c"]
    result = analysis.classify(np.arange(len(vectors)), vectors, centres, names)
    assert (result["label"].astype(str).to_numpy() == np.array(names)[labels]).all()
    assert ((result["confidence"] > 1 / 3) & (result["confidence"] <= 1)).all()
    assert (result["margin"] > 0).all()
    cold = analysis.classify(np.arange(len(vectors)), vectors, centres, names, temperature=10.0)
    assert (cold["confidence"] < result["confidence"]).all()
    with pytest.raises(ValueError, match="temperature must be positive"):
        analysis.classify([0], vectors[:1], centres, names, temperature=0)


# ----------------------------------------------------------------------------- duplicates
def test_duplicates_follow_chains_and_apply_the_keeper_rule():
    rng = np.random.default_rng(0)
    base = unit(rng.standard_normal((6, DIM)))
    step = unit(rng.standard_normal((1, DIM)))[0]
    # 0 -> 6 -> 7 is a chain: neighbours are above the threshold, its ends may not be.
    chain = [unit((base[0] + 0.25 * i * step)[None])[0] for i in (1, 2)]
    vectors = np.vstack([base, chain, base[3][None]])
    ids = np.arange(9) + 100
    meta = pd.DataFrame({
        "width": [64, 0, 0, 100, 0, 0, 128, 64, 100],
        "height": [64, 0, 0, 100, 0, 0, 128, 64, 100],
        "path": ["a.png", "", "", "d/long/name.png", "", "", "b.jpg", "c.png", "d.jpg"],
    }, index=ids)
    found = analysis.duplicates_from_vectors(ids, vectors, 0.95, metadata=meta)
    groups = found.groupby("group")["id"].apply(set).tolist()
    assert groups == [{100, 106, 107}, {103, 108}]
    keepers = set(found.loc[found["keeper"], "id"])
    # Group 1: the 128-px JPEG outranks the smaller PNGs (area first). Group 2: same area,
    # so the lossless PNG wins although its path is longer.
    assert keepers == {106, 103}
    tie = meta.assign(width=64, height=64, path=["x.png"] * 9)
    same = analysis.duplicates_from_vectors(ids, vectors, 0.95, metadata=tie)
    assert set(same.loc[same["keeper"], "id"]) == {100, 103}  # lowest id breaks the tie
    none = analysis.duplicates_from_vectors(ids[:6], base, 0.95)
    assert none.empty and {"group", "id", "keeper"} <= set(none.columns)
    with pytest.raises(ValueError, match="threshold must be a cosine"):
        analysis.duplicates_from_vectors(ids, vectors, 1.5)


# ------------------------------------------------------------------------------- outliers
def test_outliers_flag_only_far_points():
    _, _, vectors = clustered(n_clusters=3, per=20, spread=0.1)
    rng = np.random.default_rng(5)
    far = unit(rng.standard_normal((2, DIM))).astype(np.float32)
    all_vectors = np.vstack([vectors, far])
    ids = np.arange(len(all_vectors))
    result = analysis.outliers_from_vectors(ids, all_vectors, k=5)
    assert set(result.loc[result["outlier"], "id"]) == {60, 61}
    assert list(result["id"][:2].sort_values()) == [60, 61]
    with pytest.raises(ValueError, match="at least 3 items"):
        analysis.outliers_from_vectors([0, 1], np.eye(2))


# -------------------------------------------------------------------------------- hubness
def test_hubness_counts_and_skew():
    from scipy.stats import skew

    rng = np.random.default_rng(2)
    centres = np.eye(4, DIM)  # orthogonal clusters of 10
    vectors = unit(np.repeat(centres, 10, axis=0) + 0.1 * rng.standard_normal((40, DIM)))
    hub = unit(centres.sum(axis=0, keepdims=True))  # cosine 0.5 with every cluster at once
    base = np.vstack([vectors, hub]).astype(np.float32)
    queries = unit(np.repeat(centres, 6, axis=0) + 0.1 * rng.standard_normal((24, DIM)))
    langs = ["en"] * 12 + ["de"] * 12
    result = analysis.hubness_from_vectors(queries, langs, np.arange(41), base, k=11)
    assert result.occurrence["all"].sum() == 11 * 24
    assert result.occurrence[["en", "de"]].sum(axis=1).equals(result.occurrence["all"])
    assert result.summary.loc["all", "skew"] == pytest.approx(skew(result.occurrence["all"]))
    assert set(result.hubs.loc[result.hubs["lang"] == "all", "id"]) == {40}
    assert result.top_ids.shape == (24, 11)
    assert len(result.queries_of(40)) == result.occurrence.loc[40, "all"]
    with pytest.raises(ValueError, match="alpha must be a probability"):
        analysis.hubness_from_vectors(queries, langs, np.arange(41), base, alpha=1.5)
    with pytest.raises(ValueError, match="one language per query"):
        analysis.hubness_from_vectors(queries, langs[:3], np.arange(41), base)


# ------------------------------------------------------------------------- retrieval audit
def test_audit_ranks_are_exact_and_recall_follows():
    _, _, images = clustered(n_clusters=6, per=5, spread=0.3)
    rng = np.random.default_rng(4)
    n = len(images)
    good = unit(images + 0.05 * rng.standard_normal(images.shape))
    shuffled = good[rng.permutation(n)]
    captions = pd.DataFrame({
        "item_id": np.tile(np.arange(n) + 7, 2),
        "lang": ["en"] * n + ["xx"] * n,
        "text": [f"caption {i}" for i in range(2 * n)],
    })
    audit = analysis.audit_from_vectors(captions, np.vstack([good, shuffled]), np.arange(n) + 7,
                                        images)
    recall = audit.recall.set_index(["lang", "direction"])
    assert recall.loc[("en", "text_to_image"), "recall@1"] == 1.0
    assert recall.loc[("en", "image_to_text"), "recall@1"] == 1.0
    assert recall.loc[("xx", "text_to_image"), "recall@1"] < 0.3
    ranks = audit.ranks[(audit.ranks["direction"] == "text_to_image")].reset_index(drop=True)
    scores = np.vstack([good, shuffled]) @ images.T
    expected = (scores > scores[np.arange(2 * n), np.tile(np.arange(n), 2)][:, None]).sum(1) + 1
    assert np.array_equal(ranks["rank"].to_numpy(), expected)
    assert np.array_equal(ranks["top_id"].to_numpy(), scores.argmax(axis=1) + 7)
    assert set(audit.failures["lang"]) == {"xx"}
    assert recall["mrr"].between(0, 1).all()


def test_audit_rejects_bad_captions():
    vectors = np.eye(2, DIM)
    with pytest.raises(ValueError, match="empty or non-string text"):
        analysis.audit_from_vectors(pd.DataFrame({"item_id": [0], "lang": ["en"], "text": [""]}),
                                    vectors[:1], [0], vectors)
    with pytest.raises(ValueError, match="without an image vector: \\[5\\]"):
        analysis.audit_from_vectors(pd.DataFrame({"item_id": [5], "lang": ["en"], "text": ["a"]}),
                                    vectors[:1], [0, 1], vectors)
    with pytest.raises(TypeError, match="pandas DataFrame"):
        analysis.audit_from_vectors([("a", "b")], vectors, [0, 1], vectors)


@pytest.mark.slow
def test_gap_coords_with_umap_runs_in_a_fresh_process():
    import os
    import subprocess
    import sys

    script = (
        "import numpy as np; from mclip_explorer import analysis\n"
        "rng = np.random.default_rng(0)\n"
        "images = rng.standard_normal((40, 16)) + 3 * np.eye(1, 16)\n"
        "texts = rng.standard_normal((30, 16)) - 3 * np.eye(1, 16)\n"
        "gap = analysis.gap_from_vectors(np.arange(40), images, np.arange(40, 70), texts)\n"
        "xy = gap.coords(corrected=True, method='umap')\n"
        "assert xy.shape == (70, 2) and np.isfinite(xy).all(), xy\n"
        "print('ok')\n"
    )
    # Without the JIT a tiny fit takes seconds instead of numba's tens of seconds of compiling.
    env = {**os.environ, "NUMBA_DISABLE_JIT": "1"}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "ok"


def test_importing_the_views_stays_light():
    import subprocess
    import sys

    probe = ("import sys, mclip_explorer.analysis\n"
             "print(sorted(m for m in ('torch', 'transformers', 'umap', 'scipy') "
             "if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                          check=True)
    assert done.stdout.strip() == "[]"
