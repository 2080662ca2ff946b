import { codecs, type PredictHead } from '@graft/protocol/wire';
import type { DenseSpec } from '@graft/vision';

/*
 * A trained head as plain dense layers on the wire (PredictHead), and applied to vectors with no
 * TF.js: what graft predict sends the coordinator and what the coordinator runs. The head is a
 * hidden ReLU layer at most, then the softmax: about dim x classes multiply-adds a photo, less than
 * reading its vector costs, so it runs where the vectors are.
 */

/** Most floats a head sent for prediction may hold (64 MB): a 2,048-d backbone, 8,192 hidden units and 1,000 classes fit. */
export const MAX_HEAD_FLOATS = 16 * 1024 * 1024;

/** Most classes a prediction keeps per photo. */
export const MAX_TOP_K = 20;

/** Most layers a head has: a hidden ReLU layer and the softmax. */
const MAX_LAYERS = 2;

/** A head's layers as a PredictHead's bytes. */
export function encodeDenseHead(layers: readonly DenseSpec[]): Uint8Array {
  const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  return codecs.predictHead.encode({
    layers: layers.map((l) => ({ inputs: l.inputs, units: l.units, kernel: bytes(l.kernel), bias: bytes(l.bias), activation: l.activation })),
  });
}

/**
 * A PredictHead's layers, checked against what the job needs: `dim` inputs, `classes` outputs, a
 * softmax last, ReLU before it, the byte sizes its shape says, no more than {@link MAX_HEAD_FLOATS}.
 * @throws Error naming what is wrong (the head came from a publisher: it is refused, never run).
 */
export function decodeDenseHead(bytes: Uint8Array, dim: number, classes: number): DenseSpec[] {
  const head: PredictHead = codecs.predictHead.decode(bytes, 'the head');
  const n = head.layers.length;
  if (n < 1 || n > MAX_LAYERS) throw new Error(`the head has ${n} layers: 1 or 2 (a hidden ReLU layer, then the softmax)`);
  let inputs = dim;
  let floats = 0;
  return head.layers.map((l, i) => {
    const last = i === n - 1;
    const want = last ? 'softmax' : 'relu';
    if (l.activation !== want) throw new Error(`head layer ${i + 1} has activation ${JSON.stringify(l.activation.slice(0, 40))}, not ${want}`);
    if (l.inputs !== inputs) throw new Error(`head layer ${i + 1} takes ${l.inputs} inputs, not ${inputs}${i === 0 ? " (the backbone's dimension)" : ''}`);
    if (last && l.units !== classes) throw new Error(`the head answers ${l.units} classes, the job names ${classes}`);
    if (!Number.isInteger(l.units) || l.units < 1) throw new Error(`head layer ${i + 1} has ${l.units} units`);
    floats += l.inputs * l.units + l.units;
    if (floats > MAX_HEAD_FLOATS) throw new Error(`the head holds over ${MAX_HEAD_FLOATS} weights`);
    if (l.kernel.byteLength !== l.inputs * l.units * 4 || l.bias.byteLength !== l.units * 4)
      throw new Error(`head layer ${i + 1}: ${l.kernel.byteLength} kernel and ${l.bias.byteLength} bias bytes do not fit ${l.inputs} x ${l.units}`);
    inputs = l.units;
    return { inputs: l.inputs, units: l.units, kernel: floatsOfBytes(l.kernel), bias: floatsOfBytes(l.bias), activation: want };
  });
}

/** Little-endian float32 bytes as floats (copied: protobuf's bytes need not be 4-aligned). */
function floatsOfBytes(b: Uint8Array): Float32Array {
  const out = new Float32Array(b.byteLength / 4);
  new Uint8Array(out.buffer).set(b);
  return out;
}

/** Class probabilities of one vector through the head's layers. */
export function applyDenseHead(layers: readonly DenseSpec[], vector: Float32Array): Float32Array {
  let x = vector;
  for (const l of layers) {
    const y = Float32Array.from(l.bias);
    // Kernel rows in order (input j's weights to every unit): the inner loop reads memory in a line.
    for (let j = 0; j < l.inputs; j++) {
      const v = x[j];
      if (v === 0) continue;
      const row = j * l.units;
      for (let c = 0; c < l.units; c++) y[c] += v * l.kernel[row + c];
    }
    if (l.activation === 'relu') for (let c = 0; c < y.length; c++) y[c] = Math.max(0, y[c]);
    else softmaxInPlace(y);
    x = y;
  }
  return x;
}

function softmaxInPlace(y: Float32Array): void {
  let max = -Infinity;
  for (const v of y) if (v > max) max = v;
  let sum = 0;
  for (let c = 0; c < y.length; c++) sum += y[c] = Math.exp(y[c] - max);
  for (let c = 0; c < y.length; c++) y[c] /= sum;
}

/** The k most probable classes, most probable first (the lower index first on ties), and the top-1 minus top-2 margin. */
export function topClasses(p: Float32Array, k: number): { classes: number[]; probabilities: number[]; margin: number } {
  // The best max(2, k) kept in order as the row is read: a photo of a 1,000-class model sorts no 1,000 values.
  const keep = Math.min(p.length, Math.max(2, k));
  const order: number[] = [];
  for (let c = 0; c < p.length; c++) {
    if (order.length === keep && p[c] <= p[order[keep - 1]]) continue;
    let at = order.length === keep ? keep - 1 : order.length;
    while (at > 0 && p[c] > p[order[at - 1]]) at--;
    order.splice(at, 0, c);
    if (order.length > keep) order.pop();
  }
  const margin = p[order[0]] - (order.length > 1 ? p[order[1]] : 0);
  const top = order.slice(0, k);
  return { classes: top, probabilities: top.map((c) => p[c]), margin };
}
