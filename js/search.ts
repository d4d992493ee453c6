// One query round trip: text or an item id in, a parsed QueryResult (minus colour) out.
import { idsToView, toFloat32, toUint32 } from "./codecs.ts";
import type { QueryResult } from "./queries.ts";
import type { Rpc } from "./rpc.ts";

export type Query = { text: string } | { id: number };

export interface Found {
  result: Omit<QueryResult, "qid" | "colour">;
  thumbs: DataView[]; // WebP of result.ids (empty where there is none), in the same order
}

export async function search(rpc: Rpc, query: Query, k: number, thumbs: number): Promise<Found> {
  const label = "text" in query ? `searching “${query.text}”` : `searching like item ${query.id}`;
  const reply =
    "text" in query
      ? await rpc.request("search", { text: query.text, k, thumbs }, [], label)
      : await rpc.request("search", { k, thumbs }, [idsToView([query.id])], label);
  const c = reply.content;
  const [ids, scores, xy, ...images] = reply.buffers;
  const result = {
    label: String(c.label),
    source: Number(c.source),
    x: Number(c.x),
    y: Number(c.y),
    ids: toUint32(ids),
    scores: toFloat32(scores),
    xy: toFloat32(xy),
    titles: (c.titles as string[]) ?? [],
    language: typeof c.language === "string" && c.language ? c.language : undefined,
    scoreKind: typeof c.score_kind === "string" ? c.score_kind : undefined,
  };
  return { result, thumbs: images };
}
