// A background build's progress line: phase, count, ETA and a Cancel button
// (mclip_explorer/widget/background.py). Hidden when no build runs.
import type { BuildState } from "./model.ts";

export function formatEta(seconds: number | null): string {
  if (seconds === null || !Number.isFinite(seconds)) return "";
  if (seconds < 90) return `about ${Math.max(1, Math.round(seconds))} s left`;
  if (seconds < 5400) return `about ${Math.round(seconds / 60)} min left`;
  return `about ${(seconds / 3600).toFixed(1)} h left`;
}

/** The line shown for a build state. */
export function progressText(b: BuildState): string {
  const count = b.total ? `${b.done.toLocaleString()} / ${b.total.toLocaleString()} images` : "";
  switch (b.state) {
    case "done":
      return `built: ${b.total.toLocaleString()} images`;
    case "cancelled":
      return `build cancelled at ${count}: run the same explore() again to resume`;
    case "failed":
      return `build failed: ${b.error}`;
    default:
      return ["building", b.phase, count, formatEta(b.eta_s)].filter(Boolean).join(" · ");
  }
}

export class BuildProgress {
  private readonly el: HTMLDivElement;
  private readonly text: HTMLSpanElement;
  private readonly bar: HTMLProgressElement;
  private readonly cancel: HTMLButtonElement;

  constructor(after: HTMLElement, onCancel: () => void) {
    this.el = document.createElement("div");
    this.el.className = "mx-build";
    this.el.hidden = true;
    this.bar = document.createElement("progress");
    this.text = document.createElement("span");
    this.text.className = "mx-build-text";
    this.cancel = document.createElement("button");
    this.cancel.className = "mx-build-cancel";
    this.cancel.textContent = "Cancel";
    this.cancel.addEventListener("click", () => {
      this.cancel.disabled = true;
      onCancel();
    });
    this.el.append(this.bar, this.text, this.cancel);
    after.after(this.el);
  }

  show(state: BuildState | Record<string, never>): void {
    this.el.hidden = !("state" in state);
    if (!("state" in state)) return;
    const b = state as BuildState;
    this.el.dataset.state = b.state;
    this.text.textContent = progressText(b);
    this.bar.max = Math.max(1, b.total);
    this.bar.value = b.done;
    const running = b.state === "running" || b.state === "starting";
    this.cancel.hidden = !running;
    this.bar.hidden = !running;
  }
}
