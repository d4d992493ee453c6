// Building blocks of the map's traces: colour categories, their palette, marker size, and
// picking the values of a subset of points out of typed arrays.

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

export function pick(values: Float32Array, index: Uint32Array): Float32Array {
  const out = new Float32Array(index.length);
  for (let i = 0; i < index.length; i++) out[i] = values[index[i]];
  return out;
}

export function pickBytes(values: Uint8Array, index: Uint32Array): Uint8Array {
  const out = new Uint8Array(index.length);
  for (let i = 0; i < index.length; i++) out[i] = values[index[i]];
  return out;
}

/** The default map's plotting area in CSS px (about 860 x 520). */
export const DEFAULT_PLOT_AREA = 860 * 520;

/** Marker diameter (CSS px) for a map of n points. Small maps get dots large enough to hover.
 * From 50k points on, a dot is never larger than each point's share of the plot: bigger dots
 * merge a dense cluster into one solid blob that hides where it is densest (and every extra pixel
 * of every dot is drawn again at each pan: WebGL without a GPU is bound by pixels filled). */
export function markerSize(n: number): number {
  if (n < 2_000) return 8;
  if (n < 50_000) return 5;
  return Math.PI * 1.5 ** 2 <= DEFAULT_PLOT_AREA / n ? 3 : 2;
}
