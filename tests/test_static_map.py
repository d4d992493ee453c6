"""The map as a static picture: drawn kernel-side, shown by a saved notebook exported offline."""

from __future__ import annotations

import base64
import io
import re

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from mclip_explorer.interop.png import PALETTE, map_png, render_map

WHITE = (255, 255, 255)


def coloured(image: np.ndarray) -> np.ndarray:
    return np.argwhere((image != WHITE).any(axis=2))


def test_points_land_where_the_map_puts_them_in_their_colours():
    coords = np.array([[0.0, 0.0], [1.0, 1.0], [np.nan, 0.5]])
    image = render_map(coords, np.array([0, 1, 2]), width=100, height=100, point=2)
    pixels = coloured(image)
    assert len(pixels) == 8  # two 2x2 squares; the NaN row is not drawn
    low_left = [tuple(p) for p in pixels if p[0] > 50 and p[1] < 50]
    up_right = [tuple(p) for p in pixels if p[0] < 50 and p[1] > 50]
    assert len(low_left) == 4 and len(up_right) == 4  # y grows upwards, as on the map
    assert tuple(image[low_left[0]]) == tuple(PALETTE[0])
    assert tuple(image[up_right[0]]) == tuple(PALETTE[1])


def test_aspect_is_kept_and_empty_maps_are_blank():
    tall = render_map(np.array([[0.0, 0.0], [0.0, 10.0], [1.0, 0.0]]), width=200, height=100)
    cols = coloured(tall)[:, 1]
    assert cols.max() - cols.min() < 20  # 1 wide, 10 tall: narrow, not stretched to 200 px
    assert not coloured(render_map(np.full((3, 2), np.nan))).size
    png = map_png(np.zeros((0, 2)))
    assert Image.open(io.BytesIO(png)).size == (640, 420)


@pytest.fixture(scope="module")
def small_collection(tmp_path_factory: pytest.TempPathFactory):
    from mclip_explorer import Collection

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(60, 32)).astype(np.float32)
    frame = pd.DataFrame({"embedding": list(vectors), "group": ["a", "b", "c"] * 20})
    out = tmp_path_factory.mktemp("static") / "c"
    return Collection.from_embeddings(frame, model="toy", out=out, map_method="pca",
                                      progress=False)


def test_widget_bundle_carries_a_png_of_its_map(small_collection):
    from mclip_explorer.widget.explorer import ExplorerWidget

    widget = ExplorerWidget(small_collection, color_by="group")
    bundle = widget._repr_mimebundle_()
    data = bundle[0] if isinstance(bundle, tuple) else bundle
    assert "application/vnd.jupyter.widget-view+json" in data
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB"))
    colours = {tuple(c) for c in image[coloured(image)[:, 0], coloured(image)[:, 1]]}
    assert len(colours) == 3  # the three groups, in three palette colours
    assert colours <= {tuple(c) for c in PALETTE}


NOTEBOOK_CELLS = [
    "import numpy as np, pandas as pd\n"
    "from mclip_explorer import Collection, explore\n"
    "rng = np.random.default_rng(1)\n"
    "frame = pd.DataFrame({'embedding': list(rng.normal(size=(50, 32)).astype('float32'))})\n"
    "coll = Collection.from_embeddings(frame, model='toy', out='coll', map_method='pca',\n"
    "                                  progress=False)",
    "explore(coll)",
]


@pytest.mark.slow
def test_saved_notebook_exported_to_html_shows_the_map(tmp_path):
    import nbformat
    from nbclient import NotebookClient
    from nbconvert import HTMLExporter

    notebook = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c)
                                               for c in NOTEBOOK_CELLS])
    client = NotebookClient(notebook, timeout=300, kernel_name="python3",
                            store_widget_state=False,
                            resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    page, _ = HTMLExporter().from_notebook_node(notebook)
    found = re.findall(r'<img [^>]*src="data:image/png;base64,([^"]+)"', page)
    assert len(found) == 1
    image = np.asarray(Image.open(io.BytesIO(base64.b64decode(found[0]))).convert("RGB"))
    assert len(coloured(image)) >= 4 * 40  # the points are drawn (some may overlap)
