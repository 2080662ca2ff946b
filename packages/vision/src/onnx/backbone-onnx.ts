import * as tf from '@tensorflow/tfjs';
import type { ChannelAffine } from '../backbone-record.js';
import type { ModelFiles } from '../model-files.js';
import { DataType, OnnxBuilder } from './onnx-builder.js';
import { writeLayersModel } from './from-layers.js';
import { writeGraphModel, type GraphModelJson } from './from-graph.js';
import { TfOps, type Value } from './tf-ops.js';

/*
 * A backbone as one ONNX graph, as every ONNX Runtime session of graft runs it: uint8 RGB pixels
 * [batch, size, size, 3] in (`pixels`), the preprocessing inside, the bottleneck pooled as graft
 * pools it out (`vectors`, [batch, dim]).
 */

export const PIXELS = 'pixels';
export const VECTORS = 'vectors';

/** What the graph is fed and how it preprocesses. */
export interface BackboneGraphOptions {
  inputSize: number;
  /** x * scale + offset on the pixels (0..255), per channel. */
  affine: ChannelAffine;
  /** Named in the model's doc string and metadata. */
  description: string;
  metadata?: Record<string, string>;
}

/** The TF.js model a backbone converts from: a loaded layers model cut at its bottleneck, or a graph model's files. */
export type TfjsSource = { kind: 'layers'; model: tf.LayersModel } | { kind: 'graph'; json: GraphModelJson; files: ModelFiles; output: string; input?: string };

/**
 * Converts a TF.js backbone to ONNX.
 * @throws ConversionError naming the layer or op graft cannot write.
 */
export function backboneOnnx(src: TfjsSource, o: BackboneGraphOptions): Uint8Array {
  const b = new OnnxBuilder();
  const ops = new TfOps(b);
  const x = ops.pixels(PIXELS, o.inputSize, o.affine);
  const y: Value = src.kind === 'layers' ? writeLayersModel(ops, src.model, x) : writeGraphModel(ops, { ...src, weights: graphWeights(src.files) }, x);
  const pooled = ops.pooled(y, 'bottleneck_pool');
  b.output(ops.nhwc(pooled), VECTORS, DataType.FLOAT, ['batch', 'dim']);
  return b.encode({ graphName: 'graft_backbone', producer: 'graft', docString: o.description, metadata: o.metadata });
}

/** A graph model's constants by node name, decoded as TF.js decodes them (float16 and 8-bit quantized weights expanded). */
function graphWeights(files: ModelFiles): Map<string, { data: Float32Array | Int32Array; shape: number[] }> {
  const specs = files.json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[];
  const tensors = tf.io.decodeWeights(files.weightData, specs);
  const out = new Map<string, { data: Float32Array | Int32Array; shape: number[] }>();
  for (const [name, t] of Object.entries(tensors)) {
    const data = t.dataSync();
    out.set(name, { data: data instanceof Float32Array || data instanceof Int32Array ? data : Float32Array.from(data as ArrayLike<number>), shape: t.shape });
    t.dispose();
  }
  return out;
}
