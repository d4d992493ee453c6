// Unit tests of title shortening (node:test; run with `npm test` in js/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { shortenMiddle } from "../text.ts";

test("short titles are kept whole", () => {
  assert.equal(shortenMiddle("IMG_0001.jpg", 40), "IMG_0001.jpg");
  assert.equal(shortenMiddle("", 40), "");
  assert.equal(shortenMiddle("x".repeat(40), 40), "x".repeat(40));
});

test("long titles keep both ends, so camera-style names stay distinct", () => {
  const a = `holiday_${"x".repeat(60)}_IMG_0001.jpg`;
  const b = `holiday_${"x".repeat(60)}_IMG_0002.jpg`;
  const sa = shortenMiddle(a, 20);
  const sb = shortenMiddle(b, 20);
  assert.equal(Array.from(sa).length, 20);
  assert.notEqual(sa, sb);
  assert.ok(sa.startsWith("holiday_x") && sa.endsWith("0001.jpg") && sa.includes("…"), sa);
});

test("code points are never split", () => {
  const emoji = "🍎".repeat(30);
  const short = shortenMiddle(emoji, 9);
  assert.equal(short, `${"🍎".repeat(4)}…${"🍎".repeat(4)}`);
  assert.equal(shortenMiddle("abc", 1), "…");
});
