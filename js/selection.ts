// Which points a box or lasso covers, computed over the TypedArrays (no per-point objects).

export function idsInBox(
  x: Float32Array,
  y: Float32Array,
  ids: Uint32Array,
  xr: [number, number],
  yr: [number, number],
): Uint32Array {
  const [x0, x1] = xr[0] <= xr[1] ? xr : [xr[1], xr[0]];
  const [y0, y1] = yr[0] <= yr[1] ? yr : [yr[1], yr[0]];
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const px = x[i];
    const py = y[i];
    if (px >= x0 && px <= x1 && py >= y0 && py <= y1) out.push(ids[i]);
  }
  return Uint32Array.from(out);
}

export function idsInLasso(
  x: Float32Array,
  y: Float32Array,
  ids: Uint32Array,
  px: number[],
  py: number[],
): Uint32Array {
  const n = Math.min(px.length, py.length);
  if (n < 3) return new Uint32Array(0);
  const bx0 = Math.min(...px.slice(0, n));
  const bx1 = Math.max(...px.slice(0, n));
  const by0 = Math.min(...py.slice(0, n));
  const by1 = Math.max(...py.slice(0, n));
  const out: number[] = [];
  for (let i = 0; i < x.length; i++) {
    const qx = x[i];
    const qy = y[i];
    if (qx < bx0 || qx > bx1 || qy < by0 || qy > by1) continue;
    if (inside(qx, qy, px, py, n)) out.push(ids[i]);
  }
  return Uint32Array.from(out);
}

// Even-odd ray casting; the polygon closes itself.
function inside(qx: number, qy: number, px: number[], py: number[], n: number): boolean {
  let hit = false;
  for (let i = 0, j = n - 1; i < n; j = i++) {
    const yi = py[i];
    const yj = py[j];
    if (yi > qy !== yj > qy) {
      const cross = ((px[j] - px[i]) * (qy - yi)) / (yj - yi) + px[i];
      if (qx < cross) hit = !hit;
    }
  }
  return hit;
}
