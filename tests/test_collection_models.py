"""A collection built with a real (tiny, random-weight) torch model, through worker processes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from mclip_explorer.collection import Collection
from mclip_explorer.errors import ModelMismatchError
from mclip_explorer.models.weights import WEIGHTS_ENV
from tests.test_collection import make_images

pytest.importorskip("torch")
MODEL = "clip-ViT-B-32-multilingual-v1"


def test_torch_model_build_open_and_search(weights_dir: Path, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    from mclip_explorer.models import load_model

    monkeypatch.setenv(WEIGHTS_ENV, str(weights_dir))
    make_images(tmp_path / "images", colours=("red", "green", "blue"), per_colour=2)
    encoder = load_model(MODEL, device="cpu")
    coll = Collection.build(tmp_path / "images", model=encoder, out=tmp_path / "c",
                            num_workers=1, batch_size=4, progress=False)
    assert coll.manifest["model"] == {"name": MODEL, "fingerprint": encoder.fingerprint,
                                      "preprocess_version": 1}
    assert coll.items["error"].notna().sum() == 1  # the broken file, reported by the worker
    ids, vectors = coll.vectors()
    np.testing.assert_allclose(vectors, encoder.encode_images(coll.items.loc[ids, "path"].tolist(),
                                                              num_workers=0), atol=2e-3)
    reopened = Collection.open(tmp_path / "c")  # lazy: loads MODEL from $MCLIP_EXPLORER_WEIGHTS
    hits = reopened.search(["ein rotes Quadrat", "un carré bleu"], k=3)
    assert len(hits) == 6 and hits["score"].between(-1, 1).all()
    assert reopened.encoder.fingerprint == encoder.fingerprint
    with pytest.raises(ModelMismatchError, match=MODEL):
        Collection.open(tmp_path / "c", model="toy")
