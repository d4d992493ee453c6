"""Embedding Atlas' own command line opens our export (it runs in a side virtualenv).

embedding-atlas 0.26.0 pulls torch and sentence-transformers, too heavy for the project's venv;
``scripts/embedding_atlas_venv.sh`` makes a side venv with what its CLI needs offline, and
``$MCLIP_EMBEDDING_ATLAS`` names its ``embedding-atlas`` executable. The CLI reads our parquet,
computes PageRank over our neighbour graph (so the ``neighbors`` column must be row indices in
its struct layout) and writes its static application with the data.
"""

from __future__ import annotations

import json
import os
import subprocess

import numpy as np
import pandas as pd
import pytest

from mclip_explorer import Collection

CLI = os.environ.get("MCLIP_EMBEDDING_ATLAS")

pytestmark = pytest.mark.skipif(
    not CLI, reason="needs $MCLIP_EMBEDDING_ATLAS: the embedding-atlas executable of a side "
                    "venv (scripts/embedding_atlas_venv.sh)")


@pytest.mark.slow
def test_embedding_atlas_cli_reads_the_export(tmp_path):
    rng = np.random.default_rng(2)
    vectors = rng.normal(size=(80, 32)).astype(np.float32)
    frame = pd.DataFrame({"embedding": list(vectors), "caption": [f"c{i}" for i in range(80)]})
    coll = Collection.from_embeddings(frame, model="toy", out=tmp_path / "c", map_method="pca",
                                      progress=False)
    coll.add_texts(["red", "rouge"])
    path = coll.export("embedding-atlas", tmp_path / "atlas.parquet", neighbors=8)
    done = subprocess.run(
        [str(CLI), str(path), "--x", "projection_x", "--y", "projection_y", "--neighbors",
         "neighbors", "--text", "text", "--pagerank", "--disable-projection",
         "--export-application", str(tmp_path / "app")],
        capture_output=True, text=True, timeout=400, check=False, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    data = pd.read_parquet(tmp_path / "app" / "data" / "dataset.parquet")
    assert data["id"].tolist() == pd.read_parquet(path)["id"].tolist()
    assert len(data) == 82
    ranks = data["pagerank"].to_numpy()
    assert np.isfinite(ranks).all() and (ranks > 0).all()
    props = json.loads((tmp_path / "app" / "data" / "metadata.json").read_text())["props"]
    assert props["data"]["projection"] == {"x": "projection_x", "y": "projection_y"}
    assert props["data"]["neighbors"] == "neighbors"
    assert (tmp_path / "app" / "index.html").is_file()
