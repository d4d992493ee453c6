// Unit tests of the drag-mode toggle's logic (node:test; run with `npm test` in js/).
import assert from "node:assert/strict";
import { test } from "node:test";
import { DEFAULT_DRAG_MODE, DRAG_MODES, dragModeOf, hintFor } from "../dragmode.ts";

test("the hint of each mode says what a drag does in it", () => {
  assert.match(hintFor("pan"), /drag pans/);
  assert.doesNotMatch(hintFor("pan"), /select/);
  assert.match(hintFor("select"), /select/);
  assert.match(hintFor("lasso"), /select/);
  assert.deepEqual(DRAG_MODES.map((m) => m.label), ["pan", "box", "lasso"]);
});

test("the default mode is one the toggle offers, with a hint", () => {
  assert.ok(DRAG_MODES.some((m) => m.mode === DEFAULT_DRAG_MODE));
  assert.notEqual(hintFor(DEFAULT_DRAG_MODE), "");
});

test("modebar relayouts are read into drag modes", () => {
  assert.equal(dragModeOf({ dragmode: "lasso" }), "lasso");
  assert.equal(dragModeOf({ dragmode: "select" }), "select");
  assert.equal(dragModeOf({ dragmode: "zoom" }), "zoom"); // the modebar's zoom: no button lit
  assert.match(hintFor("zoom"), /zoom/);
  assert.equal(dragModeOf({ dragmode: "orbit" }), null);
  assert.equal(dragModeOf({ "xaxis.range[0]": 1 }), null);
  assert.equal(dragModeOf(undefined), null);
});
