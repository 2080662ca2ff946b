import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { SCORE_ROWS } from './vector-batches.js';
import { floatsOf, type VectorRow } from './rows.js';
import type { ResolvedBackbone } from '@graft/vision';
import type { EvaluationReport } from './evaluate.js';
import type { TrainedHead } from './train.js';

/** Version of the exported folder layout. */
export const MODEL_FORMAT_VERSION = 1;

/** graft.json: what a model folder is, beside the TF.js files. */
export interface ModelCard {
  formatVersion: number;
  classes: string[];
  /** The backbone the head was trained on: classify loads exactly this (fingerprint checked). */
  backbone: ResolvedBackbone;
  /** The head takes raw bottleneck vectors: standardisation is folded into its weights. */
  input: { dim: number; standardizationFolded: boolean };
  training: {
    optimizer: string;
    learningRate: number;
    batchSize: number;
    epochs: number;
    bestEpoch: number;
    stoppedEarly: boolean;
    weightDecay?: number;
    labelSmoothing?: number;
    hiddenUnits?: number;
    dropout?: number;
    classWeights?: string;
  };
  jobId?: string;
  createdAt: string;
  /** The folder's model.onnx (set when a folder is exported): how to feed it, or why it was not written. */
  onnx?: OnnxEntry | { notWritten: string };
  /** The folder's output_graph.pb and output_labels.txt, retrain.py's way out (a GraphDef backbone), or why there are none. */
  retrainGraph?: { file: string; labels: string; maxDifference: number } | { notWritten: string };
  /** Set by graft import: the model was not trained by graft but taken from this graph, and checked against it. */
  importedFrom?: { kind: 'retrain.py'; graph: string; sha256: string; labels: string; pictures: number; maxDifference: number };
}

/** What graft.json says of model.onnx: how to feed it and read it, and how close it was checked. */
export interface OnnxEntry {
  file: string;
  labels: string;
  opset: number;
  /** uint8 RGB [batch, inputSize, inputSize, 3], resized as graft resizes; the preprocessing is inside. */
  input: string;
  inputSize: number;
  /** float32 class probabilities [batch, classes], in labels.txt's order. */
  output: string;
  /** Largest difference from graft classify's probabilities on the probe pictures. */
  maxDifference: number;
}

/** The files of a model folder, in memory: model.json, weights.bin, graft.json, report.json. */
export interface ModelFolder {
  modelJson: Record<string, unknown>;
  weights: Uint8Array;
  card: ModelCard;
  report: EvaluationReport;
}

export const MODEL_FILES = ['model.json', 'weights.bin', 'graft.json', 'report.json'] as const;
/** The audit's findings (graft audit, train --audit): beside the model files when the job was audited. */
export const AUDIT_FILE = 'audit.json';

/** One dense layer of an exported head: kernel [inputs, units] row-major. */
export interface HeadLayer {
  kernel: Float32Array;
  bias: Float32Array;
  units: number;
  activation: 'relu' | 'softmax';
}

/**
 * The head's dense layers with standardisation folded into the first, so the exported model
 * takes raw vectors:
 *   ((x - mean) / std) W + b = x (W / std) + (b - (mean / std) W)
 */
export function foldedLayers(head: TrainedHead): HeadLayer[] {
  const C = head.classes.length;
  const first = head.hidden ?? { kernel: head.kernel, bias: head.bias, units: C };
  const U = first.units;
  const kernel = new Float32Array(first.kernel.length);
  const bias = Float32Array.from(first.bias);
  for (let j = 0; j < head.dim; j++) {
    const s = head.std[j];
    const m = head.mean[j] / s;
    for (let c = 0; c < U; c++) {
      const w = first.kernel[j * U + c];
      kernel[j * U + c] = w / s;
      bias[c] -= m * w;
    }
  }
  if (!head.hidden) return [{ kernel, bias, units: C, activation: 'softmax' }];
  return [
    { kernel, bias, units: U, activation: 'relu' },
    { kernel: head.kernel, bias: head.bias, units: C, activation: 'softmax' },
  ];
}

/** Builds the TF.js layers model of a head: [Dense(units, relu)] Dense(classes, softmax) on [dim]. */
export function headModel(dim: number, layers: HeadLayer[]): tf.Sequential {
  const model = tf.sequential({ name: 'graft_head' });
  layers.forEach((l, i) => {
    const last = i === layers.length - 1;
    model.add(
      tf.layers.dense({
        units: l.units,
        activation: l.activation,
        name: last ? 'graft_softmax' : `graft_hidden_${i}`,
        ...(i === 0 ? { inputShape: [dim] } : {}),
      }),
    );
    const inputs = i === 0 ? dim : layers[i - 1].units;
    model.layers[i].setWeights([tf.tensor2d(l.kernel, [inputs, l.units]), tf.tensor1d(l.bias)]);
  });
  return model;
}

/** Serialises a trained head with its backbone reference and test report. */
export async function packageModel(head: TrainedHead, backbone: ResolvedBackbone, report: EvaluationReport, jobId?: string): Promise<ModelFolder> {
  const model = headModel(head.dim, foldedLayers(head));
  let artifacts: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      artifacts = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  const a = artifacts!;
  const weights = new Uint8Array(a.weightData as ArrayBuffer);
  return {
    modelJson: {
      format: 'layers-model',
      generatedBy: a.generatedBy,
      convertedBy: null,
      modelTopology: a.modelTopology,
      weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
    },
    weights,
    card: {
      formatVersion: MODEL_FORMAT_VERSION,
      classes: head.classes,
      backbone,
      input: { dim: head.dim, standardizationFolded: true },
      training: {
        optimizer: head.options.optimizer,
        learningRate: head.options.learningRate,
        batchSize: head.options.batchSize,
        epochs: head.history.length,
        bestEpoch: head.bestEpoch,
        stoppedEarly: head.stoppedEarly,
        weightDecay: head.options.weightDecay,
        labelSmoothing: head.options.labelSmoothing,
        hiddenUnits: head.options.hiddenUnits,
        dropout: head.options.dropout,
        classWeights: head.options.classWeights,
      },
      jobId,
      createdAt: new Date().toISOString(),
    },
    report,
  };
}

/** Bytes of each file of a model folder, by file name. */
export function modelFiles(m: ModelFolder): Record<(typeof MODEL_FILES)[number], Uint8Array> {
  const json = (v: unknown) => new TextEncoder().encode(`${JSON.stringify(v, null, 2)}\n`);
  return { 'model.json': json(m.modelJson), 'weights.bin': m.weights, 'graft.json': json(m.card), 'report.json': json(m.report) };
}

export async function writeModelFolder(dir: string, files: Record<string, Uint8Array>): Promise<void> {
  await mkdir(dir, { recursive: true });
  for (const [name, bytes] of Object.entries(files)) await writeFile(join(dir, name), bytes);
}

/** @throws Error naming the folder and the missing or bad file. */
export async function readModelFolder(dir: string): Promise<ModelFolder> {
  const read = async (name: string) => {
    try {
      return await readFile(join(dir, name));
    } catch (err) {
      throw new Error(`${dir} is not a graft model folder: cannot read ${name} (${(err as NodeJS.ErrnoException).code ?? (err as Error).message})`, {
        cause: err,
      });
    }
  };
  const card = JSON.parse((await read('graft.json')).toString('utf8')) as ModelCard;
  if (card.formatVersion !== MODEL_FORMAT_VERSION)
    throw new Error(`${dir}/graft.json has format version ${card.formatVersion}; this graft reads ${MODEL_FORMAT_VERSION}`);
  const report = JSON.parse((await read('report.json')).toString('utf8')) as EvaluationReport & { top5?: number };
  // Folders written before the field was named for what it holds.
  if (report.topKAccuracy === undefined && report.top5 !== undefined) report.topKAccuracy = report.top5;
  return {
    card,
    modelJson: JSON.parse((await read('model.json')).toString('utf8')) as Record<string, unknown>,
    weights: new Uint8Array(await read('weights.bin')),
    report,
  };
}

/** Loads the head of a model folder as a TF.js model. */
export async function loadHeadModel(m: ModelFolder): Promise<tf.LayersModel> {
  const mj = m.modelJson as { modelTopology: tf.io.ModelArtifacts['modelTopology']; weightsManifest: { weights: tf.io.WeightsManifestEntry[] }[] };
  const w = m.weights;
  return tf.loadLayersModel(
    tf.io.fromMemory({
      modelTopology: mj.modelTopology,
      weightSpecs: mj.weightsManifest.flatMap((g) => g.weights),
      weightData: w.buffer.slice(w.byteOffset, w.byteOffset + w.byteLength) as ArrayBuffer,
    }),
  );
}

/** Class probabilities for raw bottleneck vectors. */
export async function predict(model: tf.LayersModel, vectors: readonly VectorRow[], dim: number): Promise<Float32Array[]> {
  const out: Float32Array[] = [];
  // SCORE_ROWS at a time: a million test vectors are never one tensor.
  for (let i = 0; i < vectors.length; i += SCORE_ROWS) {
    const rows = vectors.slice(i, i + SCORE_ROWS);
    const flat = new Float32Array(rows.length * dim);
    rows.forEach((v, k) => {
      const place = flat.subarray(k * dim, (k + 1) * dim);
      const values = floatsOf(v, place); // half floats are decoded in place
      if (values !== place) place.set(values);
    });
    const x = tf.tensor2d(flat, [rows.length, dim]);
    const y = model.predict(x) as tf.Tensor2D;
    const data = (await y.data()) as Float32Array;
    const C = y.shape[1];
    tf.dispose([x, y]);
    for (let k = 0; k < rows.length; k++) out.push(data.slice(k * C, (k + 1) * C));
  }
  return out;
}
