"""Build a collection in a background process, in steps the explorer widget shows as they land.

``explore(folder, background=True)`` returns its widget at once and starts a
:class:`BackgroundBuild`. The build runs in a *separate process* (spawned): the kernel stays free
for other cells, and no numpy/OpenBLAS thread pool is shared with the user's own work (a build
thread in the kernel's process can hang the user's next BLAS call). The child builds the first
step's images into a collection (a provisional map), then adds the rest a step at a time (each
step a committed generation: its items are searchable as soon as it lands, placed on the
provisional map), and finally recomputes the map over everything (the embeddings come from the
cache, so this costs only the index and the projection). Cancelling stops the child; every
committed step stays, and the encoded shards are cached, so running the same ``explore`` again
resumes where it stopped.
"""

from __future__ import annotations

import asyncio
import logging
import math
import multiprocessing as mp
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import traitlets

_log = logging.getLogger(__name__)
DONE_FILE = "background-build.json"  # written when the final map of a source is done
POLL_S = 0.5
STEPS = 20  # a build lands in about this many steps...
MIN_STEP = 64  # ...of at least this many images
# Seconds the child waits after each landed step: 0 for users; a demo or a browser test sets it
# so that a tiny build on an idle machine still leaves time to watch it fill in and cancel it.
STEP_PAUSE_S = 0.0


class BackgroundBuild:
    """One collection build in a child process, with progress, an ETA and cancelling.

    Args:
        source: What :meth:`Collection.build` accepts (chunked when its items have paths).
        model: Model registry name (a name: it crosses to the child process).
        out: The collection folder.
        on_update: Called in the kernel's thread with each status (see :attr:`status`) and,
            when a step has landed, the freshly opened collection.
        step: Images per step (default: about 1/20 of the source, at least 64).
    """

    def __init__(self, source: Any, model: str, out: Path,
                 on_update: Callable[[dict[str, Any], Any], None] | None = None, *,
                 step: int | None = None) -> None:
        self.out = Path(out)
        self.on_update = on_update
        context = mp.get_context("spawn")
        self._queue: Any = context.Queue()
        self._cancel = context.Event()
        self._process = context.Process(target=run_build, daemon=True, name="mclip-build",
                                        args=(source, model, str(self.out),
                                              (step, STEPS, MIN_STEP, STEP_PAUSE_S), self._queue,
                                              self._cancel))
        self.status: dict[str, Any] = {"state": "starting", "phase": "starting", "done": 0,
                                       "total": 0, "eta_s": None, "error": ""}
        """``state`` (starting, running, done, cancelled, failed), ``phase``, ``done`` and
        ``total`` images, ``eta_s`` (seconds, or None) and ``error``."""
        self._started = time.monotonic()
        self._first: tuple[float, int] | None = None  # (time, done) of the first report
        self._loop: asyncio.AbstractEventLoop | None = None
        self._notified: dict[str, Any] | None = None  # the status on_update last saw

    def start(self) -> BackgroundBuild:
        """Start the child and, inside a running event loop (a kernel), poll it from there."""
        self._process.start()
        try:
            self._loop = asyncio.get_running_loop()
        except RuntimeError:
            self._loop = None  # a plain script: call poll() or wait()
        if self._loop is not None:
            self._loop.call_later(POLL_S, self._tick)
        return self

    @property
    def finished(self) -> bool:
        """Whether the build ended (done, cancelled or failed)."""
        return self.status["state"] in ("done", "cancelled", "failed")

    def poll(self) -> None:
        """Apply the child's reports that have arrived (never blocks).

        Several steps that landed since the last poll open the collection once.
        """
        alive = self._process.is_alive()  # before draining: a last report is never missed
        landed = False
        while True:
            try:
                message = self._queue.get(timeout=0.5) if not alive else self._queue.get_nowait()
            except queue.Empty:
                break
            landed |= bool(message.get("landed"))
            self._apply(message, notify=False)
        if landed or self.status is not self._notified:
            self._apply({"landed": landed})
        if not self.finished and not alive:
            self._apply({"state": "failed", "phase": "stopped",
                         "error": f"the build process exited with code {self._process.exitcode}"})

    def wait(self, timeout: float = 600.0) -> dict[str, Any]:
        """Poll until the build ends; the final status."""
        deadline = time.monotonic() + timeout
        while not self.finished:
            if time.monotonic() > deadline:
                raise TimeoutError(f"the background build did not end within {timeout:.0f} s")
            self.poll()
            time.sleep(0.05)
        return self.status

    def cancel(self, grace_s: float = 5.0) -> None:
        """Stop the build; rerunning the same ``explore`` resumes it.

        The child stops after its current step, or is ended after ``grace_s`` (safe: commits
        and cache shards are atomic).
        """
        if self.finished:
            return
        self._cancel.set()
        self._process.join(grace_s)
        if self._process.is_alive():
            self._process.terminate()
            self._process.join(5)
        self.poll()
        if not self.finished:
            self._apply({"state": "cancelled", "phase": "cancelled"})

    # ------------------------------------------------------------------------- helpers
    def _tick(self) -> None:
        try:
            self.poll()
        except Exception:  # noqa: BLE001 - a failing update must not stop the polling
            _log.exception("background build: update failed")
        if not self.finished and self._loop is not None:
            self._loop.call_later(POLL_S, self._tick)

    def _apply(self, message: dict[str, Any], *, notify: bool = True) -> None:
        status = {**self.status, **{k: v for k, v in message.items() if k != "landed"}}
        now = time.monotonic()
        done, total = int(status["done"]), int(status["total"])
        if self._first is None and total:
            self._first = (now, done)
        status["eta_s"] = None
        if self._first is not None and done > self._first[1] and status["state"] == "running":
            rate = (done - self._first[1]) / max(now - self._first[0], 1e-3)
            status["eta_s"] = math.ceil((total - done) / rate)
        self.status = status
        if not notify:
            return
        self._notified = status
        coll = None
        if message.get("landed"):
            from mclip_explorer.collection import Collection

            coll = Collection.open(self.out)
        if self.on_update is not None:
            self.on_update(dict(status), coll)


def run_build(source: Any, model: str, out: str, step: tuple[int | None, int, int, float],
              reports: Any, cancel: Any) -> None:
    """The child process: build ``source`` into ``out`` step by step (see the module doc)."""
    try:
        _build_steps(source, model, Path(out), step, reports.put, cancel.is_set)
    except Exception as exc:  # noqa: BLE001 - reported to the widget, readably
        reports.put({"state": "failed", "phase": "failed", "error": f"{type(exc).__name__}: {exc}"})


def _build_steps(source: Any, model: str, out: Path, step: tuple[int | None, int, int, float],
                 report: Callable[[dict[str, Any]], None], cancelled: Callable[[], bool]) -> None:
    import json

    from mclip_explorer.collection import Collection
    from mclip_explorer.collection.sources import read_source
    from mclip_explorer.collection.store import MANIFEST, save_json

    frame = read_source(source).frame
    total = len(frame)
    chunked = bool(frame["path"].notna().all())
    done_file = out / DONE_FILE
    coll = None
    resumed = (out / MANIFEST).is_file()
    if resumed:  # keep what landed, add the rest
        coll = Collection.open(out, model=model)
        have = set(coll.items["path"].dropna())
        todo = frame[~frame["path"].isin(have)] if chunked else frame.iloc[:0]
    else:
        todo = frame
    size = step[0] or max(step[2], math.ceil(total / step[1]))
    pieces = [todo.iloc[a:a + size] for a in range(0, len(todo), size)] if chunked else [todo]
    report({"state": "running", "phase": "encoding", "done": total - len(todo), "total": total})
    for piece in pieces:
        if cancelled():
            report({"state": "cancelled", "phase": "cancelled"})
            return
        if coll is None:
            coll = Collection.build(piece if chunked else source, model=model, out=out,
                                    progress=False)
        else:
            coll.add(piece, progress=False)
        report({"state": "running", "phase": "encoding", "done": len(coll.items), "total": total,
                "landed": True})
        if step[3]:
            time.sleep(step[3])
    previous = json.loads(done_file.read_text()) if done_file.is_file() else {}
    # One piece built from scratch already has the final map; otherwise it is provisional.
    if (len(pieces) > 1 or (resumed and (pieces or previous.get("items") != total))):
        if cancelled():
            report({"state": "cancelled", "phase": "cancelled"})
            return
        report({"state": "running", "phase": "computing the final map", "done": total,
                "total": total})
        # Every embedding is cached by now: this recomputes only the index and the map.
        Collection.build(source, model=model, out=out, progress=False)
    save_json(done_file, {"items": total})
    report({"state": "done", "phase": "done", "done": total, "total": total, "landed": True})


class PendingCollection:
    """Stands in for a collection whose first step has not landed yet: no items, no map."""

    def __init__(self, model_name: str) -> None:
        import numpy as np
        import pandas as pd

        self.model_name = model_name
        self.items = pd.DataFrame({"id": pd.Series(dtype="int64"), "kind": pd.Series(dtype=str),
                                   "path": pd.Series(dtype=object),
                                   "title": pd.Series(dtype=object)})
        self.coords = np.empty((0, 2), np.float32)

    def __getattr__(self, name: str) -> Any:
        from mclip_explorer.errors import CollectionError

        raise CollectionError("nothing is searchable yet: the first images are being encoded")


class BuildStatus(traitlets.HasTraits):
    """The widget's side of a background build (mixed into ``ExplorerWidget``)."""

    _build = traitlets.Dict().tag(sync=True)  # {} when no build runs; else BackgroundBuild.status
    build: BackgroundBuild | None = None
    """The background build feeding this widget, if any (``widget.build.cancel()``)."""

    if TYPE_CHECKING:
        def _reload(self, collection: Any) -> None: ...
        def _show_error(self, message: str) -> None: ...

    def _follow(self, build: BackgroundBuild) -> None:
        """Show ``build``'s progress and each collection state it lands."""
        self.build = build
        build.on_update = self._build_update
        self._build = dict(build.status)

    def _build_update(self, status: dict[str, Any], coll: Any) -> None:
        if coll is not None:
            self._reload(coll)
        self._build = status
        if status["state"] == "failed":
            self._show_error(f"the background build failed: {status['error']}")

    def _cancel_build(self, _rid: int, _content: dict[str, Any],
                      _buffers: list[Any]) -> tuple[dict[str, Any], list[Any]]:
        if self.build is not None:
            self.build.cancel()
        return {}, []
