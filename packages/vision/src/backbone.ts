import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { AUTO_FALLBACK, AUTO_SOURCES, CATALOGUE, PREPROCESS, RESIZE_METHOD, type BackboneSpec, type ResolvedBackbone } from './backbone-record.js';
import { BackboneError } from './errors.js';
import type { GraphSource } from './graphdef.js';
import { fetchModel, type FetchModelOptions, type ModelFiles } from './model-source.js';

/** A loaded backbone that turns RGB pixels into bottleneck vectors. */
export interface Backbone {
  readonly info: ResolvedBackbone;
  /**
   * Embeds a batch. Each input is inputSize*inputSize*3 RGB bytes (see decodeImage).
   * Every intermediate tensor is disposed before this returns.
   */
  embed(images: readonly Uint8Array[]): Promise<Float32Array[]>;
  /** How many times the model ran, and on how many images (for cache accounting and benchmarks). */
  readonly stats: { calls: number; images: number };
  dispose(): void;
}

export interface LoadBackboneOptions extends FetchModelOptions {
  /** Called with a warning when `auto` falls back to the embedded model. */
  onWarning?: (message: string) => void;
  /** Where `auto` looks for its model, in order. Default {@link AUTO_SOURCES} (TF Hub, then Kaggle). */
  autoSources?: readonly string[];
  /** Per-request timeout of each `auto` source, ms. Default 10000. */
  autoTimeoutMs?: number;
  /** Called with the source `auto` loaded (a URL, or the embedded model's). */
  onSource?: (url: string) => void;
}

/** `auto` sources that failed in this process: each is tried once, not on every job. */
const failedSources = new Map<string, string>();

/** A backbone's files, fetched and verified but not yet loaded. */
export interface FetchedBackbone {
  /** The spec the files are for (the embedded model's, when `auto` fell back). */
  spec: BackboneSpec | ResolvedBackbone;
  files: ModelFiles;
  warning?: string;
}

/**
 * Fetches and verifies a backbone's files. A spec with `id: 'auto'` tries the published
 * ImageNet model and falls back to the embedded one with a warning when it cannot be reached.
 * @throws BackboneError when the model cannot be fetched or breaks the source policy.
 */
export async function fetchBackbone(spec: BackboneSpec | ResolvedBackbone, opts: LoadBackboneOptions = {}): Promise<FetchedBackbone> {
  if (spec.id !== 'auto' || 'fingerprint' in spec) {
    const files = await fetchModel(spec.url, { ...opts, upload: spec.uploadSha256, expectWeightsSha256: spec.weightsSha256, graph: { bottleneck: spec.bottleneck, inputSize: spec.inputSize, inputNode: spec.inputNode } });
    if (files.graph && spec.sourceSha256 && files.graph.sha256 !== spec.sourceSha256) {
      throw new BackboneError(`${spec.url} has SHA-256 ${files.graph.sha256}, not the ${spec.sourceSha256} this backbone was resolved from: refusing it`);
    }
    return { spec: files.graph ? fromGraphDef(spec, files.graph) : spec, files };
  }
  const reasons: string[] = [];
  for (const url of opts.autoSources ?? AUTO_SOURCES) {
    const failed = failedSources.get(url);
    if (failed) {
      reasons.push(failed);
      continue;
    }
    try {
      const files = await fetchModel(url, { ...opts, timeoutMs: opts.autoTimeoutMs ?? 10_000 });
      opts.onSource?.(url);
      return { spec: { ...spec, url }, files };
    } catch (err) {
      failedSources.set(url, (err as Error).message);
      reasons.push((err as Error).message);
    }
  }
  const warning =
    `could not download the default ImageNet backbone (${reasons.join('; ')}); using the embedded ${AUTO_FALLBACK} (MobileNetV2 0.35) instead. ` +
    `Accuracy may be a few points lower: pass --backbone with a TF.js model path or URL for a larger model.`;
  opts.onWarning?.(warning);
  const fallback = { ...CATALOGUE[AUTO_FALLBACK] };
  opts.onSource?.(fallback.url);
  return { spec: fallback, files: await fetchModel(fallback.url, { ...opts, expectWeightsSha256: fallback.weightsSha256 }), warning };
}

/**
 * A spec completed from its converted GraphDef: the node it was cut at, the input size the graph
 * gives, and no preprocessing by graft when the graph takes pixels and preprocesses them itself.
 */
function fromGraphDef<T extends BackboneSpec>(spec: T, g: GraphSource): T {
  // A graph that says nothing of its preprocessing follows its kind's convention, unless the user
  // chose (or the spec is resolved already: then it says what was used).
  const chosen = spec.preprocessGiven || 'fingerprint' in spec;
  const preprocess = g.pixelsIn ? 'none' : !chosen && g.suggestedPreprocess ? g.suggestedPreprocess.name : spec.preprocess;
  return { ...spec, bottleneck: g.bottleneck, inputSize: spec.inputSize || g.inputSize, preprocess, inputNode: g.inputNode, sourceSha256: g.sha256 };
}

/**
 * Loads fetched files as a backbone, cut at its bottleneck, and warms it up. A resolved spec
 * (one with a fingerprint, from a task or a model folder) must match it: other weights are an error.
 * @throws BackboneError when the model cannot be parsed, cut, or has another fingerprint.
 */
export async function backboneFromFiles(f: FetchedBackbone): Promise<Backbone> {
  const backbone = await buildBackbone(f.spec, f.files, f.warning);
  const expected = 'fingerprint' in f.spec ? f.spec.fingerprint : undefined;
  if (expected && backbone.info.fingerprint !== expected) {
    backbone.dispose();
    throw new BackboneError(`backbone ${f.spec.url} has fingerprint ${backbone.info.fingerprint}, but ${expected} was expected: the weights differ between machines`);
  }
  return backbone;
}

/**
 * Fetches, verifies and loads a backbone ({@link fetchBackbone}, then {@link backboneFromFiles}).
 * @throws BackboneError when the model cannot be fetched, parsed, cut, or has another fingerprint.
 */
export async function loadBackbone(spec: BackboneSpec | ResolvedBackbone, opts: LoadBackboneOptions = {}): Promise<Backbone> {
  return backboneFromFiles(await fetchBackbone(spec, opts));
}

/** Fingerprint over everything that changes the vectors. */
export function fingerprintOf(weightsSha256: string, spec: Pick<BackboneSpec, 'preprocess' | 'bottleneck' | 'inputSize'>): string {
  return createHash('sha256')
    .update([weightsSha256, spec.preprocess, spec.bottleneck, spec.inputSize, RESIZE_METHOD].join('|'))
    .digest('hex')
    .slice(0, 16);
}

type Runner = (x: tf.Tensor4D) => tf.Tensor;

/**
 * A layers model cut at its bottleneck layer ("" = the model's output), sharing its weights.
 * @throws BackboneError (the model disposed) when there is no such layer.
 */
export function cutAt(model: tf.LayersModel, bottleneck: string, origin: string): tf.LayersModel {
  if (!bottleneck) return model;
  let layer: tf.layers.Layer;
  try {
    layer = model.getLayer(bottleneck);
  } catch (err) {
    model.dispose();
    throw new BackboneError(`${origin} has no layer ${JSON.stringify(bottleneck)}`, { cause: err });
  }
  return tf.model({ inputs: model.inputs, outputs: layer.output as tf.SymbolicTensor });
}

/** Whether model files hold a TF.js graph model (else a layers model). */
export function isGraphModel(files: ModelFiles): boolean {
  return files.json.format === 'graph-model' || 'node' in files.json.modelTopology;
}

/** Model files as TF.js loads them from memory. */
export function modelArtifacts(files: ModelFiles): tf.io.ModelArtifacts {
  return {
    modelTopology: files.json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    weightSpecs: files.json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
    weightData: files.weightData,
    format: files.json.format,
  };
}

/** A loaded model as a function of a batch, with its input size (the spec's, else the model's). */
async function loadRunner(spec: BackboneSpec, files: ModelFiles): Promise<{ run: Runner; dispose: () => void; inputSize: number }> {
  const artifacts = modelArtifacts(files);
  try {
    if (isGraphModel(files)) {
      const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const node = spec.bottleneck || undefined;
      return {
        run: (x) => (node ? (model.execute(x, node) as tf.Tensor) : (model.predict(x) as tf.Tensor)),
        dispose: () => model.dispose(),
        inputSize: spec.inputSize || (model.inputs[0]?.shape?.[1] ?? 0),
      };
    }
    const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
    const cut = cutAt(model, spec.bottleneck, files.origin);
    return { run: (x) => cut.predict(x) as tf.Tensor, dispose: () => model.dispose(), inputSize: spec.inputSize || ((model.inputs[0].shape[1] as number | null) ?? 0) };
  } catch (err) {
    if (err instanceof BackboneError) throw err;
    throw new BackboneError(`cannot build a TF.js model from ${files.origin}: ${(err as Error).message}`, { cause: err });
  }
}

async function buildBackbone(spec: BackboneSpec, files: ModelFiles, warning?: string): Promise<Backbone> {
  const isGraph = isGraphModel(files);
  const { run, dispose, inputSize } = await loadRunner(spec, files);
  if (!inputSize) throw new BackboneError(`${files.origin} does not say its input size: pass --input-size`);
  const resolved = { ...spec, inputSize };
  const { scale, offset } = PREPROCESS[spec.preprocess];
  const stats = { calls: 0, images: 0 };

  // Spatial outputs are global-average-pooled: pool_3 / GlobalAveragePooling equivalent.
  const forward = (x: tf.Tensor4D): tf.Tensor2D =>
    tf.tidy(() => {
      const y = run(x);
      if (y.rank === 4) return y.mean([1, 2]) as tf.Tensor2D;
      if (y.rank === 2) return y as tf.Tensor2D;
      return y.reshape([y.shape[0], -1]) as tf.Tensor2D;
    });

  // Warm-up run: learns the dimension, and the first real batch does not pay for kernel setup.
  const probe = tf.zeros([1, inputSize, inputSize, 3]) as tf.Tensor4D;
  let dim: number;
  try {
    const out = forward(probe);
    dim = out.shape[1];
    out.dispose();
  } catch (err) {
    dispose();
    throw new BackboneError(`backbone ${spec.url} failed on a ${inputSize}x${inputSize} input: ${(err as Error).message}`, { cause: err });
  } finally {
    probe.dispose();
  }

  const info: ResolvedBackbone = {
    id: spec.id,
    url: spec.url,
    bottleneck: spec.bottleneck,
    inputSize,
    preprocess: spec.preprocess,
    fingerprint: fingerprintOf(files.weightsSha256, resolved),
    dim,
    format: isGraph ? 'graph' : 'layers',
    warning,
    ...(spec.inputNode ? { inputNode: spec.inputNode } : {}),
    ...(spec.sourceSha256 ? { sourceSha256: spec.sourceSha256 } : {}),
  };

  return {
    info,
    stats,
    embed: (images) => embedBatch(images, { inputSize, dim, scale, offset, forward, stats }),
    dispose,
  };
}

/** One backbone call: pixels scaled into the model's range, the bottleneck vectors out. */
async function embedBatch(images: readonly Uint8Array[], m: { inputSize: number; dim: number; scale: number; offset: number; forward: (x: tf.Tensor4D) => tf.Tensor2D; stats: { calls: number; images: number } }): Promise<Float32Array[]> {
  if (images.length === 0) return [];
  const px = m.inputSize * m.inputSize * 3;
  const input = new Float32Array(images.length * px);
  for (let i = 0; i < images.length; i++) {
    const img = images[i];
    if (img.length !== px) throw new RangeError(`image ${i} has ${img.length} values, expected ${px}`);
    const base = i * px;
    for (let j = 0; j < px; j++) input[base + j] = img[j] * m.scale + m.offset;
  }
  const x = tf.tensor4d(input, [images.length, m.inputSize, m.inputSize, 3]);
  let out: tf.Tensor2D | undefined;
  try {
    out = m.forward(x);
    m.stats.calls++;
    m.stats.images += images.length;
    const flat = (await out.data()) as Float32Array;
    const vectors: Float32Array[] = [];
    for (let i = 0; i < images.length; i++) vectors.push(flat.slice(i * m.dim, (i + 1) * m.dim));
    return vectors;
  } finally {
    x.dispose();
    out?.dispose();
  }
}
