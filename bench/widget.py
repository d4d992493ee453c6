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
        self._titles = np.array([f"image {i}" for i in range(n)], dtype=object)
        self.items = pd.DataFrame({
            "id": np.arange(n, dtype=np.int64), "kind": "image",
            "path": self._paths, "text": None, "lang": None,
            "title": self._titles, "error": None, "deleted": False,
            "cluster": [f"c{c:02d}" for c in label],
        })

    def search(self, query: Any, k: int = 10) -> pd.DataFrame:
        vector = self._vectors[int(query)] if np.isscalar(query) else np.asarray(query)
        scores = self._vectors @ vector.astype(np.float32)
        top = np.argpartition(-scores, k)[:k]
        top = top[np.argsort(-scores[top])]
        return pd.DataFrame({"rank": np.arange(1, k + 1), "id": top,
                             "path": self._paths[top], "score": scores[top],
                             "x": self.coords[top, 0], "y": self.coords[top, 1],
                             "title": self._titles[top]})

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument("--queries", type=int, default=12)
    parser.add_argument("--out", type=Path, default=None,
                        help="also write the Markdown section here (for docs/benchmarks.md)")
    parser.add_argument("--note", default="", help="a line about the run, added to the report")
    args = parser.parse_args()
    sys.path.insert(0, str(REPO))
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
