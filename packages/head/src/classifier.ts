import { readFile } from 'node:fs/promises';
import { join } from 'node:path';
import type * as tf from '@tensorflow/tfjs';
import {
  PIXELS,
  PROBABILITIES,
  USER_MODEL_POLICY,
  decodeImage,
  loadBackbone,
  openOnnxSession,
  type Backbone,
  type DecodeLimits,
  type LoadBackboneOptions,
} from '@graft/vision';
import { argmax } from './argmax.js';
import { loadHeadModel, predict, readModelFolder, type ModelCard, type ModelFolder } from './model.js';

export interface Prediction {
  label: string;
  probability: number;
}

/** A model folder loaded for use: backbone + head, no NATS. */
export interface Classifier {
  readonly card: ModelCard;
  /** Top-k labels for one image's bytes. @throws ImageError for an unreadable image. */
  classify(bytes: Uint8Array, topK?: number): Promise<Prediction[]>;
  dispose(): void;
}

/** How a folder classifies: `graft` (its backbone, as graft runs it, then its head) or `onnx` (its model.onnx, on ONNX Runtime). */
export type ClassifierRuntime = 'graft' | 'onnx';

/** The k most probable labels, most probable first. */
function topLabels(p: Float32Array, classes: readonly string[], k: number): Prediction[] {
  const order: number[] = [];
  const left = Float32Array.from(p);
  for (let n = 0; n < Math.min(k, p.length); n++) {
    const i = argmax(left);
    order.push(i);
    left[i] = -Infinity;
  }
  return order.map((i) => ({ label: classes[i], probability: p[i] }));
}

/**
 * Loads an exported model folder: the backbone it names (checked by fingerprint) and its head, or
 * with `use: 'onnx'` its model.onnx alone.
 * @throws Error when the folder is incomplete (or has no model.onnx, saying why), BackboneError when the backbone differs.
 */
export async function loadClassifier(dir: string, opts: LoadBackboneOptions & { limits?: DecodeLimits; use?: ClassifierRuntime } = {}): Promise<Classifier> {
  const folder = await readModelFolder(dir);
  if (opts.use === 'onnx') return onnxClassifier(dir, folder, opts.limits);
  const m = folder.card;
  // A resolved backbone: exactly the weights the head was trained on, or an error. The folder is the
  // user's own, so its backbone may be a local file unless the caller narrows the policy.
  const backbone: Backbone = await loadBackbone(m.backbone, { ...USER_MODEL_POLICY, ...opts });
  const head: tf.LayersModel = await loadHeadModel(folder);
  return {
    card: m,
    async classify(bytes, topK = 5) {
      const pixels = await decodeImage(bytes, m.backbone.inputSize, opts.limits);
      const [vector] = await backbone.embed([pixels]);
      const [p] = await predict(head, [vector], m.input.dim);
      return topLabels(p, m.classes, topK);
    },
    dispose() {
      backbone.dispose();
      head.dispose();
    },
  };
}

/** A folder's model.onnx on ONNX Runtime: pixels resized as graft resizes them in, probabilities out. */
async function onnxClassifier(dir: string, folder: ModelFolder, limits?: DecodeLimits): Promise<Classifier> {
  const m = folder.card;
  if (!m.onnx || !('file' in m.onnx))
    throw new Error(`${dir} has no model.onnx${m.onnx ? `: ${m.onnx.notWritten}` : ' (export it again with this graft: graft export JOB DIR)'}`);
  const size = m.onnx.inputSize;
  const session = await openOnnxSession(new Uint8Array(await readFile(join(dir, m.onnx.file))), {
    input: m.onnx.input || PIXELS,
    output: m.onnx.output || PROBABILITIES,
  });
  return {
    card: m,
    async classify(bytes, topK = 5) {
      const pixels = await decodeImage(bytes, size, limits);
      const { data } = await session.run(pixels, [1, size, size, 3]);
      return topLabels(data, m.classes, topK);
    },
    dispose() {
      void session.close();
    },
  };
}

/** Reads a file and classifies it. */
export async function classifyFile(c: Classifier, path: string, topK?: number): Promise<Prediction[]> {
  let bytes: Buffer;
  try {
    bytes = await readFile(path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EISDIR') throw new Error(`${path} is a folder: name image files (graft classify MODEL_DIR a.jpg b.jpg)`, { cause: err });
    if (code === 'ENOENT') throw new Error(`${path}: no such file (check the path)`, { cause: err });
    throw err;
  }
  return c.classify(new Uint8Array(bytes), topK);
}
