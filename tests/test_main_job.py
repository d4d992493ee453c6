"""The README's main job, minus JupyterLab: build the bundled sample with a UMAP map, search it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import Collection
from mclip_explorer.cli import main
from mclip_explorer.data import sample_table


@pytest.mark.slow
def test_sample_builds_with_a_umap_map_and_answers_queries(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "sample"
    # The quickstart's exact command (scripts/quickstart.sh), with the offline toy model.
    assert main(["build", "--sample", "--map", "umap", "--model", "toy", "--out", str(out),
                 "--quiet"]) == 0
    coll = Collection.open(out)
    assert coll.manifest["projection"]["method"] == "umap"
    assert coll.manifest["projection"]["knn"] == "hnswlib"  # the index's graph, no second pass
    assert len(coll.items) == len(sample_table())
    good = ~coll.items["error"].notna().to_numpy()
    assert np.isfinite(coll.coords[good]).all()

    capsys.readouterr()
    assert main(["search", str(out), "красный", "-k", "3", "--json"]) == 0
    hits = json.loads(capsys.readouterr().out)
    expected = coll.search(coll.encoder.encode_text(["красный"])[0], k=3)
    assert [hit["id"] for hit in hits] == expected["id"].tolist()
