import * as tf from '@tensorflow/tfjs';
import { seededRandom } from '../head-training.js';
import { floatsOf, type VectorRow } from '../rows.js';

/*
 * Nearest neighbours by centered cosine similarity: vectors minus the set's mean, scaled to unit
 * length (raw pooled features are all positive, so raw cosines crowd near 1). Blocked: a block of
 * rows against all rows at a time, only each row's top k kept, so memory stays O(n k + block n).
 * Past EXACT_LIMIT rows the search runs on a seeded random projection to PROJECTED_DIM dimensions
 * and the candidates it finds are rescored on the full vectors.
 */

/** Rows at or below which the search uses the full vectors (n^2 dim multiply-adds). */
export const EXACT_LIMIT = 20_000;
/** Dimensions of the projection used past EXACT_LIMIT rows. */
export const PROJECTED_DIM = 128;
/** Similarity-matrix cells computed at once (block rows x n): bounds the search's memory. */
const BLOCK_CELLS = 8_000_000;

/** Centered, unit-length rows as one [n, dim] array. */
export function unitRows(vectors: readonly VectorRow[], dim: number): Float32Array {
  const mean = new Float64Array(dim);
  const scratch = new Float32Array(dim);
  for (const row of vectors) {
    const v = floatsOf(row, scratch);
    for (let j = 0; j < dim; j++) mean[j] += v[j];
  }
  for (let j = 0; j < dim; j++) mean[j] /= Math.max(1, vectors.length);
  const out = new Float32Array(vectors.length * dim);
  vectors.forEach((row, i) => {
    const v = floatsOf(row, scratch);
    let norm = 0;
    for (let j = 0; j < dim; j++) norm += (v[j] - mean[j]) ** 2;
    const s = norm > 0 ? 1 / Math.sqrt(norm) : 0;
    for (let j = 0; j < dim; j++) out[i * dim + j] = (v[j] - mean[j]) * s;
  });
  return out;
}

/** Each row's k nearest other rows: indices and similarities, [n, k] row-major, most similar first (-1 / -Infinity where fewer exist). */
export interface Neighbours {
  k: number;
  index: Int32Array;
  similarity: Float32Array;
}

/** Dot product of two unit rows of the same array. */
export function similarity(rows: Float32Array, dim: number, a: number, b: number): number {
  let s = 0;
  for (let j = 0; j < dim; j++) s += rows[a * dim + j] * rows[b * dim + j];
  return s;
}

/**
 * The k nearest neighbours of every row among `members` (default all rows).
 * @param rows unit rows from unitRows, [n, dim].
 */
export async function nearestNeighbours(
  rows: Float32Array,
  dim: number,
  k: number,
  members?: readonly number[],
  exactLimit = EXACT_LIMIT,
): Promise<Neighbours> {
  const ids = members ?? Array.from({ length: rows.length / dim }, (_, i) => i);
  const n = ids.length;
  const kk = Math.min(k, Math.max(0, n - 1));
  const out: Neighbours = { k, index: new Int32Array(n * k).fill(-1), similarity: new Float32Array(n * k).fill(-Infinity) };
  if (kk === 0) return out;
  const projected = n > exactLimit;
  const searchDim = projected ? PROJECTED_DIM : dim;
  const search = projected ? project(rows, dim, ids) : gatherRows(rows, dim, ids);
  // Projection blurs similarities: take more candidates, rescore them on the full vectors.
  const candidates = Math.min(n - 1, projected ? 4 * kk : kk) + 1;
  const all = tf.tensor2d(search, [n, searchDim]);
  // Transposed once: the wasm backend's matMul with transposeB is ~20x slower than on a transposed copy.
  const allT = all.transpose();
  const block = Math.max(1, Math.floor(BLOCK_CELLS / n));
  try {
    for (let s = 0; s < n; s += block) {
      const b = Math.min(block, n - s);
      const [values, indices] = tf.tidy(() => {
        const sims = all.slice([s, 0], [b, searchDim]).matMul(allT);
        const top = tf.topk(sims, candidates);
        return [top.values, top.indices];
      });
      const [v, ix] = [(await values.data()) as Float32Array, (await indices.data()) as Int32Array];
      tf.dispose([values, indices]);
      for (let r = 0; r < b; r++)
        keepTop(out, s + r, ids, rows, dim, v.subarray(r * candidates, (r + 1) * candidates), ix.subarray(r * candidates, (r + 1) * candidates), kk, projected);
    }
  } finally {
    tf.dispose([all, allT]);
  }
  return out;
}

/** Writes row i's k best candidates (itself left out) into out, in member positions. */
function keepTop(
  out: Neighbours,
  i: number,
  ids: readonly number[],
  rows: Float32Array,
  dim: number,
  sims: Float32Array,
  idx: Int32Array,
  k: number,
  rescore: boolean,
): void {
  const found: [number, number][] = [];
  for (let c = 0; c < idx.length; c++) {
    if (idx[c] === i) continue;
    found.push([idx[c], rescore ? similarity(rows, dim, ids[i], ids[idx[c]]) : sims[c]]);
  }
  found.sort((a, b) => b[1] - a[1]);
  found.slice(0, k).forEach(([j, s], r) => {
    out.index[i * out.k + r] = j;
    out.similarity[i * out.k + r] = s;
  });
}

function gatherRows(rows: Float32Array, dim: number, ids: readonly number[]): Float32Array {
  if (ids.length * dim === rows.length && ids.every((x, i) => x === i)) return rows;
  const out = new Float32Array(ids.length * dim);
  ids.forEach((id, i) => out.set(rows.subarray(id * dim, (id + 1) * dim), i * dim));
  return out;
}

/** A seeded Gaussian random projection of the members' rows to PROJECTED_DIM dimensions (cosines kept in expectation), a block of rows at a time. */
function project(rows: Float32Array, dim: number, ids: readonly number[]): Float32Array {
  const rng = seededRandom(12_345);
  const gauss = () => Math.sqrt(-2 * Math.log(1 - rng())) * Math.cos(2 * Math.PI * rng());
  const P = tf.tensor2d(
    Float32Array.from({ length: dim * PROJECTED_DIM }, () => gauss() / Math.sqrt(PROJECTED_DIM)),
    [dim, PROJECTED_DIM],
  );
  const out = new Float32Array(ids.length * PROJECTED_DIM);
  const block = 4096;
  try {
    for (let s = 0; s < ids.length; s += block) {
      const part = gatherRows(rows, dim, ids.slice(s, s + block));
      const y = tf.tidy(() => tf.tensor2d(part, [part.length / dim, dim]).matMul(P));
      out.set(y.dataSync() as Float32Array, s * PROJECTED_DIM);
      y.dispose();
    }
  } finally {
    P.dispose();
  }
  return out;
}
