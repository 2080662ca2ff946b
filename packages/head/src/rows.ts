import { decodeHalf } from '@graft/protocol/wire';

/**
 * One vector as a head holds it: float32, or IEEE 754 half-float bits when its job asked for
 * float16 (`--vector-dtype float16`): half the memory, and exactly what the cache stores.
 */
export type VectorRow = Float32Array | Uint16Array;

/** A row's values as floats: the row itself when float32, else decoded into `scratch` (which must hold the row). */
export function floatsOf(row: VectorRow, scratch: Float32Array): Float32Array {
  return row instanceof Float32Array ? row : decodeHalf(row, scratch.length === row.length ? scratch : scratch.subarray(0, row.length));
}

/** Bytes of vector data a set of rows holds (what the dtype saves shows here). */
export function rowBytes(rows: readonly VectorRow[]): number {
  let n = 0;
  for (const r of rows) n += r.byteLength;
  return n;
}
