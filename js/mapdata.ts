// The map's data as the kernel sends it in the widget state: the points (all of them, or the
// level-of-detail sample), their colours, the density grid and the status line's summary.
import type { AnyModel } from "@anywidget/types";
import { deinterleave, toFloat32, toUint32, toUint8 } from "./codecs.ts";
import { type DensityGrid, initialGrid } from "./lod.ts";
import type { Points } from "./map.ts";
import type { Model } from "./model.ts";

export interface MapData {
  points: Points;
  codes: Uint8Array;
  opacity: Float32Array;
  grid: DensityGrid | null; // null: every point is here (no level of detail)
  complete: boolean; // the points are every point of the map
  summary: string; // "1,234 points · model"
}

export function readMapData(model: AnyModel<Model>): MapData {
  const xy = deinterleave(toFloat32(model.get("_coords")));
  const points = { ...xy, ids: toUint32(model.get("_ids")), kinds: toUint8(model.get("_kinds")) };
  const lod = model.get("_lod");
  const total = "total" in lod ? lod.total : points.ids.length;
  return {
    points,
    codes: toUint8(model.get("_color_codes")),
    opacity: toFloat32(model.get("_color_opacity")),
    grid: initialGrid(lod),
    complete: "total" in lod ? lod.complete : true,
    summary: `${total.toLocaleString()} points · ${model.get("model_name")}`,
  };
}
