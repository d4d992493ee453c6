"""AVIF, HEIC and files that only look like images (issue 9, point 8).

Every file a folder scan sees as an image is either encoded or listed as a failed item with its
reason. AVIF and HEIC decode through the optional ``mclip-explorer[formats]`` extra (Pillow 11.2+
decodes AVIF natively; pillow-heif adds HEIC); without them the reason says what to install.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from PIL import Image

from mclip_explorer.collection import Collection
from mclip_explorer.models.toy import ToyEncoder

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    import pillow_heif

    pillow_heif.register_heif_opener()
    root = tmp_path_factory.mktemp("formats")
    for name, colour in (("red.png", (220, 20, 20)), ("green.avif", (20, 200, 20)),
                         ("blue.heic", (20, 20, 220))):
        fmt = {".png": "PNG", ".avif": "AVIF", ".heic": "HEIF"}[Path(name).suffix]
        Image.new("RGB", (40, 30), colour).save(root / name, format=fmt)
    (root / "drawing.svg").write_text('<svg xmlns="http://www.w3.org/2000/svg"/>')
    (root / "photo.cr2").write_bytes(b"II*\x00" + bytes(60))
    (root / "notes.txt").write_text("not an image, and it does not look like one")
    return root


def _reasons(coll: Collection) -> dict[str, str | None]:
    items = coll.items
    return {Path(p).name: e for p, e in zip(items["path"], items["error"], strict=True)}


def test_avif_and_heic_are_encoded_with_the_formats_extra(folder: Path, tmp_path: Path):
    coll = Collection.build(folder, model=ToyEncoder(), out=tmp_path / "coll", progress=False)
    reasons = _reasons(coll)
    assert set(reasons) == {"red.png", "green.avif", "blue.heic", "drawing.svg", "photo.cr2"}
    assert reasons["green.avif"] is None and reasons["blue.heic"] is None
    assert "SVG (vector) files are not supported" in str(reasons["drawing.svg"])
    assert "camera RAW files are not supported" in str(reasons["photo.cr2"])
    # Decoded for real: the toy encoder sees colour, so each file finds its own colour name.
    assert coll.search("green", k=1)["path"].iloc[0].endswith("green.avif")
    assert coll.search("blue", k=1)["path"].iloc[0].endswith("blue.heic")


_WITHOUT_PLUGINS = """
    import json, sys
    # As if neither optional plugin were installed and Pillow had no AVIF support of its own.
    for name in ("pillow_heif", "pillow_avif", "PIL._avif"):
        sys.modules[name] = None
    from mclip_explorer.collection import Collection
    from mclip_explorer.models.toy import ToyEncoder
    coll = Collection.build(sys.argv[1], model=ToyEncoder(), out=sys.argv[2], progress=False)
    items = coll.items
    print(json.dumps(dict(zip(items["path"], items["error"]))))
"""


def test_without_the_extra_the_reason_says_what_to_install(folder: Path, tmp_path: Path):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", textwrap.dedent(_WITHOUT_PLUGINS), str(folder),
                           str(tmp_path / "coll")], env=env, capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    reasons = {Path(k).name: v for k, v in json.loads(done.stdout.splitlines()[-1]).items()}
    assert reasons["red.png"] is None
    assert "AVIF image" in reasons["green.avif"]
    assert "install mclip-explorer[formats]" in reasons["green.avif"]
    assert "HEIC/HEIF image" in reasons["blue.heic"]
    assert "install mclip-explorer[formats]" in reasons["blue.heic"]
