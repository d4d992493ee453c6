"""Every notebook in ``notebooks/`` runs end to end on the offline toy model (outputs stripped)."""

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
    import nbformat
    from nbclient import NotebookClient

    monkeypatch.setenv("MCLIP_EXPLORER_MODEL", "toy")
    monkeypatch.setenv("MCLIP_EXPLORER_OUT", str(tmp_path / "collections"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
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
