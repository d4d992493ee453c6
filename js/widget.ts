// Wiring only: traits and DOM events in, calls into the small modules out.
import type { AnyModel, RenderProps } from "@anywidget/types";
import { deinterleave, idsToView, toFloat32, toUint32, toUint8 } from "./codecs.ts";
import { DragToggle } from "./dragmode.ts";
import { Gallery } from "./gallery.ts";
import { ExplorerMap } from "./map.ts";
import type { Model } from "./model.ts";
import { QueryStore } from "./queries.ts";
import { Rpc } from "./rpc.ts";
import { type Query, search } from "./search.ts";
import css from "./styles.css";
import { ThumbCache } from "./thumbs.ts";
import type { Pinned } from "./panels.ts";
import { Tooltip } from "./tooltip.ts";
import { buildUi, fillPicker, setBusy, showError, showPending } from "./ui.ts";
import { wireViews } from "./views.ts";

function render({ model, el }: RenderProps<Model>): () => void {
  const ui = buildUi(el, css);
  const xy = deinterleave(toFloat32(model.get("_coords")));
  const points = { ...xy, ids: toUint32(model.get("_ids")), kinds: toUint8(model.get("_kinds")) };
  const base = `${points.ids.length.toLocaleString()} points · ${model.get("model_name")}`;
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

  const map = new ExplorerMap(ui.map, points, {
    onClick: (id) => void run({ id }),
    onHover: (id, event) => tooltip.show(id, event),
    onUnhover: () => tooltip.hide(),
    onSelect: (ids) => {
      model.set("selected_ids", idsToView(ids));
      model.save_changes();
    },
    onDragMode: (mode) => drag.set(mode),
  });
  const drag = new DragToggle(ui.drag, (mode) => void map.setDragMode(mode));
  const gallery = new Gallery(ui.gallery, thumbs, {
    onPick: (id) => void run({ id }),
    onRemove: removeQuery,
  });

  const recolour = async (): Promise<void> => {
    await map.draw(toUint8(model.get("_color_codes")), model.get("_color_labels"),
      toFloat32(model.get("_color_opacity")));
    await map.setOverlay("highlight", toUint32(model.get("highlighted_ids")));
    await map.setOverlay("selection", toUint32(model.get("selected_ids")));
  };
  const onError = (): void => showError(ui, model.get("error"));
  const onHighlight = (): void => void map.setOverlay("highlight", toUint32(model.get("highlighted_ids")));
  const onSelection = (): void => void map.setOverlay("selection", toUint32(model.get("selected_ids")));
  // Codes, labels and opacity arrive together but fire one event each (and any one may be the
  // only one that changed): redraw once per batch.
  let recolourQueued = false;
  const onColours = (): void => {
    if (recolourQueued) return;
    recolourQueued = true;
    queueMicrotask(() => {
      recolourQueued = false;
      void recolour();
    });
  };
  const onColumns = (): void => fillPicker(ui.picker, model.get("color_columns"), model.get("color_by"));

  const views = wireViews({
    model, ui, map, points, store, redraw: recolour, refresh,
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
  onColumns();
  onError();
  const resize = new ResizeObserver(() => map.resize());
  resize.observe(ui.map);
  void recolour()
    .then(() => views.start())
    .then(() => {
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
      ["change:color_by", onColumns], ["change:color_columns", onColumns]] as const) {
      (model as AnyModel<Model>).off(event, fn);
    }
    rpc.dispose();
    thumbs.dispose();
    map.destroy();
  };
}

export default { render };
