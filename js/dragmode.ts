// What a drag on the map does, and the visible toggle that says so: pan, box select or lasso.
// The toggle's hint always describes the mode the map is in (also after a modebar click).

export type DragMode = "pan" | "select" | "lasso" | "zoom"; // zoom: only through plotly's modebar

/** The map starts in this mode; the toggle and its hint start from the same constant. */
export const DEFAULT_DRAG_MODE: DragMode = "pan";

export const DRAG_MODES: readonly { mode: DragMode; label: string; hint: string }[] = [
  { mode: "pan", label: "pan", hint: "drag pans the map · scroll zooms" },
  { mode: "select", label: "box", hint: "drag a box to select points · double-click clears" },
  { mode: "lasso", label: "lasso", hint: "draw around points to select them · double-click clears" },
];

const ZOOM_HINT = "drag a box to zoom into it · double-click zooms out";

/** The sentence shown beside the toggle for `mode`. */
export function hintFor(mode: DragMode): string {
  return mode === "zoom" ? ZOOM_HINT : DRAG_MODES.find((m) => m.mode === mode)?.hint ?? "";
}

/** The drag mode a plotly relayout event switches to, or null if it does not change it. */
export function dragModeOf(update: unknown): DragMode | null {
  if (typeof update !== "object" || update === null) return null;
  const value = (update as Record<string, unknown>).dragmode;
  const known = value === "zoom" || DRAG_MODES.some((m) => m.mode === value);
  return known ? (value as DragMode) : null;
}

/** Three pressed-state buttons and a hint, in `el`; `onChange` runs when the user picks one. */
export class DragToggle {
  private readonly buttons = new Map<DragMode, HTMLButtonElement>();
  private readonly hint: HTMLElement;
  mode: DragMode = DEFAULT_DRAG_MODE;

  constructor(el: HTMLElement, private readonly onChange: (mode: DragMode) => void) {
    el.classList.add("mx-drag");
    el.setAttribute("role", "group");
    el.setAttribute("aria-label", "drag on the map");
    const label = document.createElement("span");
    label.className = "mx-drag-label";
    label.textContent = "drag: ";
    el.append(label);
    for (const { mode, label: text } of DRAG_MODES) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "mx-drag-mode";
      button.dataset.mode = mode;
      button.textContent = text;
      button.addEventListener("click", () => {
        this.set(mode);
        this.onChange(mode);
      });
      this.buttons.set(mode, button);
      el.append(button);
    }
    this.hint = document.createElement("span");
    this.hint.className = "mx-drag-hint";
    el.append(this.hint);
    this.set(DEFAULT_DRAG_MODE);
  }

  /** Show `mode` as the current one (without calling `onChange`). */
  set(mode: DragMode): void {
    this.mode = mode;
    for (const [m, button] of this.buttons) button.setAttribute("aria-pressed", String(m === mode));
    this.hint.textContent = hintFor(mode);
  }
}
