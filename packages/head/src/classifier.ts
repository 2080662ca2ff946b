import { readFile } from 'node:fs/promises';
import type * as tf from '@tensorflow/tfjs';
import { USER_MODEL_POLICY, decodeImage, loadBackbone, type Backbone, type DecodeLimits, type LoadBackboneOptions } from '@graft/vision';
import { loadHeadModel, predict, readModelFolder, type ModelManifest } from './model.js';

export interface Prediction {
  label: string;
  probability: number;
}

/** A model folder loaded for use: backbone + head, no NATS. */
export interface Classifier {
  readonly manifest: ModelManifest;
  /** Top-k labels for one image's bytes. @throws ImageError for an unreadable image. */
  classify(bytes: Uint8Array, topK?: number): Promise<Prediction[]>;
  dispose(): void;
}

/**
 * Loads an exported model folder and the backbone it names (checked by fingerprint).
 * @throws Error when the folder is incomplete, BackboneError when the backbone differs.
 */
export async function loadClassifier(dir: string, opts: LoadBackboneOptions & { limits?: DecodeLimits } = {}): Promise<Classifier> {
  const folder = await readModelFolder(dir);
  const m = folder.manifest;
  // A resolved backbone: exactly the weights the head was trained on, or an error. The folder is the
  // user's own, so its backbone may be a local file unless the caller narrows the policy.
  const backbone: Backbone = await loadBackbone(m.backbone, { ...USER_MODEL_POLICY, ...opts });
  const head: tf.LayersModel = await loadHeadModel(folder);
  return {
    manifest: m,
    async classify(bytes, topK = 5) {
      const pixels = await decodeImage(bytes, m.backbone.inputSize, opts.limits);
      const [vector] = await backbone.embed([pixels]);
      const [p] = await predict(head, [vector], m.input.dim);
      return Array.from(p.keys())
        .sort((a, b) => p[b] - p[a])
        .slice(0, topK)
        .map((i) => ({ label: m.classes[i], probability: p[i] }));
    },
    dispose() {
      backbone.dispose();
      head.dispose();
    },
  };
}

/** Reads a file and classifies it. */
export async function classifyFile(c: Classifier, path: string, topK?: number): Promise<Prediction[]> {
  return c.classify(new Uint8Array(await readFile(path)), topK);
}
