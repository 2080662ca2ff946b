import { createHash } from 'node:crypto';
import * as tf from '@tensorflow/tfjs';
import { AUTO_FALLBACK, CATALOGUE, PREPROCESS, RESIZE_METHOD, type BackboneSpec, type ResolvedBackbone } from './backbones.js';
import { BackboneError } from './errors.js';
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
}

/**
 * Fetches, verifies and loads a backbone, cut at its bottleneck, and warms it up.
 * A spec with `id: 'auto'` tries the published ImageNet model and falls back to the embedded
 * one with a warning when it cannot be reached. A resolved backbone (one with a fingerprint,
 * from a task or a model folder) loads exactly its URL, and other weights are an error.
 * @throws BackboneError when the model cannot be fetched, parsed, cut, or has another fingerprint.
 */
export async function loadBackbone(spec: BackboneSpec | ResolvedBackbone, opts: LoadBackboneOptions = {}): Promise<Backbone> {
  const expectFingerprint = 'fingerprint' in spec ? spec.fingerprint : undefined;
  let files: ModelFiles;
  let warning: string | undefined;
  try {
    files = await fetchModel(spec.url, opts);
  } catch (err) {
    if (spec.id !== 'auto' || expectFingerprint) throw err;
    warning =
      `could not load the default ImageNet backbone (${(err as Error).message}); using the embedded ${AUTO_FALLBACK} instead. ` +
      `Accuracy will be lower: pass --backbone with a TF.js model path or URL (e.g. a MobileNetV2 or InceptionV3 model.json) for better results.`;
    opts.onWarning?.(warning);
    spec = { ...CATALOGUE[AUTO_FALLBACK] };
    files = await fetchModel(spec.url, opts);
  }
  const backbone = await buildBackbone(spec, files, warning);
  if (expectFingerprint && backbone.info.fingerprint !== expectFingerprint) {
    backbone.dispose();
    throw new BackboneError(
      `backbone ${spec.url} has fingerprint ${backbone.info.fingerprint}, but ${expectFingerprint} was expected: the weights differ between machines`,
    );
  }
  return backbone;
}

/** Fingerprint over everything that changes the vectors. */
export function fingerprintOf(weightsSha256: string, spec: Pick<BackboneSpec, 'preprocess' | 'bottleneck' | 'inputSize'>): string {
  return createHash('sha256')
    .update([weightsSha256, spec.preprocess, spec.bottleneck, spec.inputSize, RESIZE_METHOD].join('|'))
    .digest('hex')
    .slice(0, 16);
}

type Runner = (x: tf.Tensor4D) => tf.Tensor;

async function buildBackbone(spec: BackboneSpec, files: ModelFiles, warning?: string): Promise<Backbone> {
  const isGraph = files.json.format === 'graph-model' || 'node' in files.json.modelTopology;
  const artifacts: tf.io.ModelArtifacts = {
    modelTopology: files.json.modelTopology as tf.io.ModelArtifacts['modelTopology'],
    weightSpecs: files.json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
    weightData: files.weightData,
    format: files.json.format,
  };
  let run: Runner;
  let dispose: () => void;
  let inputSize = spec.inputSize;
  try {
    if (isGraph) {
      const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const node = spec.bottleneck || undefined;
      run = (x) => (node ? (model.execute(x, node) as tf.Tensor) : (model.predict(x) as tf.Tensor));
      dispose = () => model.dispose();
      inputSize ||= model.inputs[0]?.shape?.[1] ?? 0;
    } else {
      const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      let cut: tf.LayersModel = model;
      if (spec.bottleneck) {
        let layer: tf.layers.Layer;
        try {
          layer = model.getLayer(spec.bottleneck);
        } catch {
          model.dispose();
          throw new BackboneError(`${files.origin} has no layer ${JSON.stringify(spec.bottleneck)}`);
        }
        cut = tf.model({ inputs: model.inputs, outputs: layer.output as tf.SymbolicTensor });
      }
      run = (x) => cut.predict(x) as tf.Tensor;
      dispose = () => model.dispose();
      inputSize ||= (model.inputs[0].shape[1] as number | null) ?? 0;
    }
  } catch (err) {
    if (err instanceof BackboneError) throw err;
    throw new BackboneError(`cannot build a TF.js model from ${files.origin}: ${(err as Error).message}`, { cause: err });
  }
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
  };

  return {
    info,
    stats,
    async embed(images) {
      if (images.length === 0) return [];
      const px = inputSize * inputSize * 3;
      const input = new Float32Array(images.length * px);
      for (let i = 0; i < images.length; i++) {
        const img = images[i];
        if (img.length !== px) throw new RangeError(`image ${i} has ${img.length} values, expected ${px}`);
        const base = i * px;
        for (let j = 0; j < px; j++) input[base + j] = img[j] * scale + offset;
      }
      const x = tf.tensor4d(input, [images.length, inputSize, inputSize, 3]);
      let out: tf.Tensor2D | undefined;
      try {
        out = forward(x);
        stats.calls++;
        stats.images += images.length;
        const flat = (await out.data()) as Float32Array;
        const vectors: Float32Array[] = [];
        for (let i = 0; i < images.length; i++) vectors.push(flat.slice(i * dim, (i + 1) * dim));
        return vectors;
      } finally {
        x.dispose();
        out?.dispose();
      }
    },
    dispose,
  };
}
