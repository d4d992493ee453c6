// Box and lasso selections as shapes in map coordinates, sent to the kernel, which selects over
// every point of the map (not only the drawn ones).

/** A box (x0, x1, y0, y1) or a lasso (interleaved vertices), in map coordinates. */
export type Shape = { kind: "box" | "lasso"; values: Float32Array };

/** The box or lasso of a plotly selection event, in map coordinates. */
export function shapeOf(data: any): Shape | null {
  const range = data?.range;
  if (range?.x && range?.y) {
    return { kind: "box", values: Float32Array.from([range.x[0], range.x[1], range.y[0], range.y[1]]) };
  }
  const lasso = data?.lassoPoints;
  if (lasso?.x && lasso?.y) {
    const n = Math.min(lasso.x.length, lasso.y.length);
    const values = new Float32Array(2 * n);
    for (let i = 0; i < n; i++) {
      values[2 * i] = lasso.x[i];
      values[2 * i + 1] = lasso.y[i];
    }
    return { kind: "lasso", values };
  }
  return null;
}
