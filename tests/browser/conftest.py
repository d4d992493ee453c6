"""One JupyterLab server and one headless Chromium page per test session, on 127.0.0.1.

The page opens a notebook that builds the toy collection and shows the explorer widget; tests
drive the widget with real mouse and keyboard events and read Python state back through the
notebook's own kernel. Chromium is Debian's (``apt-get install chromium``): if it is missing the
tests fail with that instruction rather than skip.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("MCLIP_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
# Set to a folder (e.g. docs/screenshots) to keep the screenshots the tests take.
SCREENSHOTS = os.environ.get("MCLIP_SCREENSHOTS")
NOTEBOOK_CODE = """\
import sys, json
from pathlib import Path
sys.path.insert(0, {repo!r})
from tests.browser.toydata import build_collection
import mclip_explorer
coll = build_collection(Path({root!r}))
w = mclip_explorer.explore(coll, color_by="colour", k=8)
w"""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_http(url: str, process: subprocess.Popen[bytes], timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"JupyterLab exited with code {process.returncode}")
        try:
            with urllib.request.urlopen(url, timeout=2):  # our own 127.0.0.1 server
                return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"JupyterLab did not answer at {url} within {timeout:.0f} s")


def write_notebook(path: Path, code: str) -> None:
    """A one-cell notebook running ``code``."""
    cell = {"cell_type": "code", "execution_count": None, "id": "explore", "metadata": {},
            "outputs": [], "source": code}
    notebook = {"cells": [cell], "metadata": {"kernelspec": {
        "display_name": "Python 3", "language": "python", "name": "python3"}},
        "nbformat": 4, "nbformat_minor": 5}
    path.write_text(json.dumps(notebook), encoding="utf-8")


@contextmanager
def running_lab(root: Path) -> Iterator[dict[str, Any]]:
    """Run JupyterLab on 127.0.0.1 (empty token, no news toast) serving ``root``."""
    settings = root / ".settings"
    notify = settings / "@jupyterlab" / "apputils-extension" / "notification.jupyterlab-settings"
    notify.parent.mkdir(parents=True, exist_ok=True)
    notify.write_text(json.dumps({"fetchNews": "false", "checkForUpdates": False}))
    port = _free_port()
    env = {**os.environ, "JUPYTERLAB_SETTINGS_DIR": str(settings),
           "JUPYTER_RUNTIME_DIR": str(root / ".runtime"), "PYTHONPATH": str(REPO)}
    log = (root / "lab.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "jupyterlab", "--no-browser", "--allow-root", f"--port={port}",
         "--ip=127.0.0.1", f"--ServerApp.root_dir={root}", "--IdentityProvider.token=",
         "--ServerApp.password=", "--LabApp.expose_app_in_browser=True",
         "--ServerApp.open_browser=False"],
        stdout=log, stderr=subprocess.STDOUT, env=env, cwd=root,
    )
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status", process)
        yield {"url": f"http://127.0.0.1:{port}", "root": root, "log": root / "lab.log"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
        log.close()


@contextmanager
def chromium(user_dir: Path) -> Iterator[Any]:
    """A Playwright persistent context on Debian's chromium (never a downloaded browser)."""
    if not Path(CHROMIUM).is_file() and shutil.which(CHROMIUM) is None:
        pytest.fail(f"browser tests need Debian's chromium at {CHROMIUM}: run "
                    "`apt-get install -y chromium fonts-dejavu-core` (or set MCLIP_CHROMIUM)",
                    pytrace=False)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(user_dir), executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1300, "height": 1400},
        )
        try:
            yield context
        finally:
            context.close()


def open_notebook(context: Any, lab: dict[str, Any], name: str, code: str,
                  timeout_ms: int = 60_000) -> Any:
    """Write a one-cell notebook, open it in a new page, run it; the page once the map is drawn."""
    write_notebook(lab["root"] / name, code)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    # ?reset: a fresh workspace, or JupyterLab reopens (and runs kernels for) earlier notebooks.
    page.goto(f"{lab['url']}/lab/tree/{name}?reset")
    page.wait_for_function("() => window.jupyterapp && window.jupyterapp.shell.currentWidget"
                           " && window.jupyterapp.shell.currentWidget.sessionContext",
                           timeout=60_000)
    page.wait_for_function(
        "() => window.jupyterapp.shell.currentWidget.sessionContext.session?.kernel?.status"
        " === 'idle'", timeout=60_000)
    page.page_errors = errors
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    failed = "[data-mime-type='application/vnd.jupyter.error']"
    try:
        page.wait_for_function(
            f"() => document.querySelector(\".mx-map[data-ready='true'], {failed}\")",
            timeout=timeout_ms)
    except Exception as exc:
        raise AssertionError(f"the widget's map never rendered; page errors: {errors}; "
                             f"see {lab['log']}") from exc
    if page.locator(failed).count():
        raise AssertionError(f"the notebook cell failed:\n{page.locator(failed).inner_text()}")
    return page


@pytest.fixture(scope="session")
def lab(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A JupyterLab server on 127.0.0.1 with an empty token, serving a fresh folder."""
    with running_lab(tmp_path_factory.mktemp("lab")) as server:
        yield server


@pytest.fixture(scope="session")
def browser_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Debian's chromium through Playwright."""
    with chromium(tmp_path_factory.mktemp("chromium")) as context:
        yield context


@pytest.fixture(scope="session")
def explorer(lab: dict[str, Any], browser_context: Any) -> Iterator[Any]:
    """The page with the notebook run and the widget's map drawn."""
    code = NOTEBOOK_CODE.format(repo=str(REPO), root=str(lab["root"] / "toy"))
    page = open_notebook(browser_context, lab, "explore.ipynb", code)
    yield page
    page.close()


@pytest.fixture
def fresh_explorer(explorer: Any) -> None:
    """Every test starts from the same widget state, whatever ran before it (random order).

    The notebook and page are shared (JupyterLab start-up dominates), so what earlier tests
    change is undone here: a patched ``coll.search``, selection, highlight, colour column, error,
    queries, zoom and drag mode.
    """
    kernel(explorer, "coll.__dict__.pop('search', None); w.selection = []; w.highlight([]);"
                     " w.color_by = 'colour'; w.error = ''; print(1)")
    while explorer.locator(".mx-remove").count():
        explorer.locator(".mx-remove").first.click()
    explorer.wait_for_function("() => !document.querySelector('.mx-row')")
    explorer.locator('.mx-map .modebar-btn[data-title="Reset axes"]').click()
    # plotly keeps its own box/lasso selection (unselected points dimmed) until a double click
    # in a select mode clears it.
    explorer.locator('.mx-map .modebar-btn[data-title="Box Select"]').click()
    box = explorer.locator(".mx-map .nsewdrag").first.bounding_box()
    explorer.mouse.dblclick(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    explorer.locator('.mx-map .modebar-btn[data-title="Pan"]').click()
    explorer.mouse.move(2, 2)
    explorer.wait_for_function(
        "() => { const d = document.querySelector('.mx-map').data;"
        " return d.find(t => t.name === 'highlighted').x.length === 0"
        " && d.find(t => t.name === 'selected').x.length === 0; }", timeout=10_000)
    # A reset of the axes redraws the map (and, with level of detail, asks the kernel for the
    # viewport's points): let that finish before the test looks at the picture.
    explorer.wait_for_selector(".mx-root[data-busy='false']", timeout=10_000)
    explorer.wait_for_timeout(800)


KERNEL_EXEC = """async (code) => {
  const kernel = window.jupyterapp.shell.currentWidget.sessionContext.session.kernel;
  const future = kernel.requestExecute({ code, store_history: false });
  let out = "";
  future.onIOPub = (msg) => {
    const t = msg.header.msg_type;
    if (t === "stream") out += msg.content.text;
    if (t === "error") out += `KERNEL ERROR ${msg.content.ename}: ${msg.content.evalue}`;
  };
  await future.done;
  return out;
}"""


def kernel(page: Any, code: str) -> Any:
    """Run ``code`` in the notebook's kernel; it must print one JSON value, which is returned."""
    out = page.evaluate(KERNEL_EXEC, code)
    if "KERNEL ERROR" in out:
        raise AssertionError(out)
    return json.loads(out)


def screenshot(page: Any, name: str, selector: str = ".mx-root") -> bytes:
    """PNG of the widget; also saved under $MCLIP_SCREENSHOTS when that is set."""
    data = page.locator(selector).first.screenshot()
    if SCREENSHOTS:
        Path(SCREENSHOTS).mkdir(parents=True, exist_ok=True)
        (Path(SCREENSHOTS) / f"{name}.png").write_bytes(data)
    return data
