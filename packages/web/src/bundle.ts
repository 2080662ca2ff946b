import { copyFile, mkdir, readFile, writeFile } from 'node:fs/promises';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import * as tf from '@tensorflow/tfjs';
import { HeadLayerError, headLayers as folderHeadLayers, type ModelFolder } from '@graft/head';
import { PREPROCESS, cutAt, isGraphModel, isOnnxModel, modelArtifacts, uniformAffine, type ChannelAffine, type ModelFiles } from '@graft/vision';

import { compareWithClassifier, type WebModel } from './bundle-check.js';

export type { WebModel } from './bundle-check.js';

/*
 * The browser bundle: backbone and head as ONE TF.js model (RGB pixels 0..255 in, class
 * probabilities out, preprocessing inside), with its labels and a static try-it page.
 * A layers backbone is nested in a layers model; a graph backbone gets the preprocessing
 * and the head written into its graph, pruned to what the probabilities need.
 */

/** Version of web/graft-web.json. */
export const WEB_FORMAT_VERSION = 1;

/** Weights up to this size are also written into model.js, so index.html works opened as a file. */
export const EMBED_LIMIT_BYTES = 40 * 1024 * 1024;

/** Largest difference from graft classify's probabilities a bundle may have (checked when it is built). */
export const BUNDLE_TOLERANCE = 1e-3;

/** What writeWebBundle wrote. */
export interface WebBundle {
  dir: string;
  format: WebModel['format'];
  /** Bytes of weights.bin. */
  weightBytes: number;
  /** Whether model.js holds the model too (index.html then works from a file:// URL). */
  embedded: boolean;
  /** Largest probability difference from graft classify's path on the check images. */
  maxDifference: number;
}

/** Thrown when a backbone cannot be bundled (an op or weight type the bundle cannot carry, or results that differ). */
export class BundleError extends Error {
  override name = 'BundleError';
}

const ASSETS = join(dirname(fileURLToPath(import.meta.url)), '..', 'assets');
const require = createRequire(import.meta.url);

/** The head's dense layers; a layer the bundle cannot carry is a BundleError. */
async function headLayers(folder: ModelFolder): ReturnType<typeof folderHeadLayers> {
  try {
    return await folderHeadLayers(folder);
  } catch (err) {
    if (err instanceof HeadLayerError) throw new BundleError(err.message);
    throw err;
  }
}

/** Saves a layers model as model.json content plus one weights buffer. */
async function saveLayers(model: tf.LayersModel): Promise<WebModel> {
  let saved: tf.io.ModelArtifacts | undefined;
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      saved = a;
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  const a = saved!;
  return {
    format: 'layers-model',
    json: {
      format: 'layers-model',
      generatedBy: a.generatedBy,
      convertedBy: 'graft',
      modelTopology: a.modelTopology,
      weightsManifest: [{ paths: ['weights.bin'], weights: a.weightSpecs }],
    },
    weights: new Uint8Array(a.weightData as ArrayBuffer),
  };
}

/** The preprocessing as a layer: a rescaling, or where channels differ (imagenet) a 1x1 depthwise convolution with a bias. */
function preprocessLayer(a: ChannelAffine): tf.layers.Layer {
  const u = uniformAffine(a);
  if (u) return tf.layers.rescaling({ ...u, name: 'graft_preprocess' });
  return tf.layers.depthwiseConv2d({
    kernelSize: 1,
    useBias: true,
    name: 'graft_preprocess',
    weights: [tf.tensor4d([...a.scale], [1, 1, 3, 1]), tf.tensor1d([...a.offset])],
  });
}

async function layersBundle(folder: ModelFolder, files: ModelFiles): Promise<WebModel> {
  const spec = folder.card.backbone;
  const layers = await headLayers(folder);
  const backbone = await tf.loadLayersModel(tf.io.fromMemory(modelArtifacts(files)));
  const cut = cutAt(backbone, spec.bottleneck, files.origin);
  const S = spec.inputSize;
  const image = tf.input({ shape: [S, S, 3], name: 'image' });
  let x = image;
  if (spec.preprocess !== 'none') x = preprocessLayer(PREPROCESS[spec.preprocess]).apply(x) as tf.SymbolicTensor;
  x = cut.apply(x) as tf.SymbolicTensor;
  // As the backbone does: spatial outputs are global-average-pooled, others flattened.
  if (x.shape.length === 4) x = tf.layers.globalAveragePooling2d({ name: 'graft_pool' }).apply(x) as tf.SymbolicTensor;
  else if (x.shape.length !== 2) x = tf.layers.flatten({ name: 'graft_flatten' }).apply(x) as tf.SymbolicTensor;
  layers.forEach((l, i) => {
    const dense = tf.layers.dense({ units: l.units, activation: l.activation, name: l.activation === 'softmax' ? 'graft_softmax' : `graft_hidden_${i}` });
    x = dense.apply(x) as tf.SymbolicTensor;
    dense.setWeights([tf.tensor2d(l.kernel, [l.inputs, l.units]), tf.tensor1d(l.bias)]);
  });
  const model = tf.model({ inputs: image, outputs: x, name: 'graft_web' });
  try {
    return await saveLayers(model);
  } finally {
    // The backbone is a layer of the bundle: disposing the bundle disposes it too.
    model.dispose();
  }
}

type GraphNode = { name: string; op: string; input?: string[]; attr?: Record<string, unknown> };
type WeightSpec = { name: string; shape: number[]; dtype: string; quantization?: { dtype: string } };

const FLOAT = { type: 'DT_FLOAT' };
const constNode = (name: string, dtype: 'DT_FLOAT' | 'DT_INT32', shape: number[]): GraphNode => ({
  name,
  op: 'Const',
  attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: { dim: shape.map((s) => ({ size: String(s) })) } } } },
});

/** Bytes one weight takes in the weights file. @throws BundleError for string weights (no fixed size). */
function weightBytes(w: WeightSpec): number {
  const n = w.shape.reduce((a, b) => a * b, 1);
  const dtype = w.quantization?.dtype ?? w.dtype;
  const per: Record<string, number> = { float32: 4, int32: 4, uint8: 1, bool: 1, uint16: 2, float16: 2, int16: 2, int8: 1 };
  if (!(dtype in per)) throw new BundleError(`weight ${w.name} is a ${dtype} tensor: the bundle cannot carry it`);
  return n * per[dtype];
}

type HeadConst = { name: string; values: Float32Array | Int32Array; shape: number[] };

/** What the graph itself says: its input, its bottleneck, and the bottleneck's rank and size (one probe run). */
async function probeGraph(spec: ModelFolder['card']['backbone'], files: ModelFiles): Promise<{ input: string; bottleneck: string; rank: number; dim: number }> {
  const S = spec.inputSize;
  const loaded = await tf.loadGraphModel(tf.io.fromMemory(modelArtifacts(files)));
  const input = spec.inputNode || loaded.inputs[0].name.replace(/:0$/, '');
  const bottleneck = spec.bottleneck || loaded.outputs[0].name.replace(/:0$/, '');
  const probe = tf.zeros([1, S, S, 3]);
  const out = loaded.execute(probe, bottleneck) as tf.Tensor;
  const shape = { rank: out.rank, dim: out.size };
  tf.dispose([probe, out]);
  loaded.dispose();
  return { input, bottleneck, ...shape };
}

/**
 * The nodes graft adds to a graph: the image placeholder and its preprocessing, pooling (or flattening)
 * of the bottleneck, and the head's dense layers ending in graft/probabilities; with their constants.
 */
function graftNodes(
  spec: ModelFolder['card']['backbone'],
  layers: Awaited<ReturnType<typeof headLayers>>,
  g: { bottleneck: string; rank: number; dim: number },
): { added: GraphNode[]; headConsts: HeadConst[] } {
  const S = spec.inputSize;
  const scale = PREPROCESS[spec.preprocess];
  const added: GraphNode[] = [
    { name: 'graft/image', op: 'Placeholder', attr: { dtype: FLOAT, shape: { shape: { dim: [-1, S, S, 3].map((s) => ({ size: String(s) })) } } } },
    constNode('graft/scale', 'DT_FLOAT', [3]),
    constNode('graft/offset', 'DT_FLOAT', [3]),
    { name: 'graft/scaled', op: 'Mul', input: ['graft/image', 'graft/scale'], attr: { T: FLOAT } },
    { name: 'graft/preprocessed', op: 'AddV2', input: ['graft/scaled', 'graft/offset'], attr: { T: FLOAT } },
  ];
  let features = g.bottleneck;
  const headConsts: HeadConst[] = [
    { name: 'graft/scale', values: Float32Array.from(scale.scale), shape: [3] },
    { name: 'graft/offset', values: Float32Array.from(scale.offset), shape: [3] },
  ];
  if (g.rank === 4) {
    added.push(constNode('graft/pool_axes', 'DT_INT32', [2]), {
      name: 'graft/pool',
      op: 'Mean',
      input: [g.bottleneck, 'graft/pool_axes'],
      attr: { T: FLOAT, Tidx: { type: 'DT_INT32' }, keep_dims: { b: false } },
    });
    headConsts.push({ name: 'graft/pool_axes', values: Int32Array.of(1, 2), shape: [2] });
    features = 'graft/pool';
  } else if (g.rank !== 2) {
    added.push(constNode('graft/flat_shape', 'DT_INT32', [2]), {
      name: 'graft/flat',
      op: 'Reshape',
      input: [g.bottleneck, 'graft/flat_shape'],
      attr: { T: FLOAT, Tshape: { type: 'DT_INT32' } },
    });
    headConsts.push({ name: 'graft/flat_shape', values: Int32Array.of(-1, g.dim), shape: [2] });
    features = 'graft/flat';
  }
  // The head: each dense layer as MatMul + AddV2, then Relu (hidden) or Softmax (the last, graft/probabilities).
  let h = features;
  layers.forEach((l, i) => {
    const p = l.activation === 'softmax' ? 'graft' : `graft/hidden_${i}`;
    added.push(
      constNode(`${p}/kernel`, 'DT_FLOAT', [l.inputs, l.units]),
      constNode(`${p}/bias`, 'DT_FLOAT', [l.units]),
      { name: `${p}/logits`, op: 'MatMul', input: [h, `${p}/kernel`], attr: { T: FLOAT, transpose_a: { b: false }, transpose_b: { b: false } } },
      { name: `${p}/biased`, op: 'AddV2', input: [`${p}/logits`, `${p}/bias`], attr: { T: FLOAT } },
      l.activation === 'softmax'
        ? { name: 'graft/probabilities', op: 'Softmax', input: [`${p}/biased`], attr: { T: FLOAT } }
        : { name: `${p}/relu`, op: 'Relu', input: [`${p}/biased`], attr: { T: FLOAT } },
    );
    headConsts.push({ name: `${p}/kernel`, values: l.kernel, shape: [l.inputs, l.units] }, { name: `${p}/bias`, values: l.bias, shape: [l.units] });
    h = `${p}/relu`;
  });
  return { added, headConsts };
}

/** The names of the nodes an output needs. */
function neededBy(output: string, byName: Map<string, GraphNode>): Set<string> {
  const keep = new Set<string>();
  const stack = [output];
  while (stack.length) {
    const name = stack.pop()!.replace(/^\^/, '').replace(/:\d+$/, '');
    if (keep.has(name)) continue;
    const n = byName.get(name);
    if (!n) continue; // a function's output or library entry: kept with the topology
    keep.add(name);
    stack.push(...(n.input ?? []));
  }
  return keep;
}

/** The kept weights, in manifest order, then the new constants, as one weights file. */
function keptWeights(files: ModelFiles, keep: Set<string>, headConsts: HeadConst[]): { kept: WeightSpec[]; weights: Uint8Array } {
  const specs = files.json.weightsManifest.flatMap((g) => g.weights) as WeightSpec[];
  const data = new Uint8Array(files.weightData);
  const kept: WeightSpec[] = [];
  const parts: Uint8Array[] = [];
  let offset = 0;
  for (const w of specs) {
    const size = weightBytes(w);
    if (keep.has(w.name)) {
      kept.push(w);
      parts.push(data.subarray(offset, offset + size));
    }
    offset += size;
  }
  if (offset !== data.byteLength) throw new BundleError(`${files.origin}: its weights manifest describes ${offset} bytes, the weights are ${data.byteLength}`);
  for (const c of headConsts) {
    kept.push({ name: c.name, shape: c.shape, dtype: c.values instanceof Int32Array ? 'int32' : 'float32' });
    parts.push(new Uint8Array(c.values.buffer, c.values.byteOffset, c.values.byteLength));
  }
  return { kept, weights: new Uint8Array(Buffer.concat(parts)) };
}

async function graphBundle(folder: ModelFolder, files: ModelFiles): Promise<WebModel> {
  const spec = folder.card.backbone;
  const g = await probeGraph(spec, files);
  const { added, headConsts } = graftNodes(spec, await headLayers(folder), g);
  const topology = files.json.modelTopology as { node: GraphNode[]; [k: string]: unknown };
  // The backbone's input becomes an Identity of the preprocessed image; then keep only what the probabilities need.
  const nodes = topology.node
    .map((n) => (n.name === g.input ? { name: g.input, op: 'Identity', input: ['graft/preprocessed'], attr: { T: FLOAT } } : n))
    .concat(added);
  const keep = neededBy('graft/probabilities', new Map(nodes.map((n) => [n.name, n])));
  const { kept, weights } = keptWeights(files, keep, headConsts);
  const { signature: _signature, ...rest } = files.json as Record<string, unknown>;
  return {
    format: 'graph-model',
    json: {
      ...rest,
      format: 'graph-model',
      convertedBy: 'graft',
      modelTopology: { ...topology, node: nodes.filter((n) => keep.has(n.name)) },
      weightsManifest: [{ paths: ['weights.bin'], weights: kept }],
    },
    weights,
  };
}

/**
 * Backbone and head as one TF.js model: input [n, size, size, 3] RGB 0..255, output [n, classes].
 * @throws BundleError when the backbone cannot be carried into the bundle.
 */
export async function buildWebModel(folder: ModelFolder, files: ModelFiles): Promise<WebModel> {
  if (isOnnxModel(files)) throw new BundleError('the backbone is an ONNX model, and the browser bundle is one TF.js model (the try-it page runs TF.js)');
  return isGraphModel(files) ? graphBundle(folder, files) : layersBundle(folder, files);
}

/** The browser build of TF.js in node_modules: the page loads it from the bundle, never from a CDN. */
export function tfjsBrowserScript(): string {
  return join(dirname(require.resolve('@tensorflow/tfjs/package.json')), 'dist', 'tf.es2017.min.js');
}

/**
 * Writes dir (usually MODEL_DIR/web): model.json + weights.bin (the one model), labels.json,
 * graft-web.json, index.html + try-it.js (the try-it page), tf.min.js, and model.js (the model
 * again, for opening index.html as a file) when the weights are small enough.
 * The bundle is checked against graft classify's path before anything is written.
 * @throws BundleError when the backbone cannot be bundled or the bundle disagrees with graft classify.
 */
export async function writeWebBundle(dir: string, folder: ModelFolder, files: ModelFiles): Promise<WebBundle> {
  const web = await buildWebModel(folder, files);
  const maxDifference = await compareWithClassifier(web, folder, files);
  if (!(maxDifference <= BUNDLE_TOLERANCE)) {
    throw new BundleError(`the browser model's probabilities differ from graft classify's by ${maxDifference} (over ${BUNDLE_TOLERANCE}): not written`);
  }
  const m = folder.card;
  const config = {
    formatVersion: WEB_FORMAT_VERSION,
    format: web.format,
    inputSize: m.backbone.inputSize,
    classes: m.classes,
    jobId: m.jobId ?? null,
    backbone: { id: m.backbone.id, url: m.backbone.url, fingerprint: m.backbone.fingerprint },
    test: { top1: folder.report.top1, topKAccuracy: folder.report.topKAccuracy, topK: folder.report.topK, images: folder.report.images },
    maxDifferenceFromClassify: maxDifference,
  };
  const embedded = web.weights.byteLength <= EMBED_LIMIT_BYTES;
  await mkdir(dir, { recursive: true });
  await writeFile(join(dir, 'model.json'), JSON.stringify(web.json));
  await writeFile(join(dir, 'weights.bin'), web.weights);
  await writeFile(join(dir, 'labels.json'), `${JSON.stringify(m.classes, null, 2)}\n`);
  await writeFile(join(dir, 'graft-web.json'), `${JSON.stringify(config, null, 2)}\n`);
  if (embedded) {
    const script = `// The model of this bundle, for index.html opened as a file (browsers do not fetch file:// URLs).\nwindow.GRAFT_EMBEDDED = ${JSON.stringify({ config, model: web.json, weights: Buffer.from(web.weights).toString('base64') })};\n`;
    await writeFile(join(dir, 'model.js'), script);
  }
  await copyFile(tfjsBrowserScript(), join(dir, 'tf.min.js'));
  for (const asset of ['index.html', 'try-it.js']) await copyFile(join(ASSETS, asset), join(dir, asset));
  await writeFile(join(dir, 'NOTICE'), await readFile(join(ASSETS, 'NOTICE')));
  return { dir, format: web.format, weightBytes: web.weights.byteLength, embedded, maxDifference };
}
