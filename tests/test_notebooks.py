"""Every notebook in ``notebooks/`` runs end to end offline, opened as a user opens it.

No ``MCLIP_EXPLORER_*`` variables, no offline flags, an empty Hugging Face cache and a hub that
cannot be reached: the notebook must pick the toy model by itself and say so.
"""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOKS = sorted((Path(__file__).parent.parent / "notebooks").glob("*.ipynb"))


def test_the_notebooks_are_there():
    names = {path.name for path in NOTEBOOKS}
    assert {"01-quickstart.ipynb", "02-cross-lingual-teaching.ipynb",
            "03-dataset-audit.ipynb", "04-compare-models.ipynb"} <= names


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_without_outputs(path: Path):
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert all(not cell.outputs and cell.execution_count is None for cell in code)
    assert "widgets" not in notebook.metadata


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_end_to_end(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import os

    import nbformat
    from nbclient import NotebookClient

    for name in list(os.environ):
        if name.startswith("MCLIP_EXPLORER_") or name in ("HF_HUB_OFFLINE",
                                                          "TRANSFORMERS_OFFLINE", "HF_HUB_CACHE"):
            monkeypatch.delenv(name)
    (tmp_path / "hf").mkdir()
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    # Not the offline flag: a hub address nothing answers, so the notebook meets what a user
    # without network meets (and no test can reach the real hub).
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")
    notebook = nbformat.read(path, as_version=4)
    # The "python3" kernel's command "python" is mapped to sys.executable by jupyter_client, so
    # the kernel imports the package under test; outputs go to tmp_path (the kernel's cwd).
    client = NotebookClient(
        notebook, timeout=300, kernel_name="python3", store_widget_state=False,
        resources={"metadata": {"path": str(tmp_path)}},
    )
    client.execute()  # raises CellExecutionError naming the cell on any error
    errors = [output for cell in notebook.cells if cell.cell_type == "code"
              for output in cell.outputs if output.output_type == "error"]
    assert not errors
    assert "widgets" not in notebook.metadata
    shown = "".join(str(output) for cell in notebook.cells if cell.cell_type == "code"
                    for output in cell.outputs)
    assert "Model: **toy**" in shown and "clip-ViT-B-32-multilingual-v1" in shown
    assert "network access" in shown  # how to get the real model
    assert list((tmp_path / "hf").rglob("*.safetensors")) == []
