/// <reference types="node" />
// Unit tests of the pure modules (node:test; run with `npm test`).
import assert from "node:assert/strict";
import { test } from "node:test";
import { deinterleave, idsToView, toFloat32, toUint32 } from "../codecs.ts";
import { overlap, QUERY_COLOURS, type QueryResult, QueryStore, relocate } from "../queries.ts";
import { parsePanel, pinnedRow } from "../panels.ts";
import { layoutOf } from "../views.ts";
import { covers, densityPixels, grow, LodView, parseDetail } from "../lod.ts";
import type { Reply, Rpc } from "../rpc.ts";
import { formatEta, progressText } from "../progress.ts";
import { shapeOf } from "../shapes.ts";
import { markerSize } from "../traces.ts";
import { additionOf } from "../extend.ts";


test("codecs read buffers without copying and survive unaligned views", () => {
  const data = Float32Array.from([1.5, -2, 3.25]);
  const view = new DataView(data.buffer);
  const read = toFloat32(view);
  assert.equal(read.buffer, data.buffer); // a view, not a copy
  assert.deepEqual([...read], [1.5, -2, 3.25]);
  const bytes = new Uint8Array(13);
  bytes.set(new Uint8Array(Uint32Array.from([7, 8, 9]).buffer), 1);
  assert.deepEqual([...toUint32(new DataView(bytes.buffer, 1, 12))], [7, 8, 9]);
  assert.deepEqual([...toUint32(idsToView([4, 5]))], [4, 5]);
  const { x: dx, y: dy } = deinterleave(Float32Array.from([1, 2, 3, 4]));
  assert.deepEqual([...dx, ...dy], [1, 3, 2, 4]);
});

function result(label: string, found: number[]): Omit<QueryResult, "qid" | "colour"> {
  return { label, source: -1, x: 0, y: 0, ids: Uint32Array.from(found),
    scores: new Float32Array(found.length), xy: new Float32Array(2 * found.length), titles: [] };
}

test("queries get distinct colours; a repeated query replaces the old one", () => {
  const store = new QueryStore();
  const a = store.add(result("rot", [1, 2, 3]));
  const b = store.add(result("red", [2, 3, 4]));
  assert.notEqual(a.colour, b.colour);
  assert.ok(QUERY_COLOURS.includes(a.colour));
  const again = store.add(result("rot", [1, 2]));
  assert.equal(store.list.length, 2);
  assert.equal(again.colour, a.colour);
  store.remove(b.qid);
  assert.deepEqual(store.list.map((q) => q.label), ["rot"]);
});

test("overlap counts shared items and pairs", () => {
  const store = new QueryStore();
  store.add(result("rot", [1, 2, 3]));
  store.add(result("красный", [2, 3, 4]));
  store.add(result("赤", [3, 2, 9]));
  const o = overlap(store.list);
  assert.deepEqual(o.common.sort(), [2, 3]);
  assert.equal(o.counts.get(1), 1);
  assert.deepEqual(o.pairs, [[3, 2, 2], [2, 3, 2], [2, 2, 3]]);
  assert.deepEqual(overlap(store.list.slice(0, 1)).common, []);
});

// ipywidgets sends a view's whole underlying buffer.
test("a subarray of ids travels in a buffer of its own", () => {
  const all = Uint32Array.from([1, 3, 14, 15, 16]);
  const view = idsToView(all.subarray(2, 4));
  assert.equal(view.byteOffset, 0);
  assert.equal(view.buffer.byteLength, 8);
  assert.deepEqual([...toUint32(view)], [14, 15]);
});

test("a panel row owns ids[offsets[i]:offsets[i + 1]] with its notes and titles", () => {
  const u32 = (...v: number[]) => idsToView(v);
  const panel = parsePanel({
    serial: 1, kind: "duplicates", title: "t", header: ["group"], total: 2,
    cells: [["group 0"], ["group 1"]], details: ["", "x"],
    notes: ["keeper", "cos 0.9", "keeper", "a", "b"],
    titles: ["r", "r", "g", "g", "g"], ids: u32(1, 3, 14, 15, 16), offsets: u32(0, 2, 5),
  });
  assert.ok(panel);
  const row = pinnedRow(panel, 1);
  assert.deepEqual([...row.ids], [14, 15, 16]);
  assert.deepEqual(row.notes, ["keeper", "a", "b"]);
  assert.equal(row.label, "group 1");
  assert.equal(row.detail, "x");
  assert.equal(parsePanel({}), null);
});

test("another layout moves neighbours; a text query sits at their centroid", () => {
  const q: QueryResult = { qid: 1, label: "q", source: -1, x: 9, y: 9,
    ids: Uint32Array.from([1, 2, 7]),
    scores: new Float32Array(3), xy: new Float32Array(6), titles: [], colour: "#000" };
  const where: Record<number, [number, number]> = { 1: [0, 0], 2: [2, 4] };
  const at = relocate(q, (id) => where[id] ?? null);
  assert.deepEqual([at.x, at.y], [1, 2]);
  assert.deepEqual([...at.xy].slice(0, 4), [0, 0, 2, 4]);
  assert.ok(Number.isNaN(at.xy[4])); // not in that layout: no line drawn
  const fromItem = relocate({ ...q, source: 2 }, (id) => where[id] ?? null);
  assert.deepEqual([fromItem.x, fromItem.y], [2, 4]);
});

test("the gap layouts read their half of the 4-per-point buffer; missing until it arrives", () => {
  const points = { x: Float32Array.from([5, 6]), y: Float32Array.from([7, 8]),
    ids: Uint32Array.from([0, 1]), kinds: Uint8Array.from([0, 1]) };
  const gap = Float32Array.from([1, 2, 3, 4, 10, 20, 30, 40]);
  assert.deepEqual(layoutOf("map", points, new Float32Array(0)), { x: points.x, y: points.y });
  assert.equal(layoutOf("gap", points, new Float32Array(0)), null);
  const raw = layoutOf("gap", points, gap);
  const fixed = layoutOf("gap-corrected", points, gap);
  assert.deepEqual([...(raw?.x ?? [])], [1, 10]);
  assert.deepEqual([...(fixed?.y ?? [])], [4, 40]);
});

test("plotly box and lasso events become shapes for the kernel", () => {
  const box = shapeOf({ range: { x: [2, 1], y: [0, 3] } });
  assert.deepEqual(box && [box.kind, ...box.values], ["box", 2, 1, 0, 3]);
  const lasso = shapeOf({ lassoPoints: { x: [0, 1, 0], y: [0, 0, 1, 9] } });
  assert.deepEqual(lasso && [lasso.kind, ...lasso.values], ["lasso", 0, 0, 1, 0, 0, 1]);
  assert.equal(shapeOf({}), null);
});

test("a viewport reply becomes points, colours and a density grid", () => {
  const f32 = (...v: number[]) => new DataView(Float32Array.from(v).buffer);
  const detail = parseDetail({
    content: { complete: true, grid: [0, 10, 0.5, 2, 2, 3] },
    buffers: [f32(1, 2, 3, 4), idsToView([7, 9]), new DataView(Uint8Array.from([0, 1]).buffer),
      new DataView(Uint8Array.from([2, 0]).buffer), f32(), f32(0, 1, 2, 3, 0, 5)],
  });
  assert.deepEqual([...detail.points.x, ...detail.points.y], [1, 3, 2, 4]);
  assert.deepEqual([...detail.points.ids], [7, 9]);
  assert.deepEqual([...detail.codes], [2, 0]);
  assert.equal(detail.complete, true);
  assert.deepEqual([detail.density.rows, detail.density.cols, detail.density.y0], [2, 3, 10]);
  const px = densityPixels(detail.density); // 2 x 3, image rows top (map row 1) first
  const alpha = (row: number, col: number) => px[4 * (row * 3 + col) + 3];
  assert.equal(alpha(1, 0), 0); // map row 0, col 0: empty, transparent
  assert.equal(alpha(0, 1), 0); // map row 1, col 1: empty
  assert.equal(alpha(0, 2), 255); // the fullest cell is opaque and darkest
  assert.ok(alpha(1, 1) > 0 && alpha(1, 1) < alpha(1, 2));
  assert.throws(() => parseDetail({ content: { grid: [0, 0, 1, 1, 2, 2] },
    buffers: [f32(), idsToView([]), new DataView(new ArrayBuffer(0)), new DataView(new ArrayBuffer(0)), f32(), f32(1)] }));
});

test("the fetched area reaches past the view so small pans need no new points", () => {
  assert.deepEqual(grow({ x: [0, 2], y: [10, 14] }), { x: [-1, 3], y: [8, 16] });
});

test("a build's progress line: phase, count and ETA; how to resume after cancelling", () => {
  const running = { state: "running", phase: "encoding", done: 1200, total: 5000, eta_s: 75,
    error: "" } as const;
  assert.equal(progressText(running), "building · encoding · 1,200 / 5,000 images · about 75 s left");
  assert.equal(progressText({ ...running, eta_s: null }), "building · encoding · 1,200 / 5,000 images");
  assert.equal(formatEta(600), "about 10 min left");
  assert.match(progressText({ ...running, state: "cancelled" }), /cancelled at 1,200 \/ 5,000 images: run the same explore\(\) again to resume/);
  assert.equal(progressText({ ...running, state: "failed", error: "SourceError: x" }), "build failed: SourceError: x");
});

test("a view inside an area already drawn in full needs no new points", () => {
  const held = { x: [0, 10] as [number, number], y: [0, 10] as [number, number] };
  assert.equal(covers(held, { x: [2, 8], y: [1, 9] }), true);
  assert.equal(covers(held, { x: [8, 2], y: [9, 1] }), true); // reversed axes
  assert.equal(covers(held, { x: [-1, 8], y: [1, 9] }), false);
});

test("new points that only add to the drawn ones are appended; any change redraws", () => {
  const styled = (ids: number[], x: number[], codes: number[], opacity: number[] = []) => ({
    points: { x: Float32Array.from(x), y: Float32Array.from(x, (v) => -v),
      ids: Uint32Array.from(ids), kinds: new Uint8Array(ids.length) },
    codes: Uint8Array.from(codes), opacity: Float32Array.from(opacity) });
  const drawn = styled([10, 11, 12], [1, 2, 3], [0, 1, 0]);
  const rowOf = (id: number) => [10, 11, 12].indexOf(id); // drawn point index of an id
  // The kernel sends sorted ids: drawn points come back interleaved with new ones.
  const next = styled([5, 10, 11, 12, 13], [9, 1, 2, 3, 8], [1, 0, 1, 0, 0]);
  const plan = additionOf(drawn, next, rowOf);
  assert.ok(plan);
  assert.deepEqual([...plan.added], [0, 4]);
  assert.deepEqual([...plan.remap], [1, 2, 3]);
  assert.deepEqual([...(additionOf(drawn, drawn, rowOf)?.added ?? [9])], []); // nothing new
  assert.equal(additionOf(drawn, styled([10, 12, 13], [1, 3, 8], [0, 0, 0]), rowOf), null); // 11 gone
  assert.equal(additionOf(drawn, styled([10, 11, 12], [1, 2.5, 3], [0, 1, 0]), rowOf), null); // moved
  assert.equal(additionOf(drawn, styled([10, 11, 12], [1, 2, 3], [0, 1, 1]), rowOf), null); // recoloured
  const faded = styled([10, 11, 12], [1, 2, 3], [0, 1, 0], [1, 0.5, 1]);
  assert.equal(additionOf(drawn, faded, rowOf), null); // per-point opacity switched on
  assert.ok(additionOf(faded, styled([10, 11, 12, 13], [1, 2, 3, 4], [0, 1, 0, 0], [1, 0.5, 1, 0.2]), rowOf));
  assert.equal(additionOf(faded, styled([10, 11, 12], [1, 2, 3], [0, 1, 0], [1, 0.4, 1]), rowOf), null);
});

test("once the whole map's sample is drawn, a view that still holds the whole map asks nothing", async () => {
  const f32 = (...v: number[]) => new DataView(Float32Array.from(v).buffer);
  const asked: Record<string, unknown>[] = [];
  const reply: Reply = { content: { complete: false, grid: [0, 0, 5, 5, 2, 2] },
    buffers: [f32(1, 1), idsToView([3]), new DataView(Uint8Array.from([0]).buffer),
      new DataView(Uint8Array.from([0]).buffer), f32(), f32(1, 0, 0, 0)] };
  const rpc = { request: async (_op: string, content: Record<string, unknown>) => {
    asked.push(content);
    return reply;
  } } as unknown as Rpc;
  let layout = "map";
  const view = new LodView(rpc, () => layout as "map", async () => undefined, (m) => {
    throw new Error(m);
  });
  const settle = () => new Promise((done) => setTimeout(done, 5));
  view.setWhole({ counts: new Float32Array(4), rows: 2, cols: 2, x0: 0, y0: 0, dx: 5, dy: 5 });
  view.request({ x: [2, 8], y: [2, 8] }, 0); // grown by half: [-1, 11] holds the map [0, 10]
  view.request(null, 0); // "Reset axes"
  await settle();
  assert.equal(asked.length, 0);
  view.request({ x: [4, 6], y: [4, 6] }, 0); // zoomed in: asked for
  await settle();
  assert.deepEqual([asked.length, asked[0].x0, asked[0].x1], [1, 3, 7]);
  view.request({ x: [-5, 15], y: [-5, 15] }, 0); // the whole map again: asked once more...
  await settle();
  view.request({ x: [-4, 16], y: [-5, 15] }, 0); // ...then that sample is drawn: not again
  await settle();
  assert.equal(asked.length, 2);
  view.refresh(); // new hits or colours: asked even for the whole map
  await settle();
  assert.equal(asked.length, 3);
  layout = "gap"; // another layout: the map's extent says nothing about it
  view.request(null, 0);
  await settle();
  view.request(null, 0);
  await settle();
  assert.equal(asked.length, 5);
  view.dispose();
});

test("dots shrink with the map: large enough to hover, never larger than a point's share", () => {
  // 860 x 520 px plot: 60k points leave 7.45 px2 each (a 3 px dot is 7.07 px2), 70k leave 6.39.
  assert.deepEqual([10, 1_999, 2_000, 49_999, 50_000, 60_000, 70_000, 100_000, 10_000_000].map(markerSize),
    [8, 8, 5, 5, 3, 3, 2, 2, 2]);
  // Level of detail draws at most 20k points plus pinned ones: its dots keep one size.
  assert.equal(markerSize(20_000), markerSize(30_000));
});
