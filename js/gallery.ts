// One gallery row per query: rank, score, title and thumbnail of its top-k, plus the overlap.
import type { Pinned } from "./panels.ts";
import { overlap, type QueryResult } from "./queries.ts";
import { setTitle } from "./text.ts";
import type { ThumbCache } from "./thumbs.ts";

export interface GalleryHandlers {
  onPick(id: number): void;
  onRemove(qid: number): void;
}

function node<K extends keyof HTMLElementTagNameMap>(
  tag: K, className: string, text?: string,
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  if (text !== undefined) el.textContent = text; // textContent: titles and queries are not HTML
  return el;
}

export class Gallery {
  constructor(
    private readonly el: HTMLElement,
    private readonly thumbs: ThumbCache,
    private readonly handlers: GalleryHandlers,
  ) {}

  /** Draw the rows now (titles first), then fill in thumbnails as they arrive. */
  async render(queries: QueryResult[], pinned: Pinned | null = null): Promise<void> {
    const { counts, common, pairs } = overlap(queries);
    this.el.replaceChildren();
    if (pinned) this.el.append(this.pinnedRow(pinned));
    if (queries.length > 1) this.el.append(this.summary(queries, common.length, pairs));
    for (const q of [...queries].reverse()) this.el.append(this.row(q, counts, queries.length));
    await this.thumbs.load([...(pinned?.ids ?? []), ...queries.flatMap((q) => [...q.ids])]);
    for (const img of this.el.querySelectorAll<HTMLImageElement>("img[data-id]")) {
      const url = this.thumbs.url(Number(img.dataset.id));
      if (url) img.src = url;
      else img.classList.add("mx-missing");
    }
    await Promise.all(
      [...this.el.querySelectorAll<HTMLImageElement>("img[src]")].map((img) =>
        img.decode().catch(() => undefined)),
    );
    // A counter, not a time: scripts (tests, bench) wait for it to change.
    this.el.dataset.painted = String(Number(this.el.dataset.painted ?? 0) + 1);
  }

  private summary(queries: QueryResult[], shared: number, pairs: number[][]): HTMLElement {
    const box = node("div", "mx-overlap");
    box.append(node("strong", "", `Top-${queries[0].ids.length} overlap: `),
      node("span", "mx-common", `${shared} item(s) in all ${queries.length} queries`));
    const table = node("table", "mx-pairs");
    queries.forEach((a, i) => {
      const tr = node("tr", "");
      const th = node("th", "", a.label);
      th.dir = "auto";
      th.style.color = a.colour;
      tr.append(th, ...queries.map((_, j) => node("td", "", i === j ? "–" : String(pairs[i][j]))));
      table.append(tr);
    });
    box.append(table);
    return box;
  }

  /** The items of a clicked duplicates/hubs row, with their notes ("keeper", "cos 0.98"). */
  private pinnedRow(p: Pinned): HTMLElement {
    const row = node("div", "mx-row mx-pinned");
    row.dataset.label = p.label;
    const head = node("div", "mx-row-head");
    const label = node("span", "mx-label", p.label);
    label.dir = "auto";
    head.append(node("span", "mx-swatch mx-swatch-pin"), label);
    const cards = node("div", "mx-cards");
    p.ids.forEach((id, i) => {
      const card = node("button", "mx-card");
      card.dataset.id = String(id);
      card.title = "Find images like this one";
      const img = node("img", "mx-thumb");
      img.dataset.id = String(id);
      img.alt = p.titles[i] ?? "";
      const note = p.notes[i] ?? "";
      if (note === "keeper") card.classList.add("mx-keeper");
      const title = node("div", "mx-title");
      setTitle(title, p.titles[i] ?? "");
      title.dir = "auto";
      card.append(img, node("div", "mx-meta", `#${id} ${note}`), title);
      card.addEventListener("click", () => this.handlers.onPick(id));
      cards.append(card);
    });
    row.append(head, cards);
    if (p.detail) {
      const detail = node("div", "mx-detail", p.detail);
      detail.dir = "auto";
      row.append(detail);
    }
    return row;
  }

  private row(q: QueryResult, counts: Map<number, number>, total: number): HTMLElement {
    const row = node("div", "mx-row");
    row.dataset.qid = String(q.qid);
    row.dataset.label = q.label;
    const head = node("div", "mx-row-head");
    const swatch = node("span", "mx-swatch");
    swatch.style.background = q.colour;
    const label = node("span", "mx-label", q.label);
    label.dir = "auto"; // right-to-left queries read correctly
    const remove = node("button", "mx-remove", "×");
    remove.title = "Remove this query from the map";
    remove.addEventListener("click", () => this.handlers.onRemove(q.qid));
    head.append(swatch, label);
    if (q.language) {
      const lang = node("span", "mx-lang", q.language);
      lang.title = "Language the model read the query in (detected; lang= overrides)";
      head.append(lang);
    }
    head.append(remove);
    const cards = node("div", "mx-cards");
    q.ids.forEach((id, i) => {
      const card = node("button", "mx-card");
      card.dataset.id = String(id);
      card.dataset.rank = String(i + 1);
      card.title = "Find images like this one";
      const img = node("img", "mx-thumb");
      img.dataset.id = String(id);
      img.alt = q.titles[i] ?? "";
      const shared = counts.get(id) ?? 1;
      if (total > 1 && shared > 1) {
        card.classList.add(shared === total ? "mx-shared-all" : "mx-shared");
        card.append(node("span", "mx-badge", shared === total ? "in all" : `in ${shared}`));
      }
      const meta = node("div", "mx-meta");
      meta.append(node("span", "mx-rank", `#${i + 1}`),
        node("span", "mx-score", q.scoreKind === "sigmoid"
          ? `${(q.scores[i] * 100).toFixed(1)}%` : q.scores[i].toFixed(3)));
      const title = node("div", "mx-title");
      setTitle(title, q.titles[i] ?? "");
      title.dir = "auto";
      card.append(img, meta, title);
      card.style.borderColor = q.colour;
      card.addEventListener("click", () => this.handlers.onPick(id));
      cards.append(card);
    });
    row.append(head, cards);
    return row;
  }
}
