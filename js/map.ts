// The plotly scattergl map: one trace per colour category (so the legend works), a text-item
// trace and two overlay traces (highlight, selection), in level-of-detail mode always all of them
// in that order so Plotly.react updates them in place, over a density image (layout image). New
// points that only add to the drawn ones are appended with Plotly.extendTraces (extend.ts).
// Queries go on a separate layer (overlay.ts) so adding one never re-renders the points. Every
// render is counted in the element's data-renders (read by the browser tests).
import Plotly, { type PlotlyHTMLElement } from "plotly.js-gl2d-dist-min";
import { type DensityGrid, densityImage, type Range } from "./lod.ts";
import { type Locator, QueryOverlay, viewOf } from "./overlay.ts";
import type { QueryResult } from "./queries.ts";
import { DEFAULT_DRAG_MODE, type DragMode, dragModeOf } from "./dragmode.ts";
import { additionOf, type Styled } from "./extend.ts";
import { categoryColour, groupByCode, markerSize, pick, pickBytes } from "./traces.ts";
import { type Shape, shapeOf } from "./shapes.ts";

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
  onSelect(shape: Shape | null, final: boolean): void; // null: cleared
  onView?(range: Range | null): void; // after a pan or zoom; null: back to the whole map
  onDragMode?(mode: DragMode): void; // the mode changed (e.g. through plotly's modebar)
}

export class ExplorerMap {
  private gd: PlotlyHTMLElement | null = null;
  private traceIndex: (Uint32Array | null)[] = [];
  private traceOf = { categories: [] as number[], text: -1 }; // trace of each category (-1: none)
  // What the last full draw showed (extendTraces appends to it): points, colours, legend, size.
  private drawn: { style: Styled; labels: string; size: number; images: string } | null = null;
  private extended = 0;
  private traces: object[] = [];
  private rowOf = new Int32Array(0); // item id -> point index (-1: not on the map)
  private lod = false; // level of detail: a density image, and every category's trace kept
  private overlays = { highlight: -1, selection: -1 };
  private marked: Record<"highlight" | "selection", Uint32Array> = {
    highlight: new Uint32Array(0), selection: new Uint32Array(0) };
  private drawnSize = "";
  private renders = 0;
  private layout: Record<string, unknown>;
  private selectTimer: ReturnType<typeof setTimeout> | undefined;
  private readonly overlay: QueryOverlay;

  constructor(
    private readonly el: HTMLElement,
    private points: Points,
    private readonly handlers: MapHandlers,
  ) {
    this.overlay = new QueryOverlay(el.parentElement ?? el);
    this.index(points, true);
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
    this.counted();
    if (!this.gd) {
      this.gd = await Plotly.newPlot(this.el, this.traces, this.layout, config);
      this.listen(this.gd);
    } else {
      await Plotly.react(this.el, this.traces, this.layout, config);
    }
    this.drawn = { style: { points: this.points, codes, opacity }, labels: labels.join("\n"),
      size: markerSize(this.points.x.length), images: imagesKey(this.layout.images) };
    this.drawnSize = this.size();
    this.overlay.setView(viewOf(this.gd?._fullLayout, undefined));
  }

  /** Show another set of points (a viewport's, a background build's step). When it only adds
   * points to what is drawn (same legend, marker size, and every drawn point unchanged), they are
   * appended with one Plotly.extendTraces (none at all when nothing is new); else one draw(). */
  async show(
    points: Points, codes: Uint8Array, labels: string[], opacity: Float32Array = new Float32Array(0),
  ): Promise<void> {
    try {
      if (await this.extendWith({ points, codes, opacity }, labels)) return;
    } catch {
      // plotly refused the append (it checks array types): the full draw below shows the same.
    }
    this.setPoints(points);
    await this.draw(codes, labels, opacity);
  }

  /** Level of detail on or off (the kernel decides by the map's size). */
  setMode(lod: boolean): void {
    this.lod = lod;
  }

  /** Swap in another set of points (level of detail); the next draw() shows them. */
  setPoints(points: Points): void {
    this.index(this.points, false);
    this.points = points;
    this.index(points, true);
  }

  /** The density layer (level of detail) and whether it is shown under the points. */
  setDensity(grid: DensityGrid | null, shown = true): void {
    const images = grid && shown ? [densityImage(grid)] : [];
    this.layout = { ...this.layout, images };
  }

  /** The range shown now, or null before the first draw. */
  view(): Range | null {
    const v = viewOf(this.gd?._fullLayout, undefined);
    return v ? { x: v.x, y: v.y } : null;
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
    this.counted();
    await Plotly.relayout(this.el, { dragmode: mode, selections: [] });
  }

  /** Item id -> map position, or null if the item is not on the map. */
  position(id: number): [number, number] | null {
    const i = id < this.rowOf.length ? this.rowOf[id] : -1;
    return i < 0 ? null : [this.points.x[i], this.points.y[i]];
  }

  /** Ring markers on ids (the ones drawn now); before the first draw only remembered. */
  async setOverlay(which: "highlight" | "selection", ids: Uint32Array): Promise<void> {
    this.marked[which] = ids;
    if (!this.gd) return;
    const { x, y } = this.positions(ids);
    this.counted();
    await Plotly.restyle(this.el, { x: [x], y: [y] }, [this.overlays[which]]);
  }

  async setQueries(queries: QueryResult[]): Promise<void> {
    this.overlay.setQueries(queries);
  }

  /** Move the points (another layout of the same ids); the next draw() shows it, autoranged. */
  setLayout(x: Float32Array, y: Float32Array, name: string, locate: Locator | null): void {
    this.points = { ...this.points, x, y };
    this.setLayoutName(name, locate);
  }

  /** Name the layout shown (a new one starts zoomed to fit) and where queries are drawn. */
  setLayoutName(name: string, locate: Locator | null): void {
    this.layout = { ...this.layout, uirevision: name };
    this.overlay.setLocator(locate);
  }

  resize(): void {
    // The observer's first call (and any that does not change the size) costs no render.
    if (!this.gd || !this.el.isConnected || this.size() === this.drawnSize) return;
    this.drawnSize = this.size();
    this.counted();
    void Plotly.Plots.resize(this.el);
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
    this.traceOf = { categories: groups.categories.map(() => -1), text: -1 };
    groups.categories.forEach((index, c) => {
      // Level of detail keeps every category (empty or not): a stable trace order.
      if (!index.length && !this.lod) return;
      this.traceOf.categories[c] = this.traces.length;
      this.traces.push({ ...base, name: labels[c] ?? "items", x: pick(x, index), y: pick(y, index),
        marker: { size, color: categoryColour(labels[c] ?? "", c),
          opacity: opacity.length === x.length ? pick(opacity, index) : 0.8,
          line: outline } });
      this.traceIndex.push(index);
    });
    if (groups.text.length) {
      this.traceOf.text = this.traces.length;
      this.traces.push({ ...base, name: "text items", x: pick(x, groups.text),
        y: pick(y, groups.text), marker: { size: size + 4, symbol: "diamond", color: "#333",
          opacity: 0.85, line: { color: "#fff", width: 1 } } });
      this.traceIndex.push(groups.text);
    }
    const overlay = { type: "scattergl", mode: "markers", hoverinfo: "skip", showlegend: false };
    this.overlays.highlight = this.traces.length;
    this.traces.push({ ...overlay, name: "highlighted", ...this.positions(this.marked.highlight),
      marker: { size: size + 10, symbol: "circle-open", color: "#000", line: { width: 2.5 } } });
    this.overlays.selection = this.traces.length;
    this.traces.push({ ...overlay, name: "selected", ...this.positions(this.marked.selection),
      marker: { size: size + 5, symbol: "circle-open", color: "#ff00aa", line: { width: 1.5 } } });
    this.traceIndex.push(null, null);
  }

  private async extendWith(next: Styled, labels: string[]): Promise<boolean> {
    const drawn = this.drawn;
    if (!this.gd || !drawn || drawn.style.points !== this.points || drawn.labels !== labels.join("\n")
      || drawn.size !== markerSize(next.points.x.length)) return false;
    const plan = additionOf(drawn.style, next, (id) => (id < this.rowOf.length ? this.rowOf[id] : -1));
    if (!plan) return false;
    const { added } = plan;
    const { x, y } = next.points;
    const perPoint = next.opacity.length > 0 && next.opacity.length === x.length; // as buildTraces
    const groups = groupByCode(pickBytes(next.points.kinds, added), pickBytes(next.codes, added),
      labels.length || 1);
    const traces: number[] = [];
    const update: Record<"x" | "y" | "marker.opacity", (Float32Array | number[])[]> = {
      x: [], y: [], "marker.opacity": [] };
    const grown = new Map<number, Uint32Array>(); // trace -> its added point indices (in next)
    const members = [...groups.categories.map((g, c) => [this.traceOf.categories[c] ?? -1, g] as const),
      [this.traceOf.text, groups.text] as const];
    for (const [trace, group] of members) {
      if (!group.length) continue;
      // A category without a trace yet, or a text item under per-point opacities: redraw.
      if (trace < 0 || (perPoint && trace === this.traceOf.text)) return false;
      const index = group.map((k) => added[k]);
      grown.set(trace, index);
      traces.push(trace);
      update.x.push(pick(x, index));
      update.y.push(pick(y, index));
      update["marker.opacity"].push(pick(next.opacity, index));
    }
    // Newly drawn items that are highlighted or selected get their rings in the same call.
    const addedAt = new Map<number, number>();
    for (const i of added) addedAt.set(next.points.ids[i], i);
    for (const which of ["highlight", "selection"] as const) {
      const at = [...this.marked[which]].flatMap((id) => addedAt.get(id) ?? []);
      if (!at.length) continue;
      if (perPoint) return false; // the ring traces have one opacity, not an array to extend
      traces.push(this.overlays[which]);
      update.x.push(at.map((i) => x[i]));
      update.y.push(at.map((i) => y[i]));
    }
    // Committed: the map now holds `next`, drawn as the old traces plus the added points.
    this.index(this.points, false);
    this.points = next.points;
    this.index(next.points, true);
    this.traceIndex = this.traceIndex.map((index, t) => {
      if (!index) return null;
      const more = grown.get(t) ?? new Uint32Array(0);
      const out = new Uint32Array(index.length + more.length);
      index.forEach((j, k) => { out[k] = plan.remap[j]; });
      out.set(more, index.length);
      return out;
    });
    const images = imagesKey(this.layout.images);
    this.drawn = { ...drawn, style: next, images };
    if (!traces.length && images === drawn.images) return true; // nothing new to draw
    this.counted();
    this.el.dataset.extends = String(++this.extended); // read by the browser tests
    if (!traces.length) {
      await Plotly.relayout(this.el, { images: this.layout.images });
      return true;
    }
    // The density image changes in the same render: extendTraces redraws from gd.layout.
    if (this.gd.layout) this.gd.layout.images = this.layout.images;
    if (!perPoint) delete (update as Partial<typeof update>)["marker.opacity"];
    await Plotly.extendTraces(this.el, update, traces);
    return true;
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
    gd.on("plotly_relayout", (event: Record<string, unknown>) => {
      this.overlay.setView(viewOf(gd._fullLayout, undefined));
      const mode = dragModeOf(event);
      if (mode) this.handlers.onDragMode?.(mode);
      // Only pans and zooms (not resizes or selections) change what level of detail shows.
      const keys = Object.keys(event ?? {});
      if (keys.some((k) => k.endsWith("autorange"))) this.handlers.onView?.(null);
      else if (keys.some((k) => k.includes("axis.range"))) this.handlers.onView?.(this.view());
    });
    // Live while dragging (debounced), then once more, final, on release.
    // The kernel computes who is inside, over every point (not only the drawn ones).
    gd.on("plotly_selecting", (data) => {
      clearTimeout(this.selectTimer);
      this.selectTimer = setTimeout(() => this.handlers.onSelect(shapeOf(data), false), 250);
    });
    gd.on("plotly_selected", (data) => {
      clearTimeout(this.selectTimer);
      this.handlers.onSelect(shapeOf(data), true);
    });
    gd.on("plotly_deselect", () => this.handlers.onSelect(null, true));
  }

  private positions(ids: Uint32Array): { x: number[]; y: number[] } {
    const x: number[] = [];
    const y: number[] = [];
    for (const id of ids) {
      const p = this.position(id);
      if (p) {
        x.push(p[0]);
        y.push(p[1]);
      }
    }
    return { x, y };
  }

  private index(points: Points, on: boolean): void {
    let top = -1;
    for (const id of points.ids) top = Math.max(top, id);
    if (on && top >= this.rowOf.length) { // grown (a background build adds items): reallocate
      const grown = new Int32Array(Math.max(top + 1, 2 * this.rowOf.length)).fill(-1);
      grown.set(this.rowOf);
      this.rowOf = grown;
    }
    points.ids.forEach((id, i) => {
      if (id < this.rowOf.length) this.rowOf[id] = on ? i : -1;
    });
  }

  private size(): string {
    return `${this.el.clientWidth}x${this.el.clientHeight}`;
  }

  private counted(): void {
    this.el.dataset.renders = String(++this.renders);
  }
}

/** A comparable summary of layout images (the density layer): its sources and placement. */
function imagesKey(images: unknown): string {
  return JSON.stringify(images ?? []);
}
