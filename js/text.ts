// Short labels for long item titles: keep both ends (a camera's IMG_0001 / IMG_0002 differ at
// the end, a caption at the start), cut the middle. The full text goes in a title attribute.

/** Characters a gallery or hover title shows before it is shortened. */
export const TITLE_CHARS = 40;

/** `text` at most `max` characters long, with "…" in place of its middle when cut. */
export function shortenMiddle(text: string, max: number = TITLE_CHARS): string {
  const chars = Array.from(text); // code points: never split an emoji or a surrogate pair
  if (chars.length <= max) return text;
  if (max < 2) return "…";
  const keep = max - 1;
  const head = Math.ceil(keep / 2);
  const tail = keep - head;
  return `${chars.slice(0, head).join("")}…${tail > 0 ? chars.slice(-tail).join("") : ""}`;
}

/** Put `full` into `el` as text (never HTML), shortened, with the whole text on hover. */
export function setTitle(el: HTMLElement, full: string, max: number = TITLE_CHARS): void {
  el.textContent = shortenMiddle(full, max);
  el.title = full;
}
