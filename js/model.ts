// The single JS mirror of the traits of mclip_explorer/widget.py (ExplorerWidget).
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
  k: number;
  thumb_size: number;
  selected_ids: DataView; // uint32
  highlighted_ids: DataView; // uint32
  error: string;
}
