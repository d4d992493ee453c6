// Wiring of the analysis views (mclip_explorer/widget_views.py): the modality-gap layouts, the
// language lanes (drawn as ordinary queries) and the duplicates/hubs panel.
import type { AnyModel } from "@anywidget/types";
import { idsToView, toFloat32 } from "./codecs.ts";
import type { LodView } from "./lod.ts";
import type { ExplorerMap, Points } from "./map.ts";
import type { MapView, Model } from "./model.ts";
import {
  type Panel, type Pinned, parseLanes, parsePanel, pinnedRow, renderLanes, renderPanel,
} from "./panels.ts";
import { type QueryStore, relocate } from "./queries.ts";
import type { Ui } from "./ui.ts";

export interface ViewsContext {
  model: AnyModel<Model>;
  ui: Ui;
  map: ExplorerMap;
  points(): Points; // the collection's own layout (all points, without level of detail)
  store: QueryStore;
  lod(): LodView | null; // level of detail: layouts are fetched by viewport
  hasText: boolean; // the gap layouts are offered only then
  redraw(): Promise<void>; // points, colours, highlight and selection
  refresh(): Promise<void>; // queries on the map and the gallery
  pin(row: Pinned | null): void; // a panel row shown in the gallery
  forget(label: string): void; // a query removed in the front end
  busy(note: string): void; // "" when done
}

/** The positions of one layout, or null while its coordinates have not arrived yet. */
export function layoutOf(view: MapView, points: Points, gap: Float32Array):
  { x: Float32Array; y: Float32Array } | null {
  if (view === "map") return { x: points.x, y: points.y };
  const n = points.ids.length;
  if (gap.length !== 4 * n) return null;
  const off = view === "gap" ? 0 : 2;
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = gap[4 * i + off];
    y[i] = gap[4 * i + off + 1];
  }
  return { x, y };
}

export function wireViews(ctx: ViewsContext): { start(): Promise<void>; dispose(): void } {
  const { model, ui, map, store } = ctx;
  const viewLabel = ui.viewPicker.parentElement;
  // The gap needs text items; without them the toggle is not offered at all.
  if (viewLabel) viewLabel.hidden = !ctx.hasText;
  let laneQids: number[] = [];
  let panel: Panel | null = null;

  const applyView = async (): Promise<void> => {
    const view = model.get("map_view");
    ui.viewPicker.value = view;
    const locate = view === "map" ? null
      : (q: Parameters<typeof relocate>[0]) => relocate(q, (id) => map.position(id));
    const lod = ctx.lod();
    if (lod) {
      map.setLayoutName(view, locate);
      lod.request(null, 0); // the whole map in that layout, drawn when it arrives
      ui.map.dataset.view = view;
      return;
    }
    const layout = layoutOf(view, ctx.points(), toFloat32(model.get("_gap_coords")));
    if (!layout) {
      ctx.busy("computing the modality gap"); // drawn when _gap_coords arrives
      return;
    }
    map.setLayout(layout.x, layout.y, view, locate);
    await ctx.redraw();
    ui.map.dataset.view = view;
    ctx.busy("");
  };

  const colourOf = (label: string): string =>
    store.list.find((q) => q.label === label)?.colour ?? "#888";
  const dropLanes = (): void => {
    for (const qid of laneQids) {
      const gone = store.remove(qid);
      if (gone) ctx.forget(gone.label);
    }
    laneQids = [];
  };
  const applyLanes = async (): Promise<void> => {
    for (const qid of laneQids) store.remove(qid); // Python already dropped their results
    laneQids = [];
    const lanes = parseLanes(model.get("_lanes"));
    lanes?.langs.forEach((_, i) => {
      const a = i * lanes.per;
      const b = a + lanes.per;
      laneQids.push(store.add({
        label: lanes.labels[i], source: -1, x: lanes.where[2 * i], y: lanes.where[2 * i + 1],
        ids: lanes.ids.subarray(a, b), scores: lanes.scores.subarray(a, b),
        xy: lanes.xy.subarray(2 * a, 2 * b), titles: lanes.titles.slice(a, b),
      }).qid);
    });
    renderLanes(ui.lanes, lanes, colourOf, () => {
      dropLanes(); // their results leave Python too ("forget")
      model.set("_lanes", {}); // change:_lanes redraws without them
      model.save_changes();
    });
    await ctx.refresh();
  };

  const closePanel = (): void => {
    model.set("_panel", {}); // change:_panel clears the panel and the gallery row
    model.save_changes();
  };
  const applyPanel = (): void => {
    panel = parsePanel(model.get("_panel"));
    ctx.pin(null);
    renderPanel(ui.panel, panel, (i) => {
      if (!panel) return;
      const row = pinnedRow(panel, i);
      // The existing highlight trait: rings on the map, and Python sees widget.highlighted_ids.
      model.set("highlighted_ids", idsToView(row.ids));
      model.save_changes();
      ctx.pin(row);
    }, closePanel);
  };

  const onPick = (): void => {
    model.set("map_view", ui.viewPicker.value as MapView);
    model.save_changes();
  };
  const onView = (): void => void applyView();
  const onLanes = (): void => void applyLanes();
  ui.viewPicker.addEventListener("change", onPick);
  model.on("change:map_view", onView);
  model.on("change:_gap_coords", onView);
  model.on("change:_lanes", onLanes);
  model.on("change:_panel", applyPanel);
  return {
    async start() {
      if (model.get("map_view") !== "map") await applyView();
      applyPanel();
      await applyLanes();
    },
    dispose() {
      ui.viewPicker.removeEventListener("change", onPick);
      for (const [event, fn] of [["change:map_view", onView], ["change:_gap_coords", onView],
        ["change:_lanes", onLanes], ["change:_panel", applyPanel]] as const) model.off(event, fn);
    },
  };
}
