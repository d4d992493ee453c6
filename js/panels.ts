// The analysis views' panels: the language-lanes overlap matrix and the duplicates/hubs list.
// Both are filled from Python (mclip_explorer/widget_views.py); numbers arrive as buffers.
import { toFloat32, toUint32 } from "./codecs.ts";
import type { LanesState, PanelState } from "./model.ts";

export interface Lanes {
  serial: number;
  langs: string[];
  labels: string[];
  reference: string;
  titles: string[];
  ids: Uint32Array;
  scores: Float32Array;
  xy: Float32Array;
  where: Float32Array;
  overlap: Float32Array;
  rankCorr: Float32Array;
  per: number; // hits per language
}

export interface Panel {
  serial: number;
  kind: string;
  title: string;
  header: string[];
  total: number;
  cells: string[][];
  details: string[];
  notes: string[];
  titles: string[];
  ids: Uint32Array;
  offsets: Uint32Array;
}

/** What a clicked panel row shows in the gallery. */
export interface Pinned {
  label: string;
  detail: string;
  ids: Uint32Array;
  notes: string[];
  titles: string[];
}

function node<K extends keyof HTMLElementTagNameMap>(
  tag: K, className: string, text?: string,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) el.textContent = text; // text, never HTML: labels come from users
  return el;
}

export function parseLanes(state: LanesState | Record<string, never>): Lanes | null {
  if (!("langs" in state) || !state.langs.length) return null;
  const s = state as LanesState;
  const ids = toUint32(s.ids);
  return {
    serial: s.serial, langs: s.langs, labels: s.labels, reference: s.reference,
    titles: s.titles, ids, scores: toFloat32(s.scores), xy: toFloat32(s.xy),
    where: toFloat32(s.where), overlap: toFloat32(s.overlap),
    rankCorr: toFloat32(s.rank_corr), per: Math.floor(ids.length / s.langs.length),
  };
}

export function parsePanel(state: PanelState | Record<string, never>): Panel | null {
  if (!("kind" in state)) return null;
  const s = state as PanelState;
  return { ...s, ids: toUint32(s.ids), offsets: toUint32(s.offsets) };
}

/** Row i of a panel as the gallery shows it. */
export function pinnedRow(panel: Panel, i: number): Pinned {
  const [a, b] = [panel.offsets[i], panel.offsets[i + 1]];
  return { label: panel.cells[i].join(" · "), detail: panel.details[i] ?? "",
    ids: panel.ids.subarray(a, b), notes: panel.notes.slice(a, b),
    titles: panel.titles.slice(a, b) };
}

/** The lanes' language x language Jaccard matrix and each rank correlation. */
export function renderLanes(
  el: HTMLElement, lanes: Lanes | null, colourOf: (label: string) => string, onClose: () => void,
): void {
  el.replaceChildren();
  el.hidden = !lanes;
  if (!lanes) return;
  const n = lanes.langs.length;
  const head = node("div", "mx-panel-head");
  const close = node("button", "mx-panel-close", "×");
  close.title = "Close the language lanes";
  close.addEventListener("click", onClose);
  head.append(node("strong", "", `Language lanes: top-${lanes.per} overlap (Jaccard)`), close);
  const table = node("table", "mx-lanes-table");
  const top = node("tr", "");
  top.append(node("th", ""), ...lanes.langs.map((lang) => node("th", "", lang)),
    node("th", "mx-rho", `ρ vs ${lanes.reference}`));
  table.append(top);
  lanes.langs.forEach((lang, i) => {
    const tr = node("tr", "");
    tr.dataset.lang = lang;
    const th = node("th", "", lang);
    th.style.color = colourOf(lanes.labels[i]);
    tr.append(th);
    for (let j = 0; j < n; j++) {
      const value = lanes.overlap[i * n + j];
      const td = node("td", "mx-jaccard", value.toFixed(2));
      // Shade by agreement so a failing language stands out without reading numbers.
      td.style.background = `rgba(78, 121, 167, ${(0.05 + 0.45 * value).toFixed(3)})`;
      tr.append(td);
    }
    const rho = lanes.rankCorr[i];
    tr.append(node("td", "mx-rho", Number.isFinite(rho) ? rho.toFixed(3) : "–"));
    table.append(tr);
  });
  el.append(head, table);
}

/** The duplicates/hubs list; a click on a row calls onRow(i) and marks the row. */
export function renderPanel(el: HTMLElement, panel: Panel | null, onRow: (i: number) => void,
  onClose: () => void): void {
  el.replaceChildren();
  el.hidden = !panel;
  if (!panel) return;
  el.dataset.kind = panel.kind;
  const head = node("div", "mx-panel-head");
  const close = node("button", "mx-panel-close", "×");
  close.title = "Close this panel";
  close.addEventListener("click", onClose);
  const shown =
    panel.cells.length < panel.total ? ` (first ${panel.cells.length} of ${panel.total})` : "";
  head.append(node("strong", "", `${panel.title}: ${panel.total} found${shown}`), close);
  el.append(head);
  if (!panel.cells.length) return;
  const table = node("table", "mx-panel-table");
  const top = node("tr", "");
  top.append(...panel.header.map((h) => node("th", "", h)));
  table.append(top);
  panel.cells.forEach((cells, i) => {
    const tr = node("tr", "mx-panel-row");
    tr.dataset.row = String(i);
    tr.title = "Highlight on the map and show in the gallery";
    for (const cell of cells) {
      const td = node("td", "", cell);
      td.dir = "auto";
      tr.append(td);
    }
    tr.addEventListener("click", () => {
      for (const row of table.querySelectorAll(".mx-active")) row.classList.remove("mx-active");
      tr.classList.add("mx-active");
      onRow(i);
    });
    table.append(tr);
  });
  const scroll = node("div", "mx-panel-scroll");
  scroll.append(table);
  el.append(scroll);
}
