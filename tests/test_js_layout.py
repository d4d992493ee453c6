"""The npm package lives in ``js/``: nothing at the repository root changes how Node loads files.

A root ``package.json`` with ``"type": "module"`` made Node load every CommonJS ``.js`` file under
the checkout as an ES module, so JupyterLab in a ``.venv`` inside the repository crashed at start.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_a_commonjs_script_under_the_checkout_runs_under_node():
    node = shutil.which("node")
    assert node, "node is needed to build the widget, and so for this test"
    # Like JupyterLab's files in <repo>/.venv/share/jupyter/lab: no package.json of their own.
    with tempfile.TemporaryDirectory(dir=ROOT, prefix=".cjs-probe-") as folder:
        script = Path(folder) / "deep" / "probe.js"
        script.parent.mkdir()
        script.write_text("const path = require('path');\nmodule.exports = {};\n"
                          "console.log('commonjs ok', path.sep);\n")
        run = subprocess.run([node, str(script)], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0, run.stderr
    assert "commonjs ok" in run.stdout


def test_the_build_points_at_the_js_package():
    import tomllib

    package = json.loads((ROOT / "js" / "package.json").read_text(encoding="utf-8"))
    assert {"build", "typecheck", "test"} <= set(package["scripts"])
    assert "../mclip_explorer/static/widget.js" in package["scripts"]["build"]
    assert (ROOT / "js" / "package-lock.json").is_file()
    kwargs = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))[
        "tool"]["hatch"]["build"]["hooks"]["jupyter-builder"]["build-kwargs"]
    assert kwargs["path"] == "js"
    assert not (ROOT / "package.json").exists()
