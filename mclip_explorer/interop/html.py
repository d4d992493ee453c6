"""One self-contained, offline HTML file: the map, thumbnails and search over the items' text.

Everything is inside the file: styles, a small canvas script, and the data as one JSON block
whose ``<``, ``>``, ``&`` and ``/`` are escaped, so no dataset string can close the block, start a
tag or spell a URL. The script inserts every dataset string with ``textContent`` and sets image
sources only to ``data:image/`` URLs; a Content-Security-Policy forbids any network load.
"""

from __future__ import annotations

import base64
import html
import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from mclip_explorer._files import atomic_write

_CSP = ("default-src 'none'; img-src data:; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'")
_ESCAPES = {"<": "\\u003c", ">": "\\u003e", "&": "\\u0026", "/": "\\/", "\u2028": "\\u2028",
            "\u2029": "\\u2029"}
_IMAGE_TYPES = {b"\x89PNG": "image/png", b"\xff\xd8\xff": "image/jpeg", b"RIFF": "image/webp"}


def script_json(data: object) -> str:
    """JSON that is safe inside a ``<script type="application/json">`` element."""
    text = json.dumps(data, ensure_ascii=False, allow_nan=False)
    return "".join(_ESCAPES.get(ch, ch) for ch in text)


def data_url(image: bytes | None) -> str:
    """A ``data:`` URL of encoded PNG/JPEG/WebP bytes ('' for None or another format)."""
    if not image:
        return ""
    kind = next((t for magic, t in _IMAGE_TYPES.items() if image.startswith(magic)), None)
    return f"data:{kind};base64,{base64.b64encode(image).decode('ascii')}" if kind else ""


def render(coords: np.ndarray, ids: Sequence[int], texts: Sequence[str], kinds: Sequence[str],
           thumbs: Sequence[bytes | None], *, title: str, subtitle: str = "") -> str:
    """The page as a string.

    Args:
        coords: ``(m, 2)`` finite map positions.
        ids: The items' ids.
        texts: What the search matches and the panel shows per item (caption, title, path).
        kinds: ``"image"`` or ``"text"`` per item.
        thumbs: Encoded thumbnail per item, or None.
        title: Page title (shown as text).
        subtitle: A line under the title (shown as text).
    """
    xy = np.asarray(coords, dtype=np.float64)
    if xy.ndim != 2 or xy.shape[1] != 2 or not np.isfinite(xy).all():
        raise ValueError("coords must be a finite (m, 2) array")
    data = {
        "x": np.round(xy[:, 0], 4).tolist(), "y": np.round(xy[:, 1], 4).tolist(),
        "id": [int(i) for i in ids], "text": [str(t) for t in texts],
        "kind": [1 if k == "text" else 0 for k in kinds],
        "thumb": [data_url(t) for t in thumbs], "title": title, "subtitle": subtitle,
    }
    return _PAGE.replace("%CSP%", _CSP).replace("%TITLE%", html.escape(title)).replace(
        "%DATA%", script_json(data))


def write(path: Path, page: str) -> None:
    """Write the page as UTF-8, atomically and verified."""
    atomic_write(path, page.encode("utf-8"))


_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="%CSP%">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>%TITLE%</title>
<style>
body{font:14px system-ui,sans-serif;margin:0;display:flex;height:100vh;color:#222}
#side{width:320px;padding:10px;overflow:auto;border-right:1px solid #ddd;box-sizing:border-box}
#main{flex:1;position:relative}canvas{width:100%;height:100%;display:block}
input{width:100%;box-sizing:border-box;padding:6px;font-size:14px}
.hit{display:flex;gap:6px;align-items:center;padding:3px;cursor:pointer;border-radius:4px}
.hit:hover{background:#eef}.hit img{width:40px;height:40px;object-fit:cover}
#panel img{max-width:100%}#panel{margin-top:10px;white-space:pre-wrap;word-break:break-word}
.sub{color:#666;font-size:12px}
</style></head><body>
<div id="side"><h3 id="title"></h3><div class="sub" id="subtitle"></div>
<input id="q" type="search" placeholder="Search the items' text" autocomplete="off">
<div class="sub" id="count"></div><div id="hits"></div><div id="panel"></div></div>
<div id="main"><canvas id="map"></canvas></div>
<script type="application/json" id="data">%DATA%</script>
<script>
"use strict";
(function () {
  const D = JSON.parse(document.getElementById("data").textContent);
  const n = D.x.length, canvas = document.getElementById("map"), ctx = canvas.getContext("2d");
  const lower = D.text.map((t) => t.toLowerCase());
  let hits = [], selected = -1, sx = 1, ox = 0, oy = 0;
  document.getElementById("title").textContent = D.title;
  document.getElementById("subtitle").textContent = D.subtitle;
  let x0 = Infinity, x1 = -Infinity, y0 = Infinity, y1 = -Infinity;
  for (let i = 0; i < n; i++) {  // a loop, not Math.min(...x): that overflows on big maps
    x0 = Math.min(x0, D.x[i]); x1 = Math.max(x1, D.x[i]);
    y0 = Math.min(y0, D.y[i]); y1 = Math.max(y1, D.y[i]);
  }
  function px(i) { return [ox + (D.x[i] - x0) * sx, oy - (D.y[i] - y0) * sx]; }
  function draw() {
    const r = canvas.getBoundingClientRect(), dpr = window.devicePixelRatio || 1;
    canvas.width = r.width * dpr; canvas.height = r.height * dpr;
    ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
    const pad = 20, w = r.width - 2 * pad, h = r.height - 2 * pad;
    sx = Math.min(w / ((x1 - x0) || 1), h / ((y1 - y0) || 1));
    ox = pad + (w - (x1 - x0) * sx) / 2; oy = r.height - pad - (h - (y1 - y0) * sx) / 2;
    ctx.clearRect(0, 0, r.width, r.height);
    const dim = hits.length > 0;
    for (let i = 0; i < n; i++) {
      const [a, b] = px(i);
      const alpha = dim ? "0.15)" : "0.8)";
      ctx.fillStyle = (D.kind[i] ? "rgba(255,127,14," : "rgba(31,119,180,") + alpha;
      ctx.fillRect(a - 2, b - 2, 4, 4);
    }
    ctx.fillStyle = "#d62728";
    for (const i of hits) { const [a, b] = px(i); ctx.fillRect(a - 3, b - 3, 6, 6); }
    if (selected >= 0) {
      const [a, b] = px(selected); ctx.strokeStyle = "#000"; ctx.lineWidth = 2;
      ctx.beginPath(); ctx.arc(a, b, 7, 0, 2 * Math.PI); ctx.stroke();
    }
  }
  function image(i) {
    const img = document.createElement("img");
    if (D.thumb[i].startsWith("data:image/")) img.src = D.thumb[i];
    img.alt = ""; return img;
  }
  function show(i) {
    selected = i; const panel = document.getElementById("panel");
    panel.replaceChildren();
    if (D.thumb[i]) panel.appendChild(image(i));
    const t = document.createElement("div"); t.textContent = "#" + D.id[i] + " " + D.text[i];
    panel.appendChild(t); draw();
  }
  function search() {
    const q = document.getElementById("q").value.trim().toLowerCase();
    hits = [];
    if (q) for (let i = 0; i < n; i++) if (lower[i].includes(q)) hits.push(i);
    document.getElementById("count").textContent = q ? hits.length + " match(es)" : "";
    const list = document.getElementById("hits"); list.replaceChildren();
    for (const i of hits.slice(0, 100)) {
      const row = document.createElement("div"); row.className = "hit";
      if (D.thumb[i]) row.appendChild(image(i));
      const t = document.createElement("span"); t.textContent = D.text[i];
      row.appendChild(t); row.addEventListener("click", () => show(i)); list.appendChild(row);
    }
    draw();
  }
  canvas.addEventListener("click", (e) => {
    const r = canvas.getBoundingClientRect(), mx = e.clientX - r.left, my = e.clientY - r.top;
    let best = -1, bestD = 100;
    for (let i = 0; i < n; i++) {
      const [a, b] = px(i), d = (a - mx) ** 2 + (b - my) ** 2;
      if (d < bestD) { bestD = d; best = i; }
    }
    if (best >= 0) show(best);
  });
  document.getElementById("q").addEventListener("input", search);
  window.addEventListener("resize", draw);
  draw();
})();
</script></body></html>
"""
