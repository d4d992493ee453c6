// Thumbnails fetched by id (binary WebP from the kernel), kept as Blob URLs until the view closes.
import { idsToView } from "./codecs.ts";
import type { Rpc } from "./rpc.ts";

export class ThumbCache {
  private readonly urls = new Map<number, string>();
  private readonly failed = new Set<number>();

  constructor(
    private readonly rpc: Rpc,
    private readonly size: () => number,
  ) {}

  url(id: number): string | undefined {
    return this.urls.get(id);
  }

  /** Fetch every id not yet cached, in one request; failures are remembered, not retried. */
  async load(ids: Iterable<number>): Promise<void> {
    const missing = [...new Set(ids)].filter((id) => !this.urls.has(id) && !this.failed.has(id));
    if (!missing.length) return;
    const { content, buffers } = await this.rpc.request(
      "thumbs", { size: this.size() }, [idsToView(missing)], "loading thumbnails");
    const got = content.ids as number[];
    const mime = String(content.mime ?? "image/webp");
    got.forEach((id, i) => {
      const buffer = buffers[i];
      if (buffer && buffer.byteLength) this.urls.set(id, this.toUrl(buffer, mime));
      else this.failed.add(id);
    });
  }

  /** Cache a thumbnail that arrived with another reply (e.g. the hover card's item request). */
  put(id: number, buffer: DataView, mime = "image/webp"): string {
    const old = this.urls.get(id);
    if (old) return old;
    const url = this.toUrl(buffer, mime);
    this.urls.set(id, url);
    return url;
  }

  private toUrl(buffer: DataView, mime: string): string {
    const bytes = new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength).slice();
    return URL.createObjectURL(new Blob([bytes], { type: mime }));
  }

  dispose(): void {
    for (const url of this.urls.values()) URL.revokeObjectURL(url);
    this.urls.clear();
  }
}
