// The queries on the map: their results, colours, and how their top-k lists overlap.

export interface QueryResult {
  qid: number;
  label: string;
  source: number; // item id of an image-to-image query, -1 for text
  x: number;
  y: number;
  ids: Uint32Array;
  scores: Float32Array;
  xy: Float32Array; // neighbours' map positions, interleaved
  titles: string[];
  colour: string;
  language?: string; // the query language the model was given (NLLB-CLIP), detected or set
  scoreKind?: string; // "sigmoid": scores are the model's match probabilities (SigLIP)
}

export const QUERY_COLOURS = [
  "#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e", "#17becf", "#e377c2", "#8c564b",
];

export class QueryStore {
  private next = 1;
  readonly list: QueryResult[] = [];

  nextColour(): string {
    const used = new Set(this.list.map((q) => q.colour));
    return QUERY_COLOURS.find((c) => !used.has(c)) ?? QUERY_COLOURS[this.next % QUERY_COLOURS.length];
  }

  add(result: Omit<QueryResult, "qid" | "colour">): QueryResult {
    // The same query again replaces the old one rather than stacking a duplicate.
    const old = this.list.findIndex((q) => q.label === result.label);
    const colour = old >= 0 ? this.list[old].colour : this.nextColour();
    if (old >= 0) this.list.splice(old, 1);
    const q: QueryResult = { ...result, qid: this.next++, colour };
    this.list.push(q);
    return q;
  }

  remove(qid: number): QueryResult | undefined {
    const i = this.list.findIndex((q) => q.qid === qid);
    return i >= 0 ? this.list.splice(i, 1)[0] : undefined;
  }
}

export interface Overlap {
  /** id -> how many of the queries have it in their top-k. */
  counts: Map<number, number>;
  /** Ids in every query's top-k (empty with fewer than two queries). */
  common: number[];
  /** pairs[i][j] = |top-k(i) ∩ top-k(j)|. */
  pairs: number[][];
}

export function overlap(queries: QueryResult[]): Overlap {
  const counts = new Map<number, number>();
  const sets = queries.map((q) => new Set(q.ids));
  for (const s of sets) for (const id of s) counts.set(id, (counts.get(id) ?? 0) + 1);
  const common =
    queries.length < 2 ? [] : [...counts].filter(([, c]) => c === queries.length).map(([id]) => id);
  const pairs = sets.map((a) => sets.map((b) => [...a].filter((id) => b.has(id)).length));
  return { counts, common, pairs };
}

/**
 * A query's drawing positions in another layout of the map: neighbours where that layout puts
 * them; the query at its source item (image-to-image) or else at its neighbours' centroid, since
 * only the collection's own map can place a new text query.
 */
export function relocate(
  q: QueryResult, position: (id: number) => [number, number] | null,
): { x: number; y: number; xy: Float32Array } {
  const xy = new Float32Array(q.ids.length * 2).fill(Number.NaN);
  let sx = 0;
  let sy = 0;
  let n = 0;
  q.ids.forEach((id, i) => {
    const p = position(id);
    if (!p || !Number.isFinite(p[0]) || !Number.isFinite(p[1])) return;
    xy[2 * i] = p[0];
    xy[2 * i + 1] = p[1];
    sx += p[0];
    sy += p[1];
    n++;
  });
  const own = q.source >= 0 ? position(q.source) : null;
  if (own) return { x: own[0], y: own[1], xy };
  return n ? { x: sx / n, y: sy / n, xy } : { x: Number.NaN, y: Number.NaN, xy };
}
