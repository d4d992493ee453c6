"""clip-retrieval's own code as the other side of the clip-retrieval format.

clip-retrieval 2.45.0 pins numpy<2, so it runs in a side virtualenv (make one with
``scripts/clip_retrieval_venv.sh``) named by ``$MCLIP_CLIP_RETRIEVAL_PYTHON``; the tests drive it
through ``tests/clip_retrieval_side.py``. Its writer makes a folder we import; its index builder
(autofaiss) and metadata reader (embedding-reader) read a folder we export.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from mclip_explorer import Collection

SIDE = os.environ.get("MCLIP_CLIP_RETRIEVAL_PYTHON")
SCRIPT = Path(__file__).with_name("clip_retrieval_side.py")
N, DIM, PARTS = 90, 32, 12

pytestmark = pytest.mark.skipif(
    not SIDE, reason="needs $MCLIP_CLIP_RETRIEVAL_PYTHON: the python of a side venv with "
                     "clip-retrieval 2.45.0 (scripts/clip_retrieval_venv.sh)")


def side(*args: object) -> str:
    done = subprocess.run([str(SIDE), str(SCRIPT), *map(str, args)], capture_output=True,
                          text=True, timeout=300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A folder written by clip-retrieval's OutputSink: 12 round-robin partitions, names 00-11."""
    root = tmp_path_factory.mktemp("crw")
    rng = np.random.default_rng(11)
    images = rng.normal(size=(N, DIM)).astype(np.float32)
    images /= np.linalg.norm(images, axis=1, keepdims=True)
    texts = rng.normal(size=(N, DIM)).astype(np.float32)
    texts /= np.linalg.norm(texts, axis=1, keepdims=True)
    keys = [f"{i:09d}" for i in range(N)]
    captions = [f"<b>caption</b> {i}" for i in range(N)]
    np.save(root / "i.npy", images)
    np.save(root / "t.npy", texts)
    (root / "k.json").write_text(json.dumps({"keys": keys, "captions": captions}))
    side("write", root / "emb", root / "i.npy", root / "t.npy", root / "k.json", PARTS)
    # The ids clip-retrieval gives: partitions in name order, each holding rows j % 12 == p.
    order = np.concatenate([np.arange(p, N, PARTS) for p in range(PARTS)])
    return {"root": root, "folder": root / "emb", "order": order, "keys": keys,
            "captions": captions, "images": images, "texts": texts}


def test_folder_written_by_clip_retrieval_imports_in_its_id_order(written, tmp_path,
                                                                  toy_encoder):
    assert sorted(p.name for p in (written["folder"] / "img_emb").iterdir())[:2] == [
        "img_emb_00.npy", "img_emb_01.npy"]
    coll = Collection.from_embeddings(written["folder"], model="toy", out=tmp_path / "c",
                                      map_method="pca", progress=False)
    order = written["order"]
    images = coll.items[coll.items["kind"] == "image"]
    assert images["image_path"].tolist() == [written["keys"][j] for j in order]
    assert images["text"].tolist() == [written["captions"][j] for j in order]
    base = written["images"][order].astype(np.float16).astype(np.float32)
    base /= np.linalg.norm(base, axis=1, keepdims=True)
    for text in ("red", "blau"):
        query = toy_encoder.encode_text([text])[0]
        expected = np.argsort(-(base @ query), kind="stable")[:10]
        assert coll.search(text, k=10)["id"].tolist() == expected.tolist()
    assert (coll.items["kind"] == "text").sum() == N


def test_exported_folder_is_indexed_and_read_by_clip_retrieval(written, tmp_path, toy_encoder):
    coll = Collection.from_embeddings(written["folder"], model="toy", out=tmp_path / "c",
                                      map_method="pca", progress=False)
    out = coll.export("clip-retrieval", tmp_path / "export", rows_per_file=40)
    queries = np.stack([toy_encoder.encode_text([t])[0] for t in ("red", "green", "azul")])
    np.save(tmp_path / "q.npy", queries)
    result = json.loads(side("index", out, tmp_path / "index", tmp_path / "q.npy", 5))
    assert result["count"] == N and result["dim"] == DIM and result["dtype"] == "float16"
    ours = [coll.search(q, k=5)["id"].tolist() for q in queries]
    assert result["ids"]["image"] == ours
    # text.index rows are image ids too: caption i belongs to image i
    text_ids = coll.items.loc[coll.items["kind"] == "text", "image_id"].astype(int).to_numpy()
    assert result["ids"]["text"] == [text_ids[np.asarray(coll.search(q, k=5, kind="text")["id"])
                                              - N].tolist() for q in queries]
    images = coll.items[coll.items["kind"] == "image"]
    assert result["image_path"] == images["image_path"].tolist()
    assert result["caption"] == images["text"].tolist()


if __name__ == "__main__":  # pragma: no cover - convenience
    sys.exit(pytest.main([__file__, "-q"]))
