import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { resolve } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import {
  PREPROCESS,
  USER_MODEL_POLICY,
  graphDefModel,
  loadBackbone,
  parseBackbone,
  readGraphDef,
  retrainHead,
  retrainHeadWeights,
  type Backbone,
} from '@graft/vision';
import { evaluatePredictions } from './evaluate.js';
import { loadHeadModel, modelFiles, packageModel, predict, writeModelFolder, type ModelFolder } from './model.js';
import { resolveTrainOptions } from './options.js';

/*
 * `graft import`: a retrain.py output graph (output_graph.pb + output_labels.txt) as a graft model
 * folder. The graph's base becomes the backbone (cut where retrain.py's head reads it), its
 * final_training_ops the head; the folder is checked against the original graph run whole to
 * final_result before it is written.
 */

/** Largest difference of any probability from the original graph's that an import accepts. */
export const IMPORT_TOLERANCE = 1e-4;

export interface ImportOptions {
  /** Preprocessing, when the graph does none and retrain.py's convention is not the one it was trained with. */
  preprocess?: string;
  cacheDir?: string;
  /** Decoded test pictures at any size (RGB, 0..255): resized to the input size, run both ways. Default: generated ones. */
  pictures?: { pixels: Uint8Array; size: number }[];
}

export interface ImportResult {
  folder: ModelFolder;
  maxDifference: number;
  pictures: number;
}

/**
 * Reads a retrain.py graph and its labels and writes a graft model folder that classifies as the graph does.
 * @throws Error naming the file when it is not a retrain.py graph, when the labels do not match its
 * head (both counts named), or when the folder would not match the graph within IMPORT_TOLERANCE.
 */
export async function importRetrainGraph(pbPath: string, labelsPath: string, outDir: string, o: ImportOptions = {}): Promise<ImportResult> {
  const file = resolve(pbPath);
  const bytes = new Uint8Array(await readFile(file));
  const graph = readGraphDef(bytes, file);
  const head = retrainHead(graph);
  if (!head)
    throw new Error(
      `${pbPath} is not a retrain.py output graph (no input_1/BottleneckInputPlaceholder read by final_training_ops): graft inspect shows its nodes; use it with --backbone`,
    );
  const labels = (await readFile(labelsPath, 'utf8'))
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter(Boolean);
  if (labels.length !== head.classes)
    throw new Error(`the graph's head has ${head.classes} classes, ${labelsPath} lists ${labels.length}: they must be retrain.py's pair`);
  if (new Set(labels).size !== labels.length) throw new Error(`${labelsPath} names a class twice`);
  const { kernel, bias } = retrainHeadWeights(graph, head, file);
  const backbone = await loadBackbone(parseBackbone(file, { bottleneck: head.bottleneck, ...(o.preprocess ? { preprocess: o.preprocess } : {}) }), {
    ...USER_MODEL_POLICY,
    cacheDir: o.cacheDir,
  });
  try {
    if (backbone.info.dim !== head.dim) throw new Error(`${pbPath}: ${head.bottleneck} gives ${backbone.info.dim} values, retrain.py's head reads ${head.dim}`);
    const options = resolveTrainOptions({ standardize: false }, labels.length);
    const trained = {
      dim: head.dim,
      classes: labels,
      kernel,
      bias,
      mean: new Float32Array(head.dim),
      std: new Float32Array(head.dim).fill(1),
      options,
      history: [],
      bestEpoch: 0,
      stoppedEarly: false,
    };
    const folder = await packageModel(trained, backbone.info, evaluatePredictions([], [], labels));
    const pictures = o.pictures ?? testPictures();
    const maxDifference = await compareWithGraph(bytes, head.output, backbone, folder, pictures);
    if (maxDifference > IMPORT_TOLERANCE)
      throw new Error(`the imported model differs from ${pbPath} by ${maxDifference.toExponential(2)} (over ${IMPORT_TOLERANCE}): not written`);
    folder.card.importedFrom = {
      kind: 'retrain.py',
      graph: file,
      sha256: createHash('sha256').update(bytes).digest('hex'),
      labels: resolve(labelsPath),
      pictures: pictures.length,
      maxDifference,
    };
    await writeModelFolder(outDir, modelFiles(folder));
    return { folder, maxDifference, pictures: pictures.length };
  } finally {
    backbone.dispose();
  }
}

/** Pictures with structure at every scale (gradients, stripes, noise), deterministic. */
function testPictures(): { pixels: Uint8Array; size: number }[] {
  const size = 64;
  return [0, 1, 2, 3].map((k) => {
    const px = new Uint8Array(size * size * 3);
    let seed = 7 + k;
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        seed = (seed * 1664525 + 1013904223) >>> 0;
        const i = (y * size + x) * 3;
        px[i] = (x * 4 * (k + 1)) % 256;
        px[i + 1] = (y * 3 + ((x >> (k + 1)) & 1) * 90) % 256;
        px[i + 2] = seed >>> 24;
      }
    }
    return { pixels: px, size };
  });
}

/**
 * The largest difference between the folder's probabilities (backbone cut at the bottleneck, graft's
 * head) and the original graph's final_result, run whole, on the same pixels.
 */
async function compareWithGraph(
  bytes: Uint8Array,
  output: string,
  backbone: Backbone,
  folder: ModelFolder,
  pictures: { pixels: Uint8Array; size: number }[],
): Promise<number> {
  const b = backbone.info;
  const S = b.inputSize;
  const whole = graphDefModel(bytes, { origin: 'the original graph', bottleneck: output, inputNode: b.inputNode, inputSize: S });
  const original = await tf.loadGraphModel(
    tf.io.fromMemory({
      modelTopology: whole.json.modelTopology,
      weightSpecs: whole.json.weightsManifest.flatMap((g) => g.weights) as tf.io.WeightsManifestEntry[],
      weightData: whole.weightData,
    }),
  );
  const head = await loadHeadModel(folder);
  try {
    const resized = pictures.map((p) =>
      tf.tidy(() =>
        tf.image
          .resizeBilinear(tf.tensor3d(p.pixels, [p.size, p.size, 3], 'int32').toFloat(), [S, S])
          .round()
          .clipByValue(0, 255),
      ),
    );
    const pixels = await Promise.all(resized.map(async (t) => Uint8Array.from((await t.data()) as Float32Array)));
    tf.dispose(resized);
    const ours = await predict(head, await backbone.embed(pixels), b.dim);
    // The original graph is fed as retrain.py fed it: its own preprocessing inside, or the convention outside.
    const { scale, offset } = PREPROCESS[b.preprocess];
    let worst = 0;
    for (let i = 0; i < pixels.length; i++) {
      const x = tf.tidy(() =>
        tf.tensor4d(
          Float32Array.from(pixels[i], (v, j) => v * scale[j % 3] + offset[j % 3]),
          [1, S, S, 3],
        ),
      );
      const y = original.execute(x, output) as tf.Tensor;
      const theirs = (await y.data()) as Float32Array;
      tf.dispose([x, y]);
      for (let c = 0; c < theirs.length; c++) worst = Math.max(worst, Math.abs(theirs[c] - ours[i][c]));
    }
    return worst;
  } finally {
    original.dispose();
    head.dispose();
  }
}
