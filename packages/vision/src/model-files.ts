import { createHash } from 'node:crypto';
import { BackboneError } from './errors.js';

/*
 * A TF.js model as graft holds it in memory: model.json parsed, the weights concatenated and hashed.
 * Checked on the way in (weight files only inside the model's folder), and turned into the two blobs
 * the cluster's model store keeps.
 */

/**
 * A model as read from anywhere: a TF.js model.json and its concatenated weights, or an ONNX file
 * (json then only says so: {@link ONNX_JSON}; weightData is the file).
 */
export interface ModelFiles {
  /** The parsed model.json (modelTopology, weightsManifest, format...). */
  json: ModelJson;
  weightData: ArrayBuffer;
  /** Hex SHA-256 of weightData: what the backbone fingerprint is built on. */
  weightsSha256: string;
  /** Where the files came from (for logs; a local path or the URL). */
  origin: string;
  /** Set when the model was converted from a TensorFlow GraphDef (.pb): how. */
  graph?: GraphSource;
}

/** How a .pb was converted: recorded with the model, shown by `graft inspect`. */
export interface GraphSource {
  /** SHA-256 of the .pb bytes. */
  sha256: string;
  /** The node graft feeds (a Placeholder in the converted graph). */
  inputNode: string;
  /** Square input edge, read from the graph (its resize or placeholder shape) or given. */
  inputSize: number;
  /** The node whose output is the bottleneck. */
  bottleneck: string;
  /** True when the graph's decode head was replaced: it takes 0..255 pixels and preprocesses them itself. */
  pixelsIn: boolean;
  /** What the graph does to pixels before its first convolution, read from its constants (e.g. "(x - 128) * 0.0078125"). */
  preprocessing?: string;
  /** When the graph does none and its kind has a known convention: the preprocessing to use unless told, and why. */
  suggestedPreprocess?: { name: 'symmetric'; formula: string; why: string };
  /** A retrain.py output graph: its head (cut off: the bottleneck is what it read). */
  retrain?: { output: string; classes: number; dim: number };
}

export interface ModelJson {
  format?: string;
  modelTopology: Record<string, unknown>;
  weightsManifest: { paths: string[]; weights: unknown[] }[];
  [key: string]: unknown;
}

/**
 * A model from its parsed model.json and weight shards (in manifest order).
 * @throws BackboneError when the JSON is not a TF.js model.
 */
export function modelFilesFrom(json: ModelJson, shards: Uint8Array[], origin: string): ModelFiles {
  assertModelJson(json, origin);
  const all = Buffer.concat(shards);
  const weightData = all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer;
  return { json, weightData, weightsSha256: createHash('sha256').update(all).digest('hex'), origin };
}

/** @throws BackboneError when parsed JSON is not a TF.js model.json (every reader checks before reading weights). */
function assertModelJson(json: ModelJson, origin: string): void {
  if (!json || typeof json !== 'object' || !json.modelTopology || !Array.isArray(json.weightsManifest)) {
    throw new BackboneError(`${origin} is not a TF.js model.json (no modelTopology/weightsManifest)`);
  }
}

/**
 * The weight files a model.json names, each checked to be a plain relative name inside the
 * model's folder: a model.json cannot make a loader read or fetch anything else.
 * @throws BackboneError naming the bad path, or origin when the JSON is not a model.json at all.
 */
export function shardPaths(json: ModelJson, origin: string): string[] {
  assertModelJson(json, origin);
  const paths = json.weightsManifest.flatMap((g) => g.paths);
  for (const p of paths) {
    if (
      typeof p !== 'string' ||
      !p ||
      p.startsWith('/') ||
      p.includes('\\') ||
      /^[a-z][a-z0-9+.-]*:/i.test(p) ||
      p.split('/').some((seg) => seg === '..' || seg === '.')
    ) {
      throw new BackboneError(`model.json names a weights file ${JSON.stringify(p)} outside its folder: refusing it`);
    }
  }
  return paths;
}

/** The model.json an ONNX model is described by (its one "weights file" is the ONNX file itself). */
export const ONNX_JSON: ModelJson = { format: 'onnx', modelTopology: {}, weightsManifest: [{ paths: ['model.onnx'], weights: [] }] };

/** Whether model files hold an ONNX model. */
export function isOnnxModel(files: ModelFiles): boolean {
  return files.json.format === 'onnx';
}

/** An ONNX file as model files. */
export function onnxFiles(bytes: Uint8Array, origin: string): ModelFiles {
  return modelFilesFrom(ONNX_JSON, [bytes], origin);
}

export function sha256Hex(b: Uint8Array): string {
  return createHash('sha256').update(b).digest('hex');
}

/**
 * A model as two blobs: model.json (naming one weights file, weights.bin) and the weights,
 * concatenated in manifest order. How a coordinator hands a model to its workers through the
 * model store; {@link filesFromBundle} reads it back with the same weights hash.
 */
export function modelBundle(files: ModelFiles): { modelJson: Uint8Array; weights: Uint8Array } {
  const json = { ...files.json, weightsManifest: [{ paths: ['weights.bin'], weights: files.json.weightsManifest.flatMap((g) => g.weights) }] };
  return { modelJson: new TextEncoder().encode(JSON.stringify(json)), weights: new Uint8Array(files.weightData) };
}

/** The inverse of {@link modelBundle}. @throws BackboneError when the blobs are not a model. */
export function filesFromBundle(modelJson: Uint8Array, weights: Uint8Array, origin: string): ModelFiles {
  let json: ModelJson;
  try {
    json = JSON.parse(new TextDecoder().decode(modelJson)) as ModelJson;
  } catch (err) {
    // Not quoted: the bytes came from a store anyone may have written.
    throw new BackboneError(`${origin} is not a model.json (not JSON)`, { cause: err });
  }
  return modelFilesFrom(json, [weights], origin);
}
