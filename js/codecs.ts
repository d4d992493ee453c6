// Binary trait buffers -> TypedArrays. Views share the buffer (no copy) unless unaligned.

type View = DataView | ArrayBuffer | null | undefined;

function bytesOf(view: View): Uint8Array {
  if (!view) return new Uint8Array(0);
  if (view instanceof ArrayBuffer) return new Uint8Array(view);
  return new Uint8Array(view.buffer, view.byteOffset, view.byteLength);
}

function aligned(bytes: Uint8Array, size: number): Uint8Array {
  // TypedArray views must start at a multiple of their element size; copy only when not.
  return bytes.byteOffset % size === 0 ? bytes : bytes.slice();
}

export function toFloat32(view: View): Float32Array {
  const b = aligned(bytesOf(view), 4);
  return new Float32Array(b.buffer, b.byteOffset, Math.floor(b.byteLength / 4));
}

export function toUint32(view: View): Uint32Array {
  const b = aligned(bytesOf(view), 4);
  return new Uint32Array(b.buffer, b.byteOffset, Math.floor(b.byteLength / 4));
}

export function toUint8(view: View): Uint8Array {
  return bytesOf(view);
}

/** Ids as a DataView for a trait or a message buffer (never a JSON number list). */
export function idsToView(ids: ArrayLike<number>): DataView {
  let out = ids instanceof Uint32Array ? ids : Uint32Array.from(ids);
  // ipywidgets sends a view's whole underlying buffer, ignoring its offset and length, so a
  // subarray (one panel row of many) must be copied into a buffer of its own.
  if (out.byteOffset !== 0 || out.byteLength !== out.buffer.byteLength) out = out.slice();
  return new DataView(out.buffer, out.byteOffset, out.byteLength);
}

/** Split interleaved x/y into two arrays (plotly wants separate x and y). */
export function deinterleave(xy: Float32Array): { x: Float32Array; y: Float32Array } {
  const n = xy.length >> 1;
  const x = new Float32Array(n);
  const y = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    x[i] = xy[2 * i];
    y[i] = xy[2 * i + 1];
  }
  return { x, y };
}
