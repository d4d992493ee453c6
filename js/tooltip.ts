// Hover card: an item's title, metadata and thumbnail, fetched by id once and cached.
import { idsToView } from "./codecs.ts";
import type { Rpc } from "./rpc.ts";
import type { ThumbCache } from "./thumbs.ts";
import { setTitle } from "./text.ts";

interface Info {
  title: string;
  kind: string;
  text: string;
  meta: Record<string, string>;
  url?: string;
}

export class Tooltip {
  private readonly cache = new Map<number, Promise<Info>>();
  private current = -1;
  private timer: ReturnType<typeof setTimeout> | undefined;

  constructor(
    private readonly el: HTMLElement,
    private readonly rpc: Rpc,
    private readonly thumbs: ThumbCache,
  ) {}

  show(id: number, event: MouseEvent): void {
    this.current = id;
    clearTimeout(this.timer);
    const host = this.el.parentElement?.getBoundingClientRect();
    const left = event.clientX - (host?.left ?? 0) + 14;
    const top = event.clientY - (host?.top ?? 0) + 14;
    // A short delay so sweeping the mouse over a dense map does not fire a request per point.
    this.timer = setTimeout(() => void this.fill(id, left, top), 80);
  }

  hide(): void {
    this.current = -1;
    clearTimeout(this.timer);
    this.el.hidden = true;
  }

  private async fill(id: number, left: number, top: number): Promise<void> {
    let info = this.cache.get(id);
    if (!info) {
      info = this.fetch(id);
      this.cache.set(id, info);
    }
    let value: Info;
    try {
      value = await info;
    } catch {
      this.cache.delete(id);
      return;
    }
    if (this.current !== id) return;
    const title = document.createElement("div");
    title.className = "mx-tip-title";
    title.dir = "auto";
    setTitle(title, value.title, 120); // the hover card has room for more than a gallery card
    const parts: HTMLElement[] = [title];
    if (value.url) {
      const img = document.createElement("img");
      img.src = value.url;
      parts.push(img);
    } else if (value.text) {
      const text = document.createElement("div");
      text.dir = "auto";
      text.textContent = `“${value.text}” (text)`;
      parts.push(text);
    }
    const meta = document.createElement("div");
    meta.className = "mx-tip-meta";
    meta.textContent = Object.entries(value.meta).filter(([, v]) => v !== "")
      .map(([k, v]) => `${k}: ${v}`).join(" · ");
    parts.push(meta);
    this.el.replaceChildren(...parts);
    this.el.style.left = `${left}px`;
    this.el.style.top = `${top}px`;
    this.el.hidden = false;
  }

  private async fetch(id: number): Promise<Info> {
    const { content, buffers } = await this.rpc.request(
      "item", {}, [idsToView([id])], "hover", 30_000, true);
    const info: Info = {
      title: String(content.title ?? ""),
      kind: String(content.kind ?? ""),
      text: String(content.text ?? ""),
      meta: (content.meta as Record<string, string>) ?? {},
    };
    if (buffers[0]?.byteLength) info.url = this.thumbs.put(id, buffers[0]);
    return info;
  }
}
