// The plotly scattergl map: one trace per colour category (so the legend works), a text-item
// trace and two overlay traces (highlight, selection). Queries go on a separate layer
// (overlay.ts) so adding one never re-renders the points.
import Plotly, { type PlotlyHTMLElement } from "plotly.js-gl2d-dist-min";
import { type Locator, QueryOverlay, viewOf } from "./overlay.ts";
import type { QueryResult } from "./queries.ts";
import { DEFAULT_DRAG_MODE, type DragMode, dragModeOf } from "./dragmode.ts";
import { idsInBox, idsInLasso } from "./selection.ts";

export interface Points {
  x: Float32Array;
  y: Float32Array;
  ids: Uint32Array;
  kinds: Uint8Array; // 1 = text item
}

export interface MapHandlers {
  onClick(id: number): void;
  onHover(id: number, event: MouseEvent): void;
  onUnhover(): void;
  onSelect(ids: Uint32Array, final: boolean): void;
  onDragMode?(mode: DragMode): void; // the mode changed (e.g. through plotly's modebar)
}

export const CATEGORY_COLOURS = [
  "#4e79a7", "#f28e2b", "#59a14f", "#e15759", "#76b7b2", "#edc948", "#b07aa1", "#ff9da7",
  "#9c755f", "#bab0ac", "#1b9e77", "#d95f02", "#7570b3", "#e7298a", "#66a61e", "#a6761d",
];

/** Point indices of each colour category (image items only) and of the text items. */
export function groupByCode(kinds: Uint8Array, codes: Uint8Array, nLabels: number) {
  const counts = new Uint32Array(nLabels + 1);
  for (let i = 0; i < kinds.length; i++) counts[kinds[i] ? nLabels : Math.min(codes[i], nLabels - 1)]++;
  const groups = Array.from(counts, (c) => new Uint32Array(c));
  const fill = new Uint32Array(nLabels + 1);
  for (let i = 0; i < kinds.length; i++) {
    const g = kinds[i] ? nLabels : Math.min(codes[i], nLabels - 1);
    groups[g][fill[g]++] = i;
  }
  return { categories: groups.slice(0, nLabels), text: groups[nLabels] };
}

/** A category named after a CSS colour ("red", "navy") is drawn in it; others get the palette. */
export function categoryColour(label: string, index: number): string {
  const named = /^[a-z]{3,20}$/i.test(label) && typeof CSS !== "undefined" && CSS.supports("color", label);
  return named ? label.toLowerCase() : CATEGORY_COLOURS[index % CATEGORY_COLOURS.length];
}

function pick(values: Float32Array, index: Uint32Array): Float32Array {
  const out = new Float32Array(index.length);
  for (let i = 0; i < index.length; i++) out[i] = values[index[i]];
  return out;
}

function markerSize(n: number): number {
  return n < 2_000 ? 8 : n < 50_000 ? 5 : n < 300_000 ? 3 : 2;
}

export class ExplorerMap {
  private gd: PlotlyHTMLElement | null = null;
  private traceIndex: (Uint32Array | null)[] = [];
  private traces: object[] = [];
  private readonly rowOf: Int32Array; // item id -> point index (-1: not on the map)
  private overlays = { highlight: -1, selection: -1 };
  private layout: Record<string, unknown>;
  private selectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly overlay: QueryOverlay;

  constructor(
    private readonly el: HTMLElement,
    private points: Points,
    private readonly handlers: MapHandlers,
  ) {
    this.overlay = new QueryOverlay(el.parentElement ?? el);
    let maxId = 0;
    for (const id of points.ids) maxId = Math.max(maxId, id);
    this.rowOf = new Int32Array(maxId + 1).fill(-1);
    points.ids.forEach((id, i) => {
      this.rowOf[id] = i;
    });
    this.layout = {
      margin: { l: 30, r: 10, t: 10, b: 30 },
      dragmode: DEFAULT_DRAG_MODE,
      hovermode: "closest",
      uirevision: "keep", // keep zoom and pan across re-colouring
      legend: { itemsizing: "constant", bgcolor: "rgba(255,255,255,0.7)", y: 0.9, yanchor: "top" },
      xaxis: { showgrid: false, zeroline: false, showticklabels: false },
      yaxis: { showgrid: false, zeroline: false, showticklabels: false, scaleanchor: "x" },
      plot_bgcolor: "#fff",
    };
  }

  async draw(
    codes: Uint8Array, labels: string[], opacity: Float32Array = new Float32Array(0),
  ): Promise<void> {
    this.buildTraces(codes, labels, opacity);
    const config = { displaylogo: false, scrollZoom: true, responsive: true };
    if (!this.gd) {
      this.gd = await Plotly.newPlot(this.el, this.traces, this.layout, config);
      this.listen(this.gd);
    } else {
      await Plotly.react(this.el, this.traces, this.layout, config);
    }
    this.overlay.setView(viewOf(this.gd?._fullLayout, undefined));
  }

  /** What a drag on the map does from now on. */
  async setDragMode(mode: DragMode): Promise<void> {
    if (!this.gd) {
      this.layout.dragmode = mode;
      return;
    }
    // Not by writing this.layout first: it is the plot's own layout object, and relayout would
    // then see no change and leave the drag handlers in the old mode. relayout updates it too,
    // so later redraws keep the mode. Plotly keeps the last selection's outline, and a drag that
    // starts inside it moves the outline instead of drawing a new one; a fresh mode starts
    // without it (the selected points stay marked by the selection overlay).
    await Plotly.relayout(this.el, { dragmode: mode, selections: [] });
  }

  /** Item id -> map position, or null if the item is not on the map. */
  position(id: number): [number, number] | null {
    const i = id < this.rowOf.length ? this.rowOf[id] : -1;
    return i < 0 ? null : [this.points.x[i], this.points.y[i]];
  }

  async setOverlay(which: "highlight" | "selection", ids: Uint32Array): Promise<void> {
    if (!this.gd) return;
    const x: number[] = [];
    const y: number[] = [];
    for (const id of ids) {
      const p = this.position(id);
      if (p) {
        x.push(p[0]);
        y.push(p[1]);
      }
    }
    await Plotly.restyle(this.el, { x: [x], y: [y] }, [this.overlays[which]]);
  }

  async setQueries(queries: QueryResult[]): Promise<void> {
    this.overlay.setQueries(queries);
  }

  /** Move the points (another layout of the same ids); the next draw() shows it, autoranged. */
  setLayout(x: Float32Array, y: Float32Array, name: string, locate: Locator | null): void {
    this.points = { ...this.points, x, y };
    this.layout = { ...this.layout, uirevision: name }; // a new layout starts zoomed to fit
    this.overlay.setLocator(locate);
  }

  resize(): void {
    if (this.gd && this.el.isConnected) void Plotly.Plots.resize(this.el);
  }

  destroy(): void {
    clearTimeout(this.selectTimer);
    if (this.gd) Plotly.purge(this.el);
    this.gd = null;
  }

  private buildTraces(codes: Uint8Array, labels: string[], opacity: Float32Array): void {
    const { x, y, kinds } = this.points;
    const n = labels.length || 1;
    const groups = groupByCode(kinds, codes, n);
    const size = markerSize(x.length);
    const base = { type: "scattergl", mode: "markers", hoverinfo: "none" };
    // A thin outline keeps light categories (e.g. "white") visible on the white background.
    const outline = { color: "rgba(0,0,0,0.35)", width: size >= 5 ? 0.6 : 0 };
    this.traces = [];
    this.traceIndex = [];
    groups.categories.forEach((index, c) => {
      if (!index.length) return;
      this.traces.push({ ...base, name: labels[c] ?? "items", x: pick(x, index), y: pick(y, index),
        marker: { size, color: categoryColour(labels[c] ?? "", c),
          opacity: opacity.length === x.length ? pick(opacity, index) : 0.8,
          line: outline } });
      this.traceIndex.push(index);
    });
    if (groups.text.length) {
      this.traces.push({ ...base, name: "text items", x: pick(x, groups.text),
        y: pick(y, groups.text), marker: { size: size + 4, symbol: "diamond", color: "#333",
          opacity: 0.85, line: { color: "#fff", width: 1 } } });
      this.traceIndex.push(groups.text);
    }
    const overlay = { type: "scattergl", mode: "markers", hoverinfo: "skip", showlegend: false,
      x: [] as number[], y: [] as number[] };
    this.overlays.highlight = this.traces.length;
    this.traces.push({ ...overlay, name: "highlighted",
      marker: { size: size + 10, symbol: "circle-open", color: "#000", line: { width: 2.5 } } });
    this.overlays.selection = this.traces.length;
    this.traces.push({ ...overlay, name: "selected",
      marker: { size: size + 5, symbol: "circle-open", color: "#ff00aa", line: { width: 1.5 } } });
    this.traceIndex.push(null, null);
  }

  private idOf(curve: number, pointNumber: number): number | null {
    const index = this.traceIndex[curve];
    return index ? this.points.ids[index[pointNumber]] : null;
  }

  private listen(gd: PlotlyHTMLElement): void {
    gd.on("plotly_click", (data) => {
      const p = data?.points?.[0];
      const id = p ? this.idOf(p.curveNumber, p.pointNumber) : null;
      if (id !== null) this.handlers.onClick(id);
    });
    gd.on("plotly_hover", (data) => {
      const p = data?.points?.[0];
      const id = p ? this.idOf(p.curveNumber, p.pointNumber) : null;
      if (id !== null && data.event) this.handlers.onHover(id, data.event as MouseEvent);
    });
    gd.on("plotly_unhover", () => this.handlers.onUnhover());
    // The query layer follows pans and zooms, during the drag and after it.
    gd.on("plotly_relayouting", (event) => this.overlay.setView(viewOf(gd._fullLayout, event)));
    gd.on("plotly_relayout", (update) => {
      this.overlay.setView(viewOf(gd._fullLayout, undefined));
      const mode = dragModeOf(update);
      if (mode) this.handlers.onDragMode?.(mode);
    });
    // Live while dragging (debounced), then once more, final, on release.
    gd.on("plotly_selecting", (data) => {
      clearTimeout(this.selectTimer);
      this.selectTimer = setTimeout(() => this.handlers.onSelect(this.covered(data), false), 250);
    });
    gd.on("plotly_selected", (data) => {
      clearTimeout(this.selectTimer);
      this.handlers.onSelect(this.covered(data), true);
    });
    gd.on("plotly_deselect", () => this.handlers.onSelect(new Uint32Array(0), true));
  }

  private covered(data: any): Uint32Array {
    const { x, y, ids } = this.points;
    if (data?.range?.x && data?.range?.y) return idsInBox(x, y, ids, data.range.x, data.range.y);
    if (data?.lassoPoints?.x) return idsInLasso(x, y, ids, data.lassoPoints.x, data.lassoPoints.y);
    return new Uint32Array(0);
  }
}
