// One query round trip: text or an item id in, a parsed QueryResult (minus colour) out.
import { idsToView, toFloat32, toUint32 } from "./codecs.ts";
import type { QueryResult } from "./queries.ts";
import type { Rpc } from "./rpc.ts";

export type Query = { text: string } | { id: number };

export async function search(
  rpc: Rpc, query: Query, k: number,
): Promise<Omit<QueryResult, "qid" | "colour">> {
  const label = "text" in query ? `searching “${query.text}”` : `searching like item ${query.id}`;
  const reply =
    "text" in query
      ? await rpc.request("search", { text: query.text, k }, [], label)
      : await rpc.request("search", { k }, [idsToView([query.id])], label);
  const c = reply.content;
  const [ids, scores, xy] = reply.buffers;
  return {
    label: String(c.label),
    source: Number(c.source),
    x: Number(c.x),
    y: Number(c.y),
    ids: toUint32(ids),
    scores: toFloat32(scores),
    xy: toFloat32(xy),
    titles: (c.titles as string[]) ?? [],
  };
}
