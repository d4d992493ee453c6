"""Benchmark the explorer widget in JupyterLab + headless Chromium at 10k, 100k and 1M points.

Measures, per map size: bytes the browser receives to show the widget (websocket frames, and
the binary state per point); time from ``explore()`` to the first rendered map; and the query
round trip, keypress to gallery painted (thumbnails decoded).

Collections of 1M images cannot be built on a 2-core test machine, so the kernel side is
:class:`SyntheticCollection`: the Collection API the widget uses, over clustered random 32-d
vectors, brute-force search and 64 small generated images reused as thumbnail sources. The
widget, its wire format, JupyterLab and the browser are the real ones.

Usage: python bench/widget.py [--sizes 10000 100000 1000000] [--queries 12]
       [--out FILE]
       python bench/widget.py --compare [--sizes 100000 1000000] [--ours-only 10000000]
       [--widgets ours plotly] [--rounds 3]
       (first paint, pan and zoom against bare plotly scattergl and jupyter-scatter; needs the
       `bench` extra: pip install ".[bench]")
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
WORDS = ["rot", "красный", "赤", "أزرق", "blue", "grün", "jaune", "緑", "ירוק", "nero", "белый",
         "粉", "purple", "grau", "naranja", "λευκό"]


class SyntheticCollection:
    """Just the Collection API the widget calls, at any size (see the module docstring)."""

    def __init__(self, n: int, folder: Path, dim: int = 32, clusters: int = 40, seed: int = 0):
        from PIL import Image

        from mclip_explorer.models.toy import ToyEncoder

        rng = np.random.default_rng(seed)
        self.path = folder
        self.model_name = "toy (synthetic)"
        self.encoder = ToyEncoder(dim=dim)
        label = rng.integers(0, clusters, n)
        centres = rng.standard_normal((clusters, dim)).astype(np.float32)
        vectors = centres[label] + 0.4 * rng.standard_normal((n, dim), dtype=np.float32)
        self._vectors = vectors / np.linalg.norm(vectors, axis=1, keepdims=True)
        spots = rng.uniform(-10, 10, (clusters, 2)).astype(np.float32)
        self.coords = spots[label] + rng.standard_normal((n, 2), dtype=np.float32)
        images = folder / "images"
        images.mkdir(parents=True, exist_ok=True)
        paths = []
        for i in range(64):
            path = images / f"{i}.png"
            Image.new("RGB", (160, 120), tuple(int(v) for v in rng.integers(0, 255, 3))).save(path)
            paths.append(str(path))
        self._paths = np.array(paths, dtype=object)[np.arange(n) % 64]
        # Categoricals: 10M rows of Python strings would not fit the benchmark machine.
        none = pd.Categorical.from_codes(np.full(n, -1), categories=["-"])
        self._titles = pd.Categorical.from_codes(np.arange(n) % 64, [f"image {i}" for i in
                                                                    range(64)])
        self.items = pd.DataFrame({
            "id": np.arange(n, dtype=np.int64),
            "kind": pd.Categorical.from_codes(np.zeros(n, np.int8), ["image", "text"]),
            "path": pd.Categorical.from_codes(np.arange(n) % 64, paths), "text": none,
            "lang": none, "title": self._titles, "error": none, "deleted": np.zeros(n, bool),
            "cluster": pd.Categorical.from_codes(label, [f"c{c:02d}" for c in range(clusters)]),
        })

    def search(self, query: Any, k: int = 10) -> pd.DataFrame:
        vector = self._vectors[int(query)] if np.isscalar(query) else np.asarray(query)
        scores = self._vectors @ vector.astype(np.float32)
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return pd.DataFrame({"rank": np.arange(1, k + 1), "id": top,
                             "path": self._paths[top], "score": scores[top],
                             "x": self.coords[top, 0], "y": self.coords[top, 1],
                             "title": np.asarray(self._titles)[top]})

    def place(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        near = [self.search(v, 10) for v in np.atleast_2d(vectors)]
        xy = np.array([[f["x"].mean(), f["y"].mean()] for f in near], dtype=np.float32)
        return xy, np.zeros(len(xy), np.float32)


CELL = """\
import sys, json, time
from pathlib import Path
sys.path.insert(0, {repo!r})
from bench.widget import SyntheticCollection
from mclip_explorer.widget.explorer import ExplorerWidget  # what explore(collection) returns
coll = SyntheticCollection({n}, Path({folder!r}))
t0 = time.time() * 1000
w = ExplorerWidget(coll, color_by="cluster", k=10)
w"""

ROUND_TRIP = """async (text) => {
  const input = document.querySelector('.mx-query');
  const gallery = document.querySelector('.mx-gallery');
  const before = gallery.dataset.painted;
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  input.value = text;
  const t0 = performance.now();
  input.dispatchEvent(new KeyboardEvent('keydown', { key: 'Enter', bubbles: true }));
  while (gallery.dataset.painted === before) await frame();
  await frame(); await frame();  // the frame that shows it has been painted
  const total = performance.now() - t0;
  const reply = performance.getEntriesByName("mx:reply").pop();
  performance.clearMarks();
  return [total, reply ? reply.startTime - t0 : NaN];
}"""


def pan_frames(page: Any, moves: int = 10) -> dict[str, float]:
    """A mouse drag (pan) of ``moves`` steps: its wall time and the longest frame during it."""
    page.locator('.mx-map .modebar-btn[data-title="Pan"]').click()
    box = page.locator(".mx-map").bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    page.evaluate("""() => {
      window.__frames = []; window.__stop = false;
      const loop = (t) => {
        window.__frames.push(t);
        if (!window.__stop) requestAnimationFrame(loop);
      };
      requestAnimationFrame(loop);
    }""")
    page.mouse.move(cx, cy)
    start = time.perf_counter()
    page.mouse.down()
    for i in range(1, moves + 1):
        page.mouse.move(cx + 8 * i, cy + 4 * i)
    page.mouse.up()
    # Wait for the frame after the drag: the redraw it triggers counts too.
    frames = page.evaluate("""() => new Promise((done) => requestAnimationFrame(() => {
      window.__stop = true; done(window.__frames); }))""")
    wall = (time.perf_counter() - start) * 1000
    gaps = [b - a for a, b in itertools.pairwise(frames)]
    return {"per_move_ms": wall / moves, "longest_frame_ms": max(gaps, default=0.0)}


def count_received(context: Any) -> dict[str, int]:
    """A counter of the websocket bytes every page of ``context`` receives."""
    received = {"bytes": 0}

    def on_socket(ws: Any) -> None:
        ws.on("framereceived", lambda payload: received.__setitem__(
            "bytes", received["bytes"] + len(payload)))

    context.on("page", lambda page: page.on("websocket", on_socket))
    return received


def measure(context: Any, lab: dict[str, Any], n: int, queries: int,
            received: dict[str, int]) -> dict[str, Any]:
    from tests.browser.conftest import kernel, open_notebook

    received["bytes"] = 0
    folder = Path(tempfile.mkdtemp(prefix=f"bench-{n}-"))
    page = open_notebook(context, lab, f"bench_{n}.ipynb",
                         CELL.format(repo=str(REPO), n=n, folder=str(folder)),
                         timeout_ms=600_000)
    wire = received["bytes"]
    ready_at = int(page.locator(".mx-map").get_attribute("data-ready-at"))
    t0 = kernel(page, "print(json.dumps(t0))")
    state = kernel(page, "print(json.dumps([len(bytes(w._coords)) + len(bytes(w._ids)) + "
                         "len(bytes(w._kinds)) + len(bytes(w._color_codes)), len(w._esm)]))")
    times, kernel_share = [], []
    for i in range(queries):
        text = WORDS[i % len(WORDS)]
        total, reply = page.evaluate(ROUND_TRIP, text)
        times.append(total)
        kernel_share.append(reply)
        # One query on the map at a time: every round trip does the same amount of drawing.
        page.evaluate("() => document.querySelectorAll('.mx-remove').forEach(b => b.click())")
    pan = pan_frames(page)
    errors = list(page.page_errors)
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.close()
    return {"n": n, "explore_to_map_s": (ready_at - t0) / 1000, "wire_bytes": wire,
            "state_bytes": state[0], "bundle_bytes": state[1],
            "rtt_ms": times, "reply_ms": kernel_share, "pan": pan,
            "page_errors": errors}


def report(results: list[dict[str, Any]], queries: int, note: str = "") -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Widget (bench/widget.py)",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), no GPU; JupyterLab 4 + Debian chromium, "
        "headless, WebGL through SwiftShader (software). Kernel side: `SyntheticCollection` "
        "(clustered 32-d vectors, brute-force search), the widget and browser are real. "
        f"Round trip: {queries} queries per size in several scripts, keypress (Enter) to the "
        "gallery painted with its 10 thumbnails decoded; one query on the map at a time. "
        "Pan: a drag of 10 mouse moves over the map (each move redraws every point), its wall "
        "time per move and the longest gap between animation frames.",
        "",
        "| points | binary state | bytes/point (state) | bytes received to show | "
        "explore() → map drawn | query round trip median | p90 | max | of which kernel + wire "
        "(median) | pan: ms per mouse move / longest frame |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        t = sorted(r["rtt_ms"])
        p90 = t[min(len(t) - 1, round(0.9 * (len(t) - 1)))]
        lines.append(
            f"| {r['n']:,} | {r['state_bytes'] / 1e6:.2f} MB | {r['state_bytes'] / r['n']:.1f} | "
            f"{r['wire_bytes'] / 1e6:.2f} MB | {r['explore_to_map_s']:.2f} s | "
            f"{statistics.median(t):.0f} ms | {p90:.0f} ms | {t[-1]:.0f} ms | "
            f"{statistics.median(r['reply_ms']):.0f} ms | "
            f"{r['pan']['per_move_ms']:.0f} / {r['pan']['longest_frame_ms']:.0f} ms |")
    bundle = results[0]["bundle_bytes"] if results else 0
    lines += [
        "",
        f"Per point the map costs 14 bytes: x, y float32, id uint32, kind uint8 and colour code "
        f"uint8, sent once as binary buffers. \"Bytes received\" also counts the widget's "
        f"JavaScript ({bundle / 1e6:.2f} MB, plotly.js gl2d included, sent with each new "
        "widget) and JupyterLab's own messages. Target: round trip <= 300 ms at 100k points.",
        "",
    ]
    if note:
        lines += [note, ""]
    return "\n".join(lines)


# ----------------------------------------------------------------- side-by-side comparison
# The same clustered points drawn by three widgets in the same JupyterLab and browser: ours, bare
# plotly.js scattergl (the same plotly.js bundle as ours, binary x/y, one newPlot: no queries,
# no thumbnails) and jupyter-scatter (regl-scatterplot).
COMPARE_CELL = """\
import sys, json, time
from pathlib import Path
sys.path.insert(0, {repo!r})
import numpy as np
rng = np.random.default_rng(0)
label = rng.integers(0, 40, {n})
xy = (rng.uniform(-10, 10, (40, 2))[label] + rng.standard_normal(({n}, 2))).astype(np.float32)
{make}
w"""
MAKE = {
    "ours": "from bench.widget import SyntheticCollection\n"
            "from mclip_explorer.widget.explorer import ExplorerWidget\n"
            "coll = SyntheticCollection({n}, Path({folder!r}), dim=16)\n"
            "t0 = time.time() * 1000\n"
            "w = ExplorerWidget(coll, color_by='cluster', k=10)",
    "plotly": "from bench.widget import bare_plotly\n"
              "t0 = time.time() * 1000\n"
              "w = bare_plotly(xy, label)",
    "jupyter-scatter": "import jscatter\n"
                       "t0 = time.time() * 1000\n"
                       "w = jscatter.Scatter(x=xy[:, 0], y=xy[:, 1], color_by=label, "
                       "height=520).show()",
}
# When is the first paint there? Each widget's own "drawn" sign, then one more frame.
PAINTED = {
    "ours": "() => document.querySelector('.mx-map[data-ready=\"true\"]')",
    "plotly": "() => { const gd = document.querySelector('.jp-OutputArea .js-plotly-plot');"
              " return gd && gd._fullLayout && gd.querySelector('canvas'); }",
    "jupyter-scatter": "() => { const c = document.querySelector('.jp-OutputArea-output canvas');"
                       " return c && c.width > 0 && c.height > 0; }",
}
SURFACE = {"ours": ".mx-map .nsewdrag", "plotly": ".js-plotly-plot .nsewdrag",
           "jupyter-scatter": ".jp-OutputArea-output canvas"}
WATCH = """(ready) => {
  const test = new Function('return (' + ready + ')()');
  window.__painted = 0;
  const loop = () => {
    if (!test()) return requestAnimationFrame(loop);
    requestAnimationFrame(() => { window.__painted = Date.now(); });
  };
  loop();
}"""
# Settled: with level of detail, the view changed and its points (if any were asked for) are
# drawn; then, for every widget, two frames in a row under 50 ms.
SETTLE = """async ([since, lod]) => {
  const map = document.querySelector('.mx-map');
  const frame = () => new Promise((r) => requestAnimationFrame(r));
  const limit = performance.now() + 60000;
  while (lod && (Number(map.dataset.viewAt || 0) < since || map.dataset.fetching === 'true')
         && performance.now() < limit) {
    await frame();
  }
  let last = await frame(); let calm = 0;
  while (calm < 2 && performance.now() < limit) {
    const now = await frame(); calm = now - last < 50 ? calm + 1 : 0; last = now;
  }
  return Date.now() - since;
}"""


BARE_RENDER = """
const Plotly = window.Plotly;
export default { render({ model, el }) {
  const view = (v) => new Uint8Array(v.buffer, v.byteOffset, v.byteLength).slice().buffer;
  const xy = new Float32Array(view(model.get("xy")));
  const label = new Uint8Array(view(model.get("label")));
  const n = xy.length / 2, x = new Float32Array(n), y = new Float32Array(n);
  for (let i = 0; i < n; i++) { x[i] = xy[2 * i]; y[i] = xy[2 * i + 1]; }
  el.style.height = "520px";
  Plotly.newPlot(el, [{ type: "scattergl", mode: "markers", x, y, hoverinfo: "none",
    marker: { size: 2, color: label, colorscale: "Portland" } }],
    { dragmode: "pan", margin: { l: 30, r: 10, t: 10, b: 30 } },
    { scrollZoom: true, displaylogo: false });
} };
"""


def bare_plotly(xy: np.ndarray, label: np.ndarray) -> Any:
    """Bare plotly.js scattergl (the same gl2d bundle as ours) with binary x/y, one newPlot."""
    import anywidget
    import traitlets

    source = REPO / "js" / "node_modules" / "plotly.js-gl2d-dist-min" / "plotly-gl2d.min.js"

    class BarePlotly(anywidget.AnyWidget):
        _esm = source.read_text(encoding="utf-8") + BARE_RENDER
        xy = traitlets.Any().tag(sync=True)
        label = traitlets.Any().tag(sync=True)

    return BarePlotly(xy=memoryview(np.ascontiguousarray(xy, np.float32)).cast("B"),
                      label=memoryview(np.ascontiguousarray(label, np.uint8)).cast("B"))


PAN_STEPS = 5  # pans timed after the first one


def gesture(page: Any, kind: str, what: str) -> float:
    """One pan step (a 134 px drag) or one zoom-in step; ms until the page settled again."""
    box = page.locator(SURFACE[kind]).first.bounding_box()
    cx, cy = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    # Level of detail: every pan or zoom fetches the view's points; wait for them too.
    lod = kind == "ours" and page.evaluate(
        "() => document.querySelector('.mx-map').dataset.lod === 'true'")
    page.mouse.move(cx, cy)
    since = page.evaluate("() => Date.now()")
    if what == "pan":  # one step: press, one move, release
        page.mouse.down()
        page.mouse.move(cx + 120, cy + 60)
        page.mouse.up()
    else:
        page.mouse.wheel(0, -240)
    return float(page.evaluate(SETTLE, [since, lod]))


def compare_one(context: Any, lab: dict[str, Any], kind: str, n: int) -> dict[str, Any]:
    from tests.browser.conftest import kernel, write_notebook

    folder = Path(tempfile.mkdtemp(prefix=f"cmp-{kind}-{n}-"))
    make = MAKE[kind].format(n=n, folder=str(folder))
    name = f"cmp_{kind.replace('-', '_')}_{n}.ipynb"
    write_notebook(lab["root"] / name, COMPARE_CELL.format(repo=str(REPO), n=n, make=make))
    page = context.new_page()
    page.goto(f"{lab['url']}/lab/tree/{name}?reset")
    page.wait_for_function("() => window.jupyterapp?.shell.currentWidget?.sessionContext"
                           "?.session?.kernel?.status === 'idle'", timeout=120_000)
    page.evaluate(WATCH, PAINTED[kind])
    page.evaluate("() => window.jupyterapp.commands.execute('notebook:run-all-cells')")
    page.wait_for_function("() => window.__painted > 0", timeout=900_000, polling=200)
    painted = page.evaluate("() => window.__painted")
    first = (painted - kernel(page, "print(json.dumps(t0))")) / 1000
    page.wait_for_timeout(500)
    # The first pan is reported on its own: it includes the browser's warm-up of the drag
    # path (bare plotly shows it too); the pan step is the median of the five after it.
    pans = [gesture(page, kind, "pan") for _ in range(1 + PAN_STEPS)]
    zooms = [gesture(page, kind, "zoom") for _ in range(3)]
    page.evaluate("() => window.jupyterapp.shell.currentWidget.sessionContext.shutdown()")
    page.close()
    return {"widget": kind, "n": n, "first_paint_s": first,
            "pan_ms": statistics.median(pans[1:]), "zoom_ms": statistics.median(zooms),
            "pans": pans, "zooms": zooms}


def compare_report(results: list[dict[str, Any]], note: str = "") -> str:
    cpu = platform.processor() or platform.machine()
    lines = [
        "## Widget against bare plotly and jupyter-scatter (bench/widget.py --compare)",
        "",
        f"Machine: {os.cpu_count()} cores ({cpu}), no GPU; JupyterLab 4 + Debian chromium, "
        "headless, WebGL through SwiftShader (software). The same clustered points (40 "
        "clusters) in each widget, one fresh kernel and page per row. First paint: from "
        "just before the widget is made in the kernel to the first frame after it is drawn. "
        "Pan step: press, one 134 px move, release; zoom: one mouse-wheel step (240 px) at "
        "the centre; "
        "each timed from the gesture's start until any level-of-detail answer arrived and "
        "two frames in a row took under 50 ms. Pan step: median of the 5 pans after the "
        "first; the first pan (0.5 s after the first paint) on its own; zoom step: median of "
        "3. Load average (1 min) before and after each row.",
        "",
        "| widget | points | first paint | pan step | first pan | zoom step | load |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        first_pan = r.get("pans", [float("nan")])[0]
        load = r.get("load", [float("nan")] * 2)
        lines.append(f"| {r['widget']} | {r['n']:,} | {r['first_paint_s']:.2f} s | "
                     f"{r['pan_ms']:.0f} ms | {first_pan:.0f} ms | {r['zoom_ms']:.0f} ms | "
                     f"{load[0]:.1f} -> {load[1]:.1f} |")
    lines.append("")
    lines += _medians(results)
    if note:
        lines += [note, ""]
    return "\n".join(lines)


def _medians(results: list[dict[str, Any]]) -> list[str]:
    """Per widget and size, the median of each column over the rounds (when there are several)."""
    rows: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in results:
        if "pans" in r:
            rows.setdefault((r["widget"], r["n"]), []).append(r)
    if all(len(v) < 2 for v in rows.values()):
        return []
    lines = ["Medians over the rounds:", "",
             "| widget | points | rounds | first paint | pan step | first pan | zoom step |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    for (widget, n), rs in rows.items():
        med = {k: statistics.median(f(r) for r in rs) for k, f in (
            ("paint", lambda r: r["first_paint_s"]), ("pan", lambda r: r["pan_ms"]),
            ("first", lambda r: r["pans"][0]), ("zoom", lambda r: r["zoom_ms"]))}
        lines.append(f"| {widget} | {n:,} | {len(rs)} | {med['paint']:.2f} s | "
                     f"{med['pan']:.0f} ms | {med['first']:.0f} ms | {med['zoom']:.0f} ms |")
    return [*lines, ""]


def compare(sizes: list[int], ours_only: list[int], out: Path | None, note: str,
            widgets: list[str] | None = None, rounds: int = 1) -> None:
    from tests.browser.conftest import chromium, running_lab

    results = []
    with (tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp) / "lab") as lab,
          chromium(Path(tmp) / "chromium") as context):
        # Rounds alternate the widgets' order: the first row of a run also pays for the fresh
        # JupyterLab settling in, which must not always fall on the same widget.
        kinds = list(widgets or MAKE)
        runs = [(kind, n) for r in range(rounds) for n in sizes
                for kind in (kinds if r % 2 == 0 else kinds[::-1])]
        runs += [("ours", n) for _ in range(rounds) for n in ours_only]
        for kind, n in runs:
            load = os.getloadavg()[0]
            try:
                results.append(compare_one(context, lab, kind, n))
            except Exception as exc:  # noqa: BLE001 - one failing widget must not lose the rest
                results.append({"widget": kind, "n": n, "first_paint_s": float("nan"),
                                "pan_ms": float("nan"), "zoom_ms": float("nan"),
                                "error": f"{type(exc).__name__}: {exc}"[:300]})
            results[-1]["load"] = [load, os.getloadavg()[0]]
            print(json.dumps(results[-1]), flush=True)
    text = compare_report(results, note)
    if out is not None:
        out.write_text(text, encoding="utf-8")
    print(text)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the Markdown section here (for docs/benchmarks.md)")
    parser.add_argument("--note", default="", help="a line about the run, added to the report")
    parser.add_argument("--compare", action="store_true",
                        help="time first paint, pan and zoom against bare plotly and "
                             "jupyter-scatter (sizes from --sizes) instead")
    parser.add_argument("--ours-only", type=int, nargs="*", default=[10_000_000],
                        help="with --compare: sizes run for our widget alone")
    parser.add_argument("--widgets", nargs="+", choices=list(MAKE), default=None,
                        help="with --compare: the widgets compared, in this order (default: all)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="with --compare: repeat every row, alternating the widgets' order")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
    if args.compare:
        compare(args.sizes, args.ours_only, args.out, args.note, args.widgets, args.rounds)
        return
    from tests.browser.conftest import chromium, running_lab

    results = []
    with (tempfile.TemporaryDirectory() as tmp, running_lab(Path(tmp) / "lab") as lab,
          chromium(Path(tmp) / "chromium") as context):
        received = count_received(context)
        for n in args.sizes:
            start = time.monotonic()
            results.append(measure(context, lab, n, args.queries, received))
            print(json.dumps({**results[-1], "wall_s": time.monotonic() - start}), flush=True)
    text = report(results, args.queries, args.note)
    if args.out is not None:
        args.out.write_text(text, encoding="utf-8")
    print(text)


if __name__ == "__main__":
    main()
