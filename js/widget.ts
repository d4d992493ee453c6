// Wiring only: traits and DOM events in, calls into the small modules out.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { toFloat32, toUint32, toUint8 } from "./codecs.ts";
import { DragToggle } from "./dragmode.ts";
import { Gallery } from "./gallery.ts";
import { type Detail, LodView } from "./lod.ts";
import { ExplorerMap, type Points } from "./map.ts";
import { readMapData } from "./mapdata.ts";
import { BuildProgress } from "./progress.ts";
import type { Model } from "./model.ts";
import { QueryStore } from "./queries.ts";
import { Rpc } from "./rpc.ts";
import { type Query, search } from "./search.ts";
import css from "./styles.css";
import type { Shape } from "./shapes.ts";
import { ThumbCache } from "./thumbs.ts";
import type { Pinned } from "./panels.ts";
import { Tooltip } from "./tooltip.ts";
import { buildUi, fillPicker, setBusy, showError, showPending } from "./ui.ts";
import { wireViews } from "./views.ts";

function render({ model, el }: RenderProps<Model>): () => void {
  const ui = buildUi(el, css);
  let data = readMapData(model);
  let base = data.summary;
  const rpc = new Rpc(model, (n, note) => setBusy(ui, n, note, base));
  setBusy(ui, 1, "drawing the map", base);
  const thumbs = new ThumbCache(rpc, () => model.get("thumb_size"));
  const tooltip = new Tooltip(ui.tooltip, rpc, thumbs);
  const store = new QueryStore();
  const waiting: string[] = [];
  let pinned: Pinned | null = null; // a duplicates/hubs row shown above the queries

  const refresh = async (): Promise<void> => {
    // The map's shapes and the gallery's thumbnails are drawn side by side.
    await Promise.all([map.setQueries(store.list), gallery.render(store.list, pinned)]);
  };
  const run = async (query: Query): Promise<void> => {
    const label = "text" in query ? query.text : `item ${query.id}`;
    waiting.push(label);
    showPending(ui, waiting);
    try {
      performance.mark("mx:query");
      const found = await search(rpc, query, model.get("k"), model.get("thumb_size"));
      found.thumbs.forEach((image, i) => {
        if (image.byteLength) thumbs.put(found.result.ids[i], image);
      });
      store.add(found.result);
      lod?.refresh(); // its hits become real, hoverable points at any zoom
      performance.mark("mx:reply");
      await refresh();
      performance.mark("mx:painted");
    } catch (error) {
      showError(ui, error instanceof Error ? error.message : String(error));
    } finally {
      waiting.splice(waiting.indexOf(label), 1);
      showPending(ui, waiting);
    }
  };
  const removeQuery = (qid: number): void => {
    const gone = store.remove(qid);
    if (gone) model.send({ rid: 0, op: "forget", label: gone.label });
    void refresh();
  };

  const map = new ExplorerMap(ui.map, data.points, {
    onClick: (id) => void run({ id }),
    onHover: (id, event) => tooltip.show(id, event),
    onUnhover: () => tooltip.hide(),
    onSelect: (shape, final) => void select(shape, final),
    onView: (range) => {
      ui.map.dataset.viewAt = String(Date.now()); // epoch ms, read by bench/widget.py
      lod?.request(range);
    },
    onDragMode: (mode) => drag.set(mode),
  });
  let colours = { codes: data.codes, opacity: data.opacity };
  const draw = (): Promise<void> => map.draw(colours.codes, model.get("_color_labels"), colours.opacity);
  // New points for the map: appended (extendTraces) when they only add to what is drawn.
  const show = (points: Points): Promise<void> =>
    map.show(points, colours.codes, model.get("_color_labels"), colours.opacity);
  const showDetail = async (detail: Detail): Promise<void> => {
    map.setDensity(detail.density, !detail.complete);
    colours = { codes: detail.codes, opacity: detail.opacity };
    ui.map.dataset.complete = String(detail.complete);
    ui.map.dataset.shown = String(detail.points.ids.length);
    await show(detail.points);
    ui.map.dataset.detailAt = String(Date.now()); // epoch ms, read by bench/widget.py
  };
  let lod: LodView | null = null;
  // The map's data, at load and whenever the kernel sends another state of the collection
  // (a background build's new step): level of detail on or off, points, density, colours.
  const applyData = (): void => {
    map.setMode(data.grid !== null);
    map.setDensity(data.grid, !data.complete);
    ui.map.dataset.complete = String(data.complete);
    ui.map.dataset.lod = String(data.grid !== null); // level of detail on (read by the bench)
    colours = { codes: data.codes, opacity: data.opacity };
    if (data.grid && !lod) {
      lod = new LodView(rpc, () => model.get("map_view"), showDetail, (m) => showError(ui, m),
        (fetching) => { ui.map.dataset.fetching = String(fetching); });
    }
    if (!data.grid && lod) {
      lod.dispose();
      lod = null;
    }
    if (data.grid && lod) lod.setWhole(data.grid); // the state carries the whole map's sample
  };
  applyData();
  map.setPoints(data.points);
  // Box and lasso go to the kernel, which selects over every point and sets selected_ids.
  const select = async (shape: Shape | null, final: boolean): Promise<void> => {
    try {
      const payload = shape ? { shape: shape.kind, layout: model.get("map_view"), final } : { shape: "none" };
      const buffers = shape ? [new DataView(shape.values.buffer)] : [];
      await rpc.request("select", payload, buffers, "selecting", 60_000, !final);
    } catch (error) {
      showError(ui, error instanceof Error ? error.message : String(error));
    }
  };
  const drag = new DragToggle(ui.drag, (mode) => void map.setDragMode(mode));
  const gallery = new Gallery(ui.gallery, thumbs, {
    onPick: (id) => void run({ id }),
    onRemove: removeQuery,
  });

  // Highlight and selection are drawn with the points, in the same render.
  void map.setOverlay("highlight", toUint32(model.get("highlighted_ids")));
  void map.setOverlay("selection", toUint32(model.get("selected_ids")));
  const recolour = async (): Promise<void> => {
    if (lod) {
      lod.refresh(); // the viewport's points come back with their new colours
      return;
    }
    colours = { codes: toUint8(model.get("_color_codes")), opacity: toFloat32(model.get("_color_opacity")) };
    await draw();
  };
  const onError = (): void => showError(ui, model.get("error"));
  const onHighlight = (): void => {
    void map.setOverlay("highlight", toUint32(model.get("highlighted_ids")));
    lod?.refresh(); // highlighted items become drawn points
  };
  const onSelection = (): void => {
    void map.setOverlay("selection", toUint32(model.get("selected_ids")));
    lod?.refresh(100);
  };
  // Codes, labels and opacity arrive together but fire one event each (and any one may be the
  // only one that changed); a background build's step sends new points with their colours in
  // the same message: one update per batch.
  let queued: { data: boolean } | null = null;
  const schedule = (withData: boolean): void => {
    if (queued) {
      queued.data ||= withData;
      return;
    }
    queued = { data: withData };
    queueMicrotask(() => {
      const dataChanged = queued?.data ?? false;
      queued = null;
      if (!dataChanged) {
        void recolour();
        return;
      }
      data = readMapData(model);
      base = data.summary;
      applyData();
      setBusy(ui, 0, "", base);
      void show(data.points); // a step that only placed new items: appended
    });
  };
  const onColours = (): void => schedule(false);
  const onMapData = (): void => schedule(true);
  const progress = new BuildProgress(ui.root.querySelector(".mx-bar") ?? ui.map, () => {
    rpc.request("cancel_build", {}, [], "cancelling the build", 60_000)
      .catch((error: unknown) => showError(ui, String(error)));
  });
  const onBuild = (): void => progress.show(model.get("_build"));
  onBuild();
  const onColumns = (): void => fillPicker(ui.picker, model.get("color_columns"), model.get("color_by"));

  const views = wireViews({
    model, ui, map, store, redraw: recolour, refresh,
    points: () => data.points,
    lod: () => lod,
    hasText: (() => { const s = model.get("_lod"); return "total" in s ? s.has_text : data.points.kinds.some((k) => k === 1); })(),
    pin: (row) => {
      pinned = row;
      void refresh();
    },
    forget: (label) => model.send({ rid: 0, op: "forget", label }),
    busy: (note) => setBusy(ui, note ? 1 : 0, note, base),
  });

  ui.input.addEventListener("keydown", (event) => {
    const text = ui.input.value.trim();
    if (event.key !== "Enter" || event.isComposing || !text) return;
    ui.input.select(); // keep the text: easy to edit into the next language
    void run({ text });
  });
  ui.picker.addEventListener("change", () => {
    model.set("color_by", ui.picker.value);
    model.save_changes();
  });
  model.on("change:error", onError);
  model.on("change:highlighted_ids", onHighlight);
  model.on("change:selected_ids", onSelection);
  model.on("change:_color_codes", onColours);
  model.on("change:_color_labels", onColours);
  model.on("change:_color_opacity", onColours);
  model.on("change:color_by", onColumns);
  model.on("change:color_columns", onColumns); // a new colour column (zero-shot, values)
  model.on("change:_ids", onMapData);
  model.on("change:_build", onBuild);
  onColumns();
  onError();
  const resize = new ResizeObserver(() => map.resize());
  resize.observe(ui.map);
  void draw() // the one render at load: points, colours, highlight and selection together
    .then(() => views.start())
    .then(() => {
      ui.map.dataset.rendersAtReady = ui.map.dataset.renders; // one at load (browser tests)
      ui.map.dataset.ready = "true";
      ui.map.dataset.readyAt = String(Date.now()); // epoch ms, read by bench/widget.py
      setBusy(ui, 0, "", base);
    })
    .catch((error: unknown) => showError(ui, `the map could not be drawn: ${String(error)}`));

  return () => {
    resize.disconnect();
    views.dispose();
    for (const [event, fn] of [["change:error", onError], ["change:highlighted_ids", onHighlight],
      ["change:selected_ids", onSelection], ["change:_color_codes", onColours],
      ["change:_color_labels", onColours], ["change:_color_opacity", onColours],
      ["change:color_by", onColumns], ["change:color_columns", onColumns],
      ["change:_ids", onMapData], ["change:_build", onBuild]] as const) {
      (model as AnyModel<Model>).off(event, fn);
    }
    lod?.dispose();
    rpc.dispose();
    thumbs.dispose();
    map.destroy();
  };
}

export default { render };
