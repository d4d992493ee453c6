"""`import mclip_explorer` must stay light: no torch, transformers or umap until a model is used."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ["torch", "transformers", "umap", "numba", "sentence_transformers", "open_clip", "hnswlib",
         "ray"]


def _imported_after(code: str) -> list[str]:
    report = f"print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))"
    probe = f"{code}\nimport sys, json\n{report}"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_import_is_light() -> None:
    assert _imported_after("import mclip_explorer") == []


def test_public_names_resolve_without_torch() -> None:
    code = (
        "import mclip_explorer as m\n"
        "m.available_models(); m.load_model\n"
        "enc = m.load_model('toy'); enc.encode_text(['rot'])"
    )
    assert _imported_after(code) == []


def test_probe_detects_heavy_imports() -> None:
    # Guards the probe itself: a module that does import torch must be reported.
    assert "torch" in _imported_after("import torch")


def test_unknown_public_name() -> None:
    import pytest

    import mclip_explorer

    with pytest.raises(AttributeError, match="no_such_name"):
        _ = mclip_explorer.no_such_name  # type: ignore[attr-defined]


def test_sharded_sources_and_the_local_engine_do_not_import_ray() -> None:
    code = (
        "from mclip_explorer.collection import engines\n"
        "from mclip_explorer.collection.sources import webdataset, parquet\n"
        "from mclip_explorer.collection.engines import local, ledger, records\n"
        "engines.check_engine('ray')"
    )
    assert "ray" not in _imported_after(code)
