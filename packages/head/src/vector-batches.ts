import * as tf from '@tensorflow/tfjs';
import { floatsOf, type VectorRow } from './rows.js';

/** Rows per tensor when a whole set is scored or predicted: bounds the backend's memory, whatever the set's size. */
export const SCORE_ROWS = 4096;

/**
 * A set's vectors, held once as the caller's rows (float32 or half floats; host memory, outside the backend's heap: the wasm
 * backend's stops at 4 GB), turned into standardised tensors one batch at a time. Training a head on
 * a million vectors then needs the vectors once plus one batch, not the vectors three times (rows, a
 * flat copy, a tensor of them all).
 */
export class VectorBatches {
  constructor(
    private readonly rows: readonly VectorRow[],
    private readonly mean: Float32Array,
    private readonly std: Float32Array,
    private readonly dim: number,
  ) {
    for (const [i, v] of rows.entries()) if (v.length !== dim) throw new RangeError(`vector ${i} has dimension ${v.length}, expected ${dim}`);
  }

  get length(): number {
    return this.rows.length;
  }

  /** The standardised rows at these indices as one [n, dim] tensor (the caller disposes it). */
  batch(indices: ArrayLike<number>): tf.Tensor2D {
    const { dim, mean, std } = this;
    const n = indices.length;
    // A new array per batch: the cpu backend keeps the array it is given as the tensor's data.
    const out = new Float32Array(n * dim);
    const scratch = new Float32Array(dim);
    for (let r = 0; r < n; r++) {
      const v = floatsOf(this.rows[indices[r]], scratch);
      const o = r * dim;
      for (let j = 0; j < dim; j++) out[o + j] = (v[j] - mean[j]) / std[j];
    }
    return tf.tensor2d(out, [n, dim]);
  }

  /** Indices start..end-1 (a slice of the set in order). */
  static range(start: number, end: number): Int32Array {
    const idx = new Int32Array(end - start);
    for (let i = 0; i < idx.length; i++) idx[i] = start + i;
    return idx;
  }
}
