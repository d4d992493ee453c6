// Level of detail: above the kernel's threshold the map holds a density grid plus a bounded set
// of real points; after each pan or zoom this asks the kernel for the viewport's points
// (mclip_explorer/widget/viewport.py) and hands them to the map. Stale answers are dropped.
import { toFloat32, toUint32, toUint8 } from "./codecs.ts";
import type { Points } from "./map.ts";
import type { LodState, MapView } from "./model.ts";
import type { Reply, Rpc } from "./rpc.ts";

/** Point counts on a grid: counts[row * cols + col] covers x0 + col * dx (row 0 at y0). */
export interface DensityGrid {
  counts: Float32Array;
  rows: number;
  cols: number;
  x0: number;
  y0: number;
  dx: number;
  dy: number;
}

/** What the map draws in one level-of-detail state. */
export interface Detail {
  points: Points;
  codes: Uint8Array;
  opacity: Float32Array;
  density: DensityGrid;
  complete: boolean; // every point of the requested area is drawn
}

export type Range = { x: [number, number]; y: [number, number] };

export function parseGrid(grid: unknown, counts: Float32Array): DensityGrid {
  const [x0, y0, dx, dy, rows, cols] = (grid as number[]).map(Number);
  if (counts.length !== rows * cols) throw new Error(`density grid of ${counts.length} values is not ${rows} x ${cols}`);
  return { counts, rows, cols, x0, y0, dx, dy };
}

/** The density grid of the widget's initial state, or null when every point is sent. */
export function initialGrid(state: LodState | Record<string, never>): DensityGrid | null {
  return "total" in state ? parseGrid(state.grid, toFloat32(state.density)) : null;
}

/** A viewport reply: buffers xy (f32), ids (u32), kinds (u8), codes (u8), opacity (f32), counts. */
export function parseDetail(reply: Reply): Detail {
  const [xy, ids, kinds, codes, opacity, counts] = reply.buffers;
  const flat = toFloat32(xy);
  const n = flat.length >> 1;
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = flat[2 * i];
    y[i] = flat[2 * i + 1];
  }
  return {
    points: { x, y, ids: toUint32(ids), kinds: toUint8(kinds) },
    codes: toUint8(codes),
    opacity: toFloat32(opacity),
    density: parseGrid(reply.content.grid, toFloat32(counts)),
    complete: reply.content.complete === true,
  };
}

/** The view grown by `margin` of its size on each side, so small pans need no new points. */
export function grow(range: Range, margin = 0.5): Range {
  const w = range.x[1] - range.x[0];
  const h = range.y[1] - range.y[0];
  return { x: [range.x[0] - margin * w, range.x[1] + margin * w],
    y: [range.y[0] - margin * h, range.y[1] + margin * h] };
}

/** RGBA pixels of a density grid, top row first: log(1 + count) on a light-to-dark blue ramp,
 * empty cells transparent. */
export function densityPixels(grid: DensityGrid): Uint8ClampedArray<ArrayBuffer> {
  const out = new Uint8ClampedArray(grid.rows * grid.cols * 4);
  let top = 0;
  for (const v of grid.counts) top = Math.max(top, Math.log1p(v));
  const light = [226, 234, 244];
  const dark = [42, 78, 130];
  for (let r = 0; r < grid.rows; r++) {
    const row = grid.rows - 1 - r; // image rows run downwards, map rows upwards
    for (let c = 0; c < grid.cols; c++) {
      const v = grid.counts[r * grid.cols + c];
      if (!(v > 0)) continue;
      const t = top > 0 ? Math.log1p(v) / top : 1;
      const at = 4 * (row * grid.cols + c);
      for (let k = 0; k < 3; k++) out[at + k] = Math.round(light[k] + t * (dark[k] - light[k]));
      out[at + 3] = Math.round(120 + 135 * t);
    }
  }
  return out;
}

/** A plotly layout image (the gl2d bundle has no heatmap trace) showing a density grid. */
export function densityImage(grid: DensityGrid): Record<string, unknown> {
  const canvas = document.createElement("canvas");
  canvas.width = grid.cols;
  canvas.height = grid.rows;
  const context = canvas.getContext("2d");
  if (context && grid.cols && grid.rows) {
    context.putImageData(new ImageData(densityPixels(grid), grid.cols, grid.rows), 0, 0);
  }
  return { source: canvas.toDataURL("image/png"), xref: "x", yref: "y", x: grid.x0,
    y: grid.y0 + grid.rows * grid.dy, sizex: grid.cols * grid.dx, sizey: grid.rows * grid.dy,
    sizing: "stretch", layer: "below", opacity: 0.85, name: "density" };
}

/** Whether `outer` contains `inner`. */
export function covers(outer: Range, inner: Range): boolean {
  const lo = (r: [number, number]) => Math.min(r[0], r[1]);
  const hi = (r: [number, number]) => Math.max(r[0], r[1]);
  return lo(outer.x) <= lo(inner.x) && hi(inner.x) <= hi(outer.x)
    && lo(outer.y) <= lo(inner.y) && hi(inner.y) <= hi(outer.y);
}

export class LodView {
  private serial = 0;
  private timer: ReturnType<typeof setTimeout> | undefined;
  private last: Range | null = null;
  private held: Range | null = null; // an area all of whose points are drawn now
  private extent: Range | null = null; // the map layout's density grid: around every point
  private wholeDrawn = false; // the points drawn are the map layout's whole-map sample

  constructor(
    private readonly rpc: Rpc,
    private readonly layout: () => MapView,
    private readonly show: (detail: Detail) => Promise<void>,
    private readonly fail: (message: string) => void,
    private readonly busy: (fetching: boolean) => void = () => undefined,
  ) {}

  /** The map's whole-map sample is drawn (at load, or a build's new state), over `grid`. */
  setWhole(grid: DensityGrid): void {
    this.extent = { x: [grid.x0, grid.x0 + grid.cols * grid.dx],
      y: [grid.y0, grid.y0 + grid.rows * grid.dy] };
    this.wholeDrawn = true;
    this.held = null;
  }

  /** Fetch the points of a view (null: the whole map) after the pan or zoom settles. */
  request(range: Range | null, delayMs = 40): void {
    this.last = range;
    clearTimeout(this.timer);
    // Inside an area whose every point is drawn already, or (the whole map's sample drawn) a
    // view that still holds the whole map, for which the kernel sends that sample again:
    // nothing new to fetch.
    if ((range && this.held && covers(this.held, range)) || this.holdsWhole(range)) {
      this.serial++; // an answer still on its way is for another view
      this.busy(false);
      return;
    }
    this.busy(true);
    this.timer = setTimeout(() => void this.fetch(range), delayMs);
  }

  /** Fetch the current view again (new colours, a new query's hits, a new selection). */
  refresh(delayMs = 0): void {
    this.held = null;
    this.wholeDrawn = false;
    this.request(this.last, delayMs);
  }

  dispose(): void {
    clearTimeout(this.timer);
    this.serial++;
  }

  private holdsWhole(range: Range | null): boolean {
    if (!this.wholeDrawn || this.layout() !== "map") return false;
    return range === null || (this.extent !== null && covers(grow(range), this.extent));
  }

  private async fetch(range: Range | null): Promise<void> {
    const serial = ++this.serial;
    const area = range ? grow(range) : null;
    const layout = this.layout();
    const bounds = area ? { x0: area.x[0], x1: area.x[1], y0: area.y[0], y1: area.y[1] } : {};
    try {
      const reply = await this.rpc.request("viewport", { ...bounds, layout }, [],
        "loading the points in view", 60_000, true);
      if (serial !== this.serial) return; // a newer view was asked for meanwhile
      const detail = parseDetail(reply);
      this.held = detail.complete ? area : null;
      this.wholeDrawn = layout === "map"
        && (area === null || (this.extent !== null && covers(area, this.extent)));
      await this.show(detail);
      if (serial === this.serial) this.busy(false);
    } catch (error) {
      if (serial !== this.serial) return;
      this.busy(false);
      this.fail(error instanceof Error ? error.message : String(error));
    }
  }
}
