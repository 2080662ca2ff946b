import * as tf from '@tensorflow/tfjs';
import type { ChannelAffine } from './backbone-record.js';
import { BackboneError } from './errors.js';
import type { ModelFiles } from './model-files.js';
import type { TfjsSource } from './onnx/backbone-onnx.js';

/* A TF.js model (layers or graph) loaded from its files and cut at its bottleneck, run a batch at a time. */

/** A TF.js backbone model: a batch of preprocessed pixels in, pooled bottleneck vectors out. */
export interface TfjsModel {
  /** The batch's bottleneck vectors, global-average-pooled when spatial. Disposes its intermediates. */
  forward(x: tf.Tensor4D): tf.Tensor2D;
  /** The spec's input size, else the model's. */
  inputSize: number;
  /** What the ONNX converter reads. */
  source: TfjsSource;
  dispose(): void;
}

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

/**
 * Loads a TF.js model cut at `bottleneck` (a layer, or a graph node; "" = the output).
 * @throws BackboneError when TF.js cannot build it or the cut is not there.
 */
export async function loadTfjsModel(files: ModelFiles, bottleneck: string, inputSize: number): Promise<TfjsModel> {
  const artifacts = modelArtifacts(files);
  let run: (x: tf.Tensor4D) => tf.Tensor;
  let dispose: () => void;
  let size: number;
  let source: TfjsSource;
  try {
    if (isGraphModel(files)) {
      const model = await tf.loadGraphModel(tf.io.fromMemory(artifacts));
      const node = bottleneck || undefined;
      run = (x) => (node ? (model.execute(x, node) as tf.Tensor) : (model.predict(x) as tf.Tensor));
      dispose = () => model.dispose();
      size = inputSize || (model.inputs[0]?.shape?.[1] ?? 0);
      source = { kind: 'graph', json: files.json.modelTopology as never, files, output: bottleneck || graphOutput(model), input: graphInput(model) };
    } else {
      const model = await tf.loadLayersModel(tf.io.fromMemory(artifacts));
      const cut = cutAt(model, bottleneck, files.origin);
      run = (x) => cut.predict(x) as tf.Tensor;
      dispose = () => model.dispose();
      size = inputSize || ((model.inputs[0].shape[1] as number | null) ?? 0);
      source = { kind: 'layers', model: cut };
    }
  } catch (err) {
    if (err instanceof BackboneError) throw err;
    throw new BackboneError(`cannot build a TF.js model from ${files.origin}: ${(err as Error).message}`, { cause: err });
  }
  // Spatial outputs are global-average-pooled: pool_3 / GlobalAveragePooling equivalent.
  const forward = (x: tf.Tensor4D): tf.Tensor2D =>
    tf.tidy(() => {
      const y = run(x);
      if (y.rank === 4) return y.mean([1, 2]) as tf.Tensor2D;
      if (y.rank === 2) return y as tf.Tensor2D;
      return y.reshape([y.shape[0], -1]) as tf.Tensor2D;
    });
  return { forward, inputSize: size, source, dispose };
}

/** A graph model's output node (without the `:0` of its tensor). */
function graphOutput(model: tf.GraphModel): string {
  const nodes = (model as unknown as { outputNodes?: string[] }).outputNodes ?? model.outputs.map((o) => o.name);
  return (nodes[0] ?? '').replace(/:\d+$/, '');
}

function graphInput(model: tf.GraphModel): string | undefined {
  const nodes = (model as unknown as { inputNodes?: string[] }).inputNodes ?? model.inputs.map((o) => o.name);
  return nodes[0]?.replace(/:\d+$/, '');
}

/**
 * Runs pixels (inputSize² x 3 bytes each) through a TF.js model: scaled into the model's range,
 * the bottleneck vectors out. Every tensor is disposed before this returns.
 */
export async function tfjsEmbed(model: TfjsModel, images: readonly Uint8Array[], affine: ChannelAffine): Promise<Float32Array[]> {
  if (images.length === 0) return [];
  const s = model.inputSize;
  const px = s * s * 3;
  const input = new Float32Array(images.length * px);
  const [sr, sg, sb] = affine.scale;
  const [or, og, ob] = affine.offset;
  for (let i = 0; i < images.length; i++) {
    const img = images[i];
    if (img.length !== px) throw new RangeError(`image ${i} has ${img.length} values, expected ${px}`);
    const base = i * px;
    for (let j = 0; j < px; j += 3) {
      input[base + j] = img[j] * sr + or;
      input[base + j + 1] = img[j + 1] * sg + og;
      input[base + j + 2] = img[j + 2] * sb + ob;
    }
  }
  const x = tf.tensor4d(input, [images.length, s, s, 3]);
  let out: tf.Tensor2D | undefined;
  try {
    out = model.forward(x);
    const dim = out.shape[1];
    const flat = (await out.data()) as Float32Array;
    return images.map((_, i) => flat.slice(i * dim, (i + 1) * dim));
  } finally {
    x.dispose();
    out?.dispose();
  }
}
