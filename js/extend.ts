// Whether a new set of map points only adds to what is drawn: then the map appends the new points
// with Plotly.extendTraces instead of rebuilding every trace with Plotly.react (a viewport refresh
// that brings in a query's hits or the selection, a background build's step that places new items
// on an unchanged map).
import type { Points } from "./map.ts";

/** Points with the colour codes and (optional, per point) opacities they are drawn with. */
export interface Styled {
  points: Points;
  codes: Uint8Array;
  opacity: Float32Array; // empty: the default opacity
}

/** How `next` extends the drawn points. */
export interface Addition {
  remap: Uint32Array; // drawn point index -> its index in `next`
  added: Uint32Array; // indices (in `next`) of the points not drawn yet, in order
}

/** The points `next` adds, when it keeps every drawn point unchanged (same id, position, kind,
 * colour code and opacity); null when any drawn point is gone or changed. `rowOf` maps an item id
 * to its drawn point index (-1: not drawn). */
export function additionOf(drawn: Styled, next: Styled, rowOf: (id: number) => number): Addition | null {
  const old = drawn.points;
  const now = next.points;
  const perPoint = (s: Styled) => s.opacity.length > 0 && s.opacity.length === s.points.ids.length;
  if (perPoint(drawn) !== perPoint(next)) return null;
  const withOpacity = perPoint(next);
  const remap = new Uint32Array(old.ids.length);
  const added: number[] = [];
  let kept = 0;
  for (let i = 0; i < now.ids.length; i++) {
    const j = rowOf(now.ids[i]);
    if (j < 0) {
      added.push(i);
      continue;
    }
    if (old.x[j] !== now.x[i] || old.y[j] !== now.y[i] || old.kinds[j] !== now.kinds[i]
      || drawn.codes[j] !== next.codes[i] || (withOpacity && drawn.opacity[j] !== next.opacity[i])) {
      return null;
    }
    remap[j] = i;
    kept++;
  }
  return kept === old.ids.length ? { remap, added: Uint32Array.from(added) } : null;
}
