// Queries drawn over the map in our own SVG/HTML layer: a diamond at the query's placed
// position, lines and rings to its nearest images, and its label. Redrawing plotly's layout
// (shapes, annotations) would re-render every WebGL point, which costs far more than a query
// at 100k+ points in a software-rendered browser; this layer only moves when the view does.
import type { QueryResult } from "./queries.ts";

const SVG = "http://www.w3.org/2000/svg";

/** Where a query and its neighbours are drawn; default: the positions it arrived with. */
export type Locator = (q: QueryResult) => { x: number; y: number; xy: Float32Array };

export interface View {
  x: [number, number]; // data range shown
  y: [number, number];
  left: number; // plot area in pixels, relative to the map's box
  top: number;
  width: number;
  height: number;
}

function svg<K extends keyof SVGElementTagNameMap>(tag: K, attrs: Record<string, string | number>) {
  const el = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) el.setAttribute(key, String(value));
  return el;
}

export class QueryOverlay {
  private readonly svg: SVGSVGElement;
  private readonly labels: HTMLDivElement;
  private queries: QueryResult[] = [];
  private view: View | null = null;
  private locate: Locator = (q) => q;

  constructor(host: HTMLElement) {
    this.svg = svg("svg", { class: "mx-overlay" });
    this.labels = document.createElement("div");
    this.labels.className = "mx-overlay-labels";
    host.append(this.svg, this.labels);
  }

  setQueries(queries: QueryResult[]): void {
    this.queries = queries;
    this.draw();
  }

  setLocator(locate: Locator | null): void {
    this.locate = locate ?? ((q) => q);
    this.draw();
  }

  setView(view: View | null): void {
    this.view = view;
    this.draw();
  }

  private draw(): void {
    this.svg.replaceChildren();
    this.labels.replaceChildren();
    const v = this.view;
    if (!v || !this.queries.length) return;
    for (const box of [this.svg, this.labels] as (HTMLElement | SVGSVGElement)[]) {
      Object.assign(box.style, { left: `${v.left}px`, top: `${v.top}px`, width: `${v.width}px`,
        height: `${v.height}px` });
    }
    const px = (x: number): number => ((x - v.x[0]) / (v.x[1] - v.x[0])) * v.width;
    const py = (y: number): number => ((v.y[1] - y) / (v.y[1] - v.y[0])) * v.height;
    for (const q of this.queries) {
      const g = svg("g", { class: "mx-q", "data-qid": q.qid, stroke: q.colour });
      const at = this.locate(q);
      const qx = px(at.x);
      const qy = py(at.y);
      if (!Number.isFinite(qx) || !Number.isFinite(qy)) continue;
      for (let i = 0; i < q.ids.length; i++) {
        const nx = px(at.xy[2 * i]);
        const ny = py(at.xy[2 * i + 1]);
        if (!Number.isFinite(nx) || !Number.isFinite(ny)) continue;
        g.append(svg("line", { x1: qx, y1: qy, x2: nx, y2: ny, "stroke-width": 1.5, opacity: 0.6 }),
          svg("circle", { cx: nx, cy: ny, r: 7, fill: "none", "stroke-width": 2.5 }));
      }
      g.append(svg("path", { d: `M ${qx} ${qy - 11} l 11 11 l -11 11 l -11 -11 Z`,
        fill: q.colour, stroke: "#fff", "stroke-width": 2 }));
      this.svg.append(g);
      const label = document.createElement("div");
      label.className = "mx-qlabel";
      label.dir = "auto"; // right-to-left queries read correctly
      label.textContent = q.label;
      Object.assign(label.style, { left: `${qx}px`, top: `${qy - 32}px`, color: q.colour });
      this.labels.append(label);
    }
  }
}

/** The view from a plotly relayout(ing) event's ranges, else from the drawn layout. */
export function viewOf(fullLayout: any, event: Record<string, unknown> | undefined): View | null {
  const xa = fullLayout?.xaxis;
  const ya = fullLayout?.yaxis;
  const size = fullLayout?._size;
  if (!xa || !ya || !size) return null;
  const pick = (axis: string, fallback: [number, number]): [number, number] => {
    const a = event?.[`${axis}.range[0]`];
    const b = event?.[`${axis}.range[1]`];
    const whole = event?.[`${axis}.range`];
    if (typeof a === "number" && typeof b === "number") return [a, b];
    if (Array.isArray(whole) && whole.length === 2) return [Number(whole[0]), Number(whole[1])];
    return [Number(fallback[0]), Number(fallback[1])];
  };
  return { x: pick("xaxis", xa.range), y: pick("yaxis", ya.range), left: size.l, top: size.t,
    width: size.w, height: size.h };
}
