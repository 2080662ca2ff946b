import type { TrainedHead } from '../head-types.js';
import { floatsOf, type VectorRow } from '../rows.js';

/**
 * Class probabilities of a trained head for each row, in plain JavaScript: the head is a few
 * thousand multiply-adds per row, less than a tensor round trip costs on a worker thread.
 * @returns [rows.length, classes] row-major.
 */
export function headProbabilities(head: TrainedHead, rows: readonly VectorRow[]): Float32Array {
  const { dim, mean, std } = head;
  const C = head.classes.length;
  const out = new Float32Array(rows.length * C);
  const x = new Float64Array(dim);
  const hiddenUnits = head.hidden?.units ?? 0;
  const h = new Float64Array(hiddenUnits);
  const logits = new Float64Array(C);
  const scratch = new Float32Array(dim);
  rows.forEach((vector, r) => {
    const row = floatsOf(vector, scratch);
    for (let j = 0; j < dim; j++) x[j] = (row[j] - mean[j]) / std[j];
    let input: Float64Array = x;
    let inDim = dim;
    if (head.hidden) {
      dense(x, dim, head.hidden.kernel, head.hidden.bias, hiddenUnits, h);
      for (let u = 0; u < hiddenUnits; u++) if (h[u] < 0) h[u] = 0;
      input = h;
      inDim = hiddenUnits;
    }
    dense(input, inDim, head.kernel, head.bias, C, logits);
    softmaxInto(logits, out, r * C);
  });
  return out;
}

function dense(x: Float64Array, inDim: number, kernel: Float32Array, bias: Float32Array, units: number, out: Float64Array): void {
  for (let u = 0; u < units; u++) out[u] = bias[u];
  for (let j = 0; j < inDim; j++) {
    const v = x[j];
    if (v === 0) continue;
    const base = j * units;
    for (let u = 0; u < units; u++) out[u] += v * kernel[base + u];
  }
}

function softmaxInto(logits: Float64Array, out: Float32Array, at: number): void {
  let max = -Infinity;
  for (const l of logits) max = Math.max(max, l);
  let sum = 0;
  for (let c = 0; c < logits.length; c++) sum += Math.exp(logits[c] - max);
  for (let c = 0; c < logits.length; c++) out[at + c] = Math.exp(logits[c] - max) / sum;
}
