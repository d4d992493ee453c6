// The single JS mirror of the traits of mclip_explorer/widget.py (ExplorerWidget) and of its
// analysis views (mclip_explorer/widget_views.py, AnalysisViews).
export interface Model {
  _coords: DataView; // float32, N x 2 interleaved (x0, y0, x1, y1, ...)
  _ids: DataView; // uint32, item id of point i
  _kinds: DataView; // uint8, 1 for a text item
  n_items: number;
  model_name: string;
  color_by: string;
  color_columns: string[];
  _color_codes: DataView; // uint8, legend entry of point i
  _color_labels: string[];
  _color_opacity: DataView | null; // float32 per point; empty: the default opacity
  k: number;
  thumb_size: number;
  selected_ids: DataView; // uint32
  highlighted_ids: DataView; // uint32
  error: string;
  query_lang: string; // language of text queries for NLLB-CLIP; "" detects it
  last_query_language: string;
  map_view: MapView;
  _gap_coords: DataView | null; // float32, N x 4: raw x, y, gap-corrected x, y of point i
  _lanes: LanesState | Record<string, never>; // {} when no lanes are shown
  _panel: PanelState | Record<string, never>; // {} when no panel is shown
  _lod: LodState | Record<string, never>; // {} when every point is sent (no level of detail)
  _build: BuildState | Record<string, never>; // {} when no background build feeds the widget
}

/** A background build's status (mclip_explorer/widget/background.py, BackgroundBuild.status). */
export interface BuildState {
  state: "starting" | "running" | "done" | "cancelled" | "failed";
  phase: string;
  done: number; // images encoded
  total: number;
  eta_s: number | null;
  error: string;
}

/** Level of detail: _coords/_ids/... hold a sample; the density covers the whole map. */
export interface LodState {
  total: number; // points on the map
  complete: boolean; // the sample is every point
  has_text: boolean; // the map has text items (the gap layouts are offered)
  grid: number[]; // x0, y0, dx, dy, rows, cols of the density
  density: DataView; // float32 counts, rows x cols, row 0 at y0
}

export type MapView = "map" | "gap" | "gap-corrected";

/** One query per language (analysis.language_lanes); arrays are flat, `ids.length / langs`. */
export interface LanesState {
  serial: number;
  langs: string[];
  labels: string[]; // "lang: text", the query labels
  reference: string;
  titles: string[]; // per hit
  ids: DataView; // uint32, per hit, language by language
  scores: DataView; // float32, per hit
  xy: DataView; // float32, per hit, interleaved map positions
  where: DataView; // float32, per language: the query's placed position
  overlap: DataView; // float32, langs x langs Jaccard, row-major
  rank_corr: DataView; // float32, per language: Spearman with the reference
}

/** Rows of a duplicates/hubs panel; row i owns ids[offsets[i]:offsets[i+1]]. */
export interface PanelState {
  serial: number;
  kind: "duplicates" | "hubs";
  title: string;
  header: string[];
  total: number; // rows found (the panel shows at most a few hundred)
  cells: string[][];
  details: string[]; // per row, shown in the gallery with the row's items
  notes: string[]; // per id ("keeper", "cos 0.981", ...)
  titles: string[]; // per id
  ids: DataView; // uint32
  offsets: DataView; // uint32, rows + 1
}
