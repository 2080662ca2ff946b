import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';
import { isGraphModel, modelArtifacts } from './tfjs-model.js';
import { CATALOGUE, toUrl } from './backbone-record.js';
import { BackboneError } from './errors.js';
import { bottleneckCandidates, convertGraphDef, downstreamOf, findInput, readGraphDef, type GraphDef } from './graphdef.js';
import { retrainHead } from './retrain-graph.js';
import { fetchModel, graphDefSource, readGraphDefBytes, type FetchModelOptions, type ModelFiles } from './model-source.js';
import { isOnnxModel } from './model-files.js';
import { describeOnnx, onnxShapes } from './onnx/onnx-models.js';

/*
 * `graft inspect`: what is inside a model, like the seed's first step of printing every node of
 * its .pb: each node or layer with its op and output shape, the input, and where a bottleneck is.
 */

export interface InspectedNode {
  name: string;
  op: string;
  /** Output shape for a one-image batch; null where the model was not run that far (the decoding head). */
  shape: number[] | null;
}

export interface Inspection {
  origin: string;
  format: 'graphdef' | 'graph-model' | 'layers-model' | 'onnx';
  nodes: InspectedNode[];
  /** Where graft feeds the model, and what the graph does to pixels itself (or, when it does none, the convention graft follows and why). */
  input?: {
    name: string;
    size: number;
    preprocessing?: string;
    suggestedPreprocessing?: { name: string; formula: string; why: string };
    decodingReplaced: boolean;
  };
  /** A retrain.py output graph: its head (final_result, classes) and the bottleneck it reads. */
  retrain?: { output: string; classes: number; dim: number; bottleneck: string };
  /** An ONNX model: the layout of its input, and the classifier graft cuts off (and its classes, when its weights say). */
  onnx?: { layout: 'nchw' | 'nhwc'; opset: number; producer: string; classifier?: { node: string; op: string; classes?: number } };
  /** Likely bottlenecks, best first: the pooled output before the classifier. */
  bottleneckCandidates: string[];
  /** A catalogue backbone: where graft cuts it (its entry's bottleneck, '' = the model's output), whatever the candidates are. */
  catalogue?: { id: string; bottleneck: string };
  /** Why shapes are missing, when they are. */
  note?: string;
}

/**
 * Inspects a model: a catalogue name, a path or URL of a .pb (or an archive holding one, `#member`),
 * or of a TF.js model.json.
 * @throws BackboneError when it cannot be read.
 */
export async function inspectModel(nameOrUrl: string, opts: FetchModelOptions & { inputSize?: number; inputNode?: string } = {}): Promise<Inspection> {
  // A bare word that is neither a catalogue name nor a file here is most likely a mistyped name.
  if (!CATALOGUE[nameOrUrl] && !/^(file|https?|embedded):/.test(nameOrUrl) && !existsSync(nameOrUrl)) {
    throw new BackboneError(`${nameOrUrl}: no such model file here, and not a catalogue name (${Object.keys(CATALOGUE).join(', ')})`);
  }
  const entry = CATALOGUE[nameOrUrl];
  const url = entry?.url ?? toUrl(nameOrUrl);
  const r = await inspectUrl(url, opts);
  if (!entry) return r;
  // The catalogue says where graft cuts its own backbones: that is the cut, first among the candidates.
  const cut = entry.bottleneck || r.nodes.at(-1)?.name || '';
  return {
    ...r,
    catalogue: { id: nameOrUrl, bottleneck: cut },
    bottleneckCandidates: [cut, ...r.bottleneckCandidates.filter((c) => c !== cut)].filter(Boolean),
  };
}

async function inspectUrl(url: string, opts: FetchModelOptions & { inputSize?: number; inputNode?: string }): Promise<Inspection> {
  if (graphDefSource(url)) return inspectGraphDef(readGraphDef(await readGraphDefBytes(url, opts), url), url, opts);
  const files = await fetchModel(url, opts);
  if (isOnnxModel(files)) return inspectOnnx(files, opts.inputSize);
  return isGraphModel(files) ? inspectGraphModel(files, opts.inputSize) : inspectLayersModel(files);
}

/** An ONNX model: every node by the value it makes (what --bottleneck takes), with shapes from one run when it can run. */
async function inspectOnnx(files: ModelFiles, inputSize?: number): Promise<Inspection> {
  const bytes = new Uint8Array(files.weightData);
  const d = describeOnnx(bytes, files.origin);
  const nodes: InspectedNode[] = d.nodes.map((n) => ({ name: n.outputs[0] ?? n.name, op: n.op, shape: null }));
  const size = inputSize || d.input.size || 0;
  const out: Inspection = {
    origin: files.origin,
    format: 'onnx',
    nodes,
    bottleneckCandidates: d.candidates,
    onnx: { layout: d.input.layout, opset: d.opset, producer: d.producer, ...(d.classifier ? { classifier: d.classifier } : {}) },
  };
  if (size) out.input = { name: d.input.name, size, decodingReplaced: false };
  try {
    if (!size) throw new BackboneError('the input size is not in the model: pass --input-size');
    const shapes = await onnxShapes(bytes, d, size);
    for (const n of nodes) n.shape = shapes.get(n.name) ?? null;
  } catch (err) {
    out.note = `shapes not computed: ${(err as Error).message}`;
  }
  return out;
}

async function inspectGraphDef(graph: GraphDef, origin: string, opts: { inputSize?: number; inputNode?: string }): Promise<Inspection> {
  // Constants show their own shape; other nodes the shape a run gives them.
  const nodes: InspectedNode[] = graph.node.map((n) => ({
    name: n.name,
    op: n.op,
    shape: n.op === 'Const' ? (n.attr.value?.tensor?.tensorShape?.dim ?? []).map((d) => Number(d.size)) : null,
  }));
  const candidates = bottleneckCandidates(graph);
  const out: Inspection = { origin, format: 'graphdef', nodes, bottleneckCandidates: candidates };
  const head = retrainHead(graph);
  if (head) out.retrain = { output: head.output, classes: head.classes, dim: head.dim, bottleneck: head.bottleneck };
  try {
    const input = findInput(graph, new Map(graph.node.map((n) => [n.name, n])), { origin, inputSize: opts.inputSize, inputNode: opts.inputNode });
    const fed = downstreamOf(graph, input.name);
    const files = convertGraphDef(graph, '', { origin, inputNode: input.name, inputSize: input.size, bottleneck: fed[fed.length - 1], alsoKeep: fed });
    out.input = {
      name: input.name,
      size: input.size,
      preprocessing: files.graph.preprocessing,
      decodingReplaced: input.pixelsIn,
      ...(files.graph.suggestedPreprocess ? { suggestedPreprocessing: files.graph.suggestedPreprocess } : {}),
    };
    const shapes = await runForShapes(files, input.size, fed);
    for (const n of nodes) n.shape = shapes.get(n.name) ?? n.shape;
  } catch (err) {
    out.note = `shapes not computed: ${(err as Error).message}`;
  }
  return out;
}

async function inspectGraphModel(files: ModelFiles, inputSize?: number): Promise<Inspection> {
  const topo = (files.json.modelTopology as { node: { name: string; op: string }[] }).node;
  const nodes: InspectedNode[] = topo.map((n) => ({ name: n.name, op: n.op, shape: null }));
  const asGraph: GraphDef = { node: topo.map((n) => ({ name: n.name, op: n.op, input: (n as { input?: string[] }).input ?? [], attr: {} })) };
  const out: Inspection = { origin: files.origin, format: 'graph-model', nodes, bottleneckCandidates: bottleneckCandidates(asGraph) };
  try {
    const placeholder = topo.find((n) => n.op === 'Placeholder');
    const dims = (placeholder as { attr?: { shape?: { shape?: { dim?: { size: string }[] } } } } | undefined)?.attr?.shape?.shape?.dim?.map((d) =>
      Number(d.size),
    );
    const size = inputSize || (dims && dims[1] > 0 ? dims[1] : 0);
    if (!placeholder || !size) throw new BackboneError('the input size is not in the model: pass --input-size');
    out.input = { name: placeholder.name, size, decodingReplaced: false };
    const shapes = await runForShapes(
      files,
      size,
      topo.filter((n) => n.op !== 'Const' && n.op !== 'Placeholder').map((n) => n.name),
    );
    for (const n of nodes) n.shape = shapes.get(n.name) ?? (n.name === placeholder.name ? [1, size, size, 3] : null);
  } catch (err) {
    out.note = `shapes not computed: ${(err as Error).message}`;
  }
  return out;
}

async function inspectLayersModel(files: ModelFiles): Promise<Inspection> {
  const model = await tf.loadLayersModel(tf.io.fromMemory(modelArtifacts(files)));
  try {
    const nodes = model.layers.map((l) => ({ name: l.name, op: l.getClassName(), shape: flatShape(l.outputShape) }));
    const pooled = model.layers.filter((l) => /GlobalAveragePooling|GlobalMaxPooling|Flatten/.test(l.getClassName())).map((l) => l.name);
    const shape = model.inputs[0].shape;
    return {
      origin: files.origin,
      format: 'layers-model',
      nodes,
      input: { name: model.inputs[0].name, size: Number(shape[1] ?? 0), decodingReplaced: false },
      bottleneckCandidates: pooled.reverse(),
    };
  } finally {
    model.dispose();
  }
}

function flatShape(s: unknown): number[] | null {
  const first = Array.isArray(s) && Array.isArray(s[0]) ? s[0] : s;
  return Array.isArray(first) ? first.map((d) => (d === null ? 1 : Number(d))) : null;
}

/** Output shape of each named node for one zero image, from one run of the converted graph. */
async function runForShapes(files: ModelFiles, size: number, names: string[]): Promise<Map<string, number[]>> {
  const model = await tf.loadGraphModel(tf.io.fromMemory(modelArtifacts(files)));
  const x = tf.zeros([1, size, size, 3]);
  try {
    const outs = model.execute(x, names) as tf.Tensor | tf.Tensor[];
    const list = Array.isArray(outs) ? outs : [outs];
    const shapes = new Map(names.map((n, i) => [n, list[i].shape] as [string, number[]]));
    for (const t of list) t.dispose();
    return shapes;
  } finally {
    x.dispose();
    model.dispose();
  }
}
