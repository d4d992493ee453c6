/// <reference types="node" />
// Unit tests of the pure modules (node:test; run with `npm test`).
import assert from "node:assert/strict";
import { test } from "node:test";
import { deinterleave, idsToView, toFloat32, toUint32 } from "../codecs.ts";
import { overlap, QUERY_COLOURS, type QueryResult, QueryStore } from "../queries.ts";
import { idsInBox, idsInLasso } from "../selection.ts";

const x = Float32Array.from([0, 1, 2, 3, 0.5]);
const y = Float32Array.from([0, 1, 2, 3, 2.5]);
const ids = Uint32Array.from([10, 11, 12, 13, 14]);

test("box selection keeps points inside, in either drag direction", () => {
  assert.deepEqual([...idsInBox(x, y, ids, [0.5, 2.5], [0.5, 2.6])], [11, 12, 14]);
  assert.deepEqual([...idsInBox(x, y, ids, [2.5, 0.5], [2.6, 0.5])], [11, 12, 14]);
  assert.deepEqual([...idsInBox(x, y, ids, [5, 6], [5, 6])], []);
});

test("lasso selection uses the polygon, not its bounding box", () => {
  // Triangle (0,0.5)-(3,0.5)-(0,3.5): holds (1,1) and (0.5,2.5), not (2,2) or (3,3).
  assert.deepEqual([...idsInLasso(x, y, ids, [0, 3, 0], [0.5, 0.5, 3.5])], [11, 14]);
  assert.deepEqual([...idsInLasso(x, y, ids, [0, 1], [0, 1])], []);
});

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
