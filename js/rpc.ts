// Request/response over msg:custom with request ids, an explicit timeout and progress notes.
// (anywidget's experimental.invoke aborts after 3 s, shorter than a cold model load.)
import type { AnyModel } from "@anywidget/types";
import type { Model } from "./model.ts";

export interface Reply {
  content: Record<string, unknown>;
  buffers: DataView[];
}

interface Pending {
  resolve: (reply: Reply) => void;
  reject: (error: Error) => void;
  timer: ReturnType<typeof setTimeout>;
  label: string;
  quiet: boolean; // not shown as busy (hover cards would make the status line flicker)
}

export type BusyListener = (pending: number, note: string) => void;

export class Rpc {
  private nextId = 1;
  private readonly pending = new Map<number, Pending>();
  private readonly handler: (msg: unknown, buffers: DataView[]) => void;

  constructor(
    private readonly model: AnyModel<Model>,
    private readonly onBusy: BusyListener,
  ) {
    this.handler = (msg, buffers) => this.receive(msg, buffers);
    model.on("msg:custom", this.handler);
  }

  request(
    op: string,
    payload: Record<string, unknown>,
    buffers: DataView[] = [],
    label = op,
    timeoutMs = 300_000,
    quiet = false,
  ): Promise<Reply> {
    const rid = this.nextId++;
    return new Promise<Reply>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.settle(rid);
        reject(new Error(`${label}: no answer from the kernel after ${timeoutMs / 1000} s`));
      }, timeoutMs);
      this.pending.set(rid, { resolve, reject, timer, label, quiet });
      this.report();
      this.model.send({ rid, op, ...payload }, undefined, buffers);
    });
  }

  dispose(): void {
    this.model.off("msg:custom", this.handler);
    for (const [rid, p] of this.pending) {
      clearTimeout(p.timer);
      p.reject(new Error("widget closed"));
      this.pending.delete(rid);
    }
  }

  private receive(msg: unknown, buffers: DataView[]): void {
    if (typeof msg !== "object" || msg === null) return;
    const content = msg as Record<string, unknown>;
    const rid = content.rid;
    if (typeof rid !== "number") return;
    const p = this.pending.get(rid);
    if (!p) return;
    if (typeof content.progress === "string") {
      if (!p.quiet) this.onBusy(this.busy().length, `${p.label}: ${content.progress}…`);
      return;
    }
    this.settle(rid);
    if (content.ok === true) p.resolve({ content, buffers });
    else p.reject(new Error(String(content.error ?? "the kernel reported an unknown error")));
  }

  private settle(rid: number): void {
    const p = this.pending.get(rid);
    if (p) clearTimeout(p.timer);
    this.pending.delete(rid);
    this.report();
  }

  private busy(): Pending[] {
    return [...this.pending.values()].filter((p) => !p.quiet);
  }

  private report(): void {
    const busy = this.busy();
    this.onBusy(busy.length, busy.length ? `${busy[0].label}…` : "");
  }
}
