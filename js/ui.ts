// The static skeleton of the widget and its small stateful bits: status, error, picker, query box.

export interface Ui {
  root: HTMLElement;
  input: HTMLInputElement;
  picker: HTMLSelectElement;
  viewPicker: HTMLSelectElement;
  drag: HTMLElement; // the pan / box / lasso toggle (dragmode.ts fills it)
  lanes: HTMLElement;
  panel: HTMLElement;
  status: HTMLElement;
  error: HTMLElement;
  pending: HTMLElement;
  map: HTMLElement;
  gallery: HTMLElement;
  tooltip: HTMLElement;
}

function div(className: string): HTMLDivElement {
  const el = document.createElement("div");
  el.className = className;
  return el;
}

export function buildUi(el: HTMLElement, css: string): Ui {
  const root = div("mx-root");
  const style = document.createElement("style");
  style.textContent = css;
  const bar = div("mx-bar");
  const input = document.createElement("input");
  input.className = "mx-query";
  input.type = "search";
  input.dir = "auto"; // any script, right-to-left included
  input.placeholder = "Search images in any language… (Enter)";
  input.setAttribute("aria-label", "query");
  const pickerLabel = document.createElement("label");
  pickerLabel.className = "mx-picker-label";
  pickerLabel.textContent = "colour by ";
  const picker = document.createElement("select");
  picker.className = "mx-picker";
  pickerLabel.append(picker);
  // The modality-gap toggle: only shown when the map has text items (widget.ts decides).
  const viewLabel = document.createElement("label");
  viewLabel.className = "mx-view-label";
  viewLabel.textContent = "layout ";
  const viewPicker = document.createElement("select");
  viewPicker.className = "mx-view";
  for (const [value, text] of [["map", "map"], ["gap", "modality gap"],
    ["gap-corrected", "gap corrected"]]) {
    const option = document.createElement("option");
    option.value = value;
    option.textContent = text;
    viewPicker.append(option);
  }
  viewLabel.append(viewPicker);
  viewLabel.hidden = true;
  const status = div("mx-status");
  status.setAttribute("role", "status");
  const drag = div("mx-drag");
  bar.append(input, pickerLabel, viewLabel, drag, status);
  const error = div("mx-error");
  error.setAttribute("role", "alert");
  error.hidden = true;
  const pending = div("mx-pending");
  const mapBox = div("mx-mapbox"); // holds the plotly map and the query layer above it
  const map = div("mx-map");
  mapBox.append(map);
  const panels = div("mx-panels");
  const lanes = div("mx-lanes");
  const panel = div("mx-panel");
  lanes.hidden = true;
  panel.hidden = true;
  panels.append(lanes, panel);
  const gallery = div("mx-gallery");
  const tooltip = div("mx-tooltip");
  tooltip.hidden = true;
  root.append(style, bar, error, pending, mapBox, panels, gallery, tooltip);
  el.append(root);
  return { root, input, picker, viewPicker, drag, lanes, panel, status, error, pending, map, gallery,
    tooltip };
}

export function setBusy(ui: Ui, pending: number, note: string, base: string): void {
  ui.root.dataset.busy = pending > 0 ? "true" : "false";
  ui.status.textContent = pending > 0 ? `⏳ ${note}${pending > 1 ? ` (+${pending - 1} queued)` : ""}` : base;
}

export function showError(ui: Ui, message: string): void {
  ui.error.replaceChildren();
  ui.error.hidden = !message;
  if (!message) return;
  const text = document.createElement("span");
  text.className = "mx-error-text";
  text.textContent = message;
  const close = document.createElement("button");
  close.textContent = "×";
  close.title = "Dismiss";
  close.addEventListener("click", () => showError(ui, ""));
  ui.error.append(text, close);
}

export function fillPicker(picker: HTMLSelectElement, columns: string[], chosen: string): void {
  picker.replaceChildren(
    ...columns.map((c) => {
      const option = document.createElement("option");
      option.value = c;
      option.textContent = c;
      return option;
    }),
  );
  picker.value = chosen;
}

/** Show queries sent but not yet answered, so nothing typed while the kernel works is lost. */
export function showPending(ui: Ui, labels: string[]): void {
  ui.pending.replaceChildren(
    ...labels.map((label) => {
      const chip = document.createElement("span");
      chip.className = "mx-chip";
      chip.dir = "auto";
      chip.textContent = `⏳ ${label}`;
      return chip;
    }),
  );
}
