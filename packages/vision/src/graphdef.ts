import { createHash } from 'node:crypto';
import { tensorflow } from '../gen/tensorflow.js';
import { BackboneError } from './errors.js';
import { DataType, aligned, attrOf, constValues, floats, nodeOf, type GraphDef, type NodeDef } from './graphdef-nodes.js';
import { inputPlaceholder, rewriteNode } from './graphdef-rewrite.js';
import { RETRAIN_MOBILENET_PREPROCESS, retrainHead } from './retrain-graph.js';

export type { GraphDef } from './graphdef-nodes.js';
import type { GraphSource, ModelFiles, ModelJson } from './model-files.js';

export type { GraphSource } from './model-files.js';

/*
 * Frozen TensorFlow graphs (GraphDef .pb files, like the December 2015 InceptionV3 of retrain.py)
 * read with protobufjs and turned into a TF.js graph model in memory: Const nodes become weights,
 * the graph is cut at the bottleneck and pruned to what it needs, its JPEG decoding head is replaced
 * by graft's own decoding (a Placeholder where the resized image was), and ops TF.js lacks are
 * rewritten. What the graph does to pixels after that (e.g. (x - 128) / 128) stays in the graph.
 */

export interface GraphDefOptions {
  /** Node to cut at. Default `pool_3` when the graph has one, else the candidate {@link inspectGraphDef} finds. */
  bottleneck?: string;
  /** Node to feed. Default: the end of the image decoding head, else the graph's only Placeholder. */
  inputNode?: string;
  /** Input edge when the graph does not say it. */
  inputSize?: number;
  /** For errors: where the bytes came from. */
  origin: string;
  /** Keep what these nodes need too (inspection: every node the input feeds). */
  alsoKeep?: string[];
}

/** Ops whose image head graft replaces with its own decoding and resizing. */
const DECODE_OPS = new Set(['DecodeJpeg', 'DecodePng', 'DecodeImage', 'DecodeBmp', 'DecodeGif']);
const HEAD_OPS = new Set(['Cast', 'ExpandDims', 'ResizeBilinear', 'ResizeBicubic', 'ResizeNearestNeighbor', 'Identity']);
/** Ops that end a network in a classifier: the bottleneck is the pooled output feeding the first of them. */
const CLASSIFIER_OPS = new Set(['MatMul', 'Softmax']);
const POOL_OPS = new Set(['AvgPool', 'MaxPool', 'Mean']);

/**
 * Decodes a frozen GraphDef, checking that every input it names is there.
 * @throws BackboneError naming `origin` when the bytes are not one (truncated, another format).
 */
export function readGraphDef(bytes: Uint8Array, origin: string): GraphDef {
  let graph: GraphDef;
  try {
    graph = tensorflow.GraphDef.decode(bytes) as unknown as GraphDef;
  } catch (err) {
    throw new BackboneError(`${origin} is not a TensorFlow GraphDef (truncated, or another format): ${(err as Error).message}`, { cause: err });
  }
  if (graph.node.length === 0) throw new BackboneError(`${origin} is not a TensorFlow GraphDef: it has no nodes`);
  const names = new Set(graph.node.map((n) => n.name));
  for (const n of graph.node) {
    if (!n.name || !n.op) throw new BackboneError(`${origin} is not a TensorFlow GraphDef: a node has no name or op (truncated?)`);
    for (const i of n.input) {
      if (!names.has(nodeOf(i))) throw new BackboneError(`${origin}: node ${n.name} reads ${nodeOf(i)}, which is not in the graph (is the file truncated?)`);
    }
  }
  checkConstBudget(graph, bytes.byteLength, origin);
  return graph;
}

/** Bytes that constants written as fewer values than their shape (one value filling it) may expand to, beyond the file's own size. */
const EXPANDED_CONST_BYTES = 64 * 1024 * 1024;

/**
 * Refuses a graph whose constants would take more memory than the file could hold: a constant of one
 * value fills its whole declared shape when read, so a few bytes can declare gigabytes. Their sum,
 * shape by dtype, must stay within the file's size and {@link EXPANDED_CONST_BYTES}, checked before anything is allocated.
 */
function checkConstBudget(graph: GraphDef, fileBytes: number, origin: string): void {
  const budget = fileBytes + EXPANDED_CONST_BYTES;
  let total = 0;
  for (const n of graph.node) {
    const t = n.attr?.value?.tensor;
    if (!t) continue;
    const dims = (t.tensorShape?.dim ?? []).map((d) => Number(d.size));
    if (dims.some((d) => !Number.isSafeInteger(d) || d < 0))
      throw new BackboneError(`${origin}: Const node ${n.name} has shape [${dims.slice(0, 8)}], which no tensor has`);
    const elements = dims.reduce((a, b) => a * b, 1);
    const written = t.tensorContent?.length ? 0 : Math.max(t.floatVal.length, t.doubleVal.length, t.intVal.length, t.int64Val.length);
    // Only what is filled in on reading counts: content is in the file already.
    if (t.tensorContent?.length || written >= elements) continue;
    total += elements * 8;
    if (!(total <= budget))
      throw new BackboneError(
        `${origin}: its constants would fill more than ${formatBytes(budget)} from ${formatBytes(fileBytes)} of file (node ${n.name}: shape [${dims.slice(0, 8)}] from ${written} values): not a model graft reads`,
      );
  }
}

function formatBytes(n: number): string {
  return n >= 1024 ** 3 ? `${(n / 1024 ** 3).toFixed(1)} GiB` : n >= 1024 ** 2 ? `${(n / 1024 ** 2).toFixed(1)} MiB` : `${n} bytes`;
}

/** Where graft feeds the graph, and what size. */
export function findInput(graph: GraphDef, byName: Map<string, NodeDef>, o: GraphDefOptions): { name: string; size: number; pixelsIn: boolean } {
  const consumers = new Map<string, NodeDef[]>();
  for (const n of graph.node) for (const i of n.input) consumers.set(nodeOf(i), [...(consumers.get(nodeOf(i)) ?? []), n]);
  const sizeOf = (n: NodeDef): number | undefined => {
    if (n.op.startsWith('Resize') && n.input[1]) {
      const c = byName.get(nodeOf(n.input[1]));
      if (c?.op === 'Const') {
        const v = constValues(c, o.origin);
        const hw = Array.from(new Int32Array(aligned(v.bytes)));
        if (hw.length === 2 && hw[0] === hw[1]) return hw[0];
        throw new BackboneError(`${o.origin}: ${n.name} resizes to ${hw.join('x')}; graft feeds square images only`);
      }
    }
    const dims = attrOf(n, 'shape')?.shape?.dim;
    if (dims && dims.length === 4 && Number(dims[1].size) > 0 && Number(dims[1].size) === Number(dims[2].size)) return Number(dims[1].size);
    return undefined;
  };
  const need = (name: string, size: number | undefined, pixelsIn: boolean) => {
    const s = o.inputSize || size;
    if (!s) throw new BackboneError(`${o.origin}: the input node ${name} does not say its image size: pass --input-size`);
    return { name, size: s, pixelsIn };
  };
  if (o.inputNode) {
    const n = byName.get(nodeOf(o.inputNode));
    if (!n) throw new BackboneError(`${o.origin} has no node ${JSON.stringify(o.inputNode)} (graft inspect lists them)`);
    return need(n.name, sizeOf(n), false);
  }
  const decode = graph.node.find((n) => DECODE_OPS.has(n.op));
  if (decode) {
    // Follow the decoding head (cast, batch dimension, resize) to where the image is ready.
    let at = decode;
    for (;;) {
      const next = (consumers.get(at.name) ?? []).filter((c) => HEAD_OPS.has(c.op));
      if (next.length !== 1) break;
      at = next[0];
    }
    if (at === decode) throw new BackboneError(`${o.origin}: cannot follow the image decoding head after ${decode.name}: pass --input-node`);
    return need(at.name, sizeOf(at), true);
  }
  let placeholders = graph.node.filter((n) => n.op === 'Placeholder' && (attrOf(n, 'dtype')?.type ?? DataType.DT_FLOAT) === DataType.DT_FLOAT);
  // Several: the one the bottleneck reads (retrain.py's graphs also hold a ground-truth placeholder).
  if (placeholders.length > 1) {
    const target = nodeOf(o.bottleneck || retrainHead(graph)?.bottleneck || '');
    const feeding = byName.has(target) ? ancestorsOf(byName, target) : undefined;
    if (feeding) placeholders = placeholders.filter((p) => feeding.has(p.name));
  }
  if (placeholders.length === 1) return need(placeholders[0].name, sizeOf(placeholders[0]), false);
  throw new BackboneError(
    `${o.origin}: cannot tell which node takes the image (${placeholders.length} float placeholders, no image decoding): pass --input-node`,
  );
}

/** What the graph does to pixels right after its input: Sub/Mul/RealDiv/Add by constants, as a formula. */
function describePreprocessing(input: string, graph: GraphDef, byName: Map<string, NodeDef>, origin: string): string | undefined {
  let expr = 'x';
  let at = input;
  for (let step = 0; step < 4; step++) {
    const next = graph.node.find((n) => n.input.some((i) => nodeOf(i) === at) && ['Sub', 'Mul', 'RealDiv', 'Add', 'AddV2'].includes(n.op));
    if (!next) break;
    const other = next.input.map((i) => byName.get(nodeOf(i))).find((n) => n && n.name !== at && n.op === 'Const');
    if (!other) break;
    const v = floats(other, origin);
    if (v.length !== 1) break;
    const sym = { Sub: '-', Mul: '*', RealDiv: '/', Add: '+', AddV2: '+' }[next.op as 'Sub'];
    expr = `(${expr} ${sym} ${+v[0].toPrecision(6)})`;
    at = next.name;
  }
  return expr === 'x' ? undefined : expr.replace(/^\((.*)\)$/, '$1');
}

/**
 * Candidates for the bottleneck: the pooled output that feeds the first classifier op (MatMul or
 * Softmax), through reshapes, squeezes and identities; `pool_3` first when the graph has it.
 */
export function bottleneckCandidates(graph: GraphDef): string[] {
  const byName = new Map(graph.node.map((n) => [n.name, n]));
  const out: string[] = [];
  // A retrain.py graph says it: the node its head reads (not final_result).
  const retrained = retrainHead(graph)?.bottleneck;
  if (retrained) out.push(retrained);
  if (byName.has('pool_3') && !out.includes('pool_3')) out.push('pool_3');
  for (const cls of graph.node.filter((n) => CLASSIFIER_OPS.has(n.op))) {
    let at = byName.get(nodeOf(cls.input[0] ?? ''));
    for (let hops = 0; at && hops < 8; hops++) {
      if (POOL_OPS.has(at.op)) {
        if (!out.includes(at.name)) out.push(at.name);
        break;
      }
      if (!['Reshape', 'Squeeze', 'Identity', 'CheckNumerics', 'Dropout', 'MatMul', 'BiasAdd', 'Add'].includes(at.op)) break;
      at = byName.get(nodeOf(at.input[0] ?? ''));
    }
  }
  return out;
}

/**
 * Converts a GraphDef to a TF.js graph model cut at its bottleneck: the files as every loader
 * takes them, and how the conversion went.
 * @throws BackboneError naming a node or op that cannot be converted.
 */
export function convertGraphDef(graph: GraphDef, pbSha256: string, o: GraphDefOptions): ModelFiles & { graph: GraphSource } {
  const byName = new Map(graph.node.map((n) => [n.name, n]));
  const input = findInput(graph, byName, o);
  const bottleneck = nodeOf(o.bottleneck || bottleneckCandidates(graph)[0] || '');
  if (!bottleneck) throw new BackboneError(`${o.origin}: no pooled output before a classifier found: pass --bottleneck NODE (graft inspect lists the nodes)`);
  if (!byName.has(bottleneck)) throw new BackboneError(`${o.origin} has no node ${JSON.stringify(bottleneck)} (graft inspect lists them)`);

  const keep = neededNodes(byName, [bottleneck, ...(o.alsoKeep ?? [])], input.name);
  if (!keep.has(input.name)) throw new BackboneError(`${o.origin}: ${bottleneck} does not depend on the input ${input.name}`);

  const rewritten = graph.node
    .filter((n) => keep.has(n.name))
    .flatMap((n) => (n.name === input.name ? [inputPlaceholder(n.name, input.size)] : rewriteNode(n, byName, o.origin)));
  // Rewrites can leave constants nothing reads (the 8-bit weights of a folded Dequantize): drop them.
  const after = new Map(rewritten.map((n) => [n.name, n]));
  const used = neededNodes(after, [bottleneck, ...(o.alsoKeep ?? [])], input.name);
  const nodes = rewritten.filter((n) => used.has(n.name));

  const { specs, all, topology } = weightsAndTopology(nodes, o.origin);
  const preprocessing = describePreprocessing(input.name, graph, byName, o.origin);
  const head = retrainHead(graph);
  const source: GraphSource = {
    sha256: pbSha256,
    inputNode: input.name,
    inputSize: input.size,
    bottleneck,
    pixelsIn: input.pixelsIn,
    preprocessing,
    ...(head ? { retrain: { output: head.output, classes: head.classes, dim: head.dim } } : {}),
    ...(head && !input.pixelsIn && !preprocessing ? { suggestedPreprocess: { ...RETRAIN_MOBILENET_PREPROCESS } } : {}),
  };
  const json: ModelJson = {
    format: 'graph-model',
    generatedBy: 'graft (from a TensorFlow GraphDef)',
    graftGraphSource: source,
    modelTopology: { node: topology, versions: { producer: graph.versions?.producer ?? graph.version ?? 0 } },
    weightsManifest: [{ paths: ['weights.bin'], weights: specs }],
  };
  return {
    json,
    weightData: all.buffer.slice(all.byteOffset, all.byteOffset + all.byteLength) as ArrayBuffer,
    weightsSha256: createHash('sha256').update(all).digest('hex'),
    origin: o.origin,
    graph: source,
  };
}

/** Every node the named one depends on (itself included). */
function ancestorsOf(byName: Map<string, NodeDef>, name: string): Set<string> {
  const seen = new Set<string>();
  const stack = [name];
  while (stack.length) {
    const n = byName.get(stack.pop()!);
    if (!n || seen.has(n.name)) continue;
    seen.add(n.name);
    for (const i of n.input) if (!i.startsWith('^')) stack.push(nodeOf(i));
  }
  return seen;
}

/** Everything the outputs need, back to the input (control dependencies dropped: nothing runs for effect here). */
function neededNodes(byName: Map<string, NodeDef>, outputs: string[], input: string): Set<string> {
  const keep = new Set<string>();
  const stack = [...outputs];
  while (stack.length) {
    const name = stack.pop()!;
    if (keep.has(name)) continue;
    keep.add(name);
    if (name === input) continue;
    for (const i of byName.get(name)!.input) if (!i.startsWith('^')) stack.push(nodeOf(i));
  }
  return keep;
}

/** Const nodes as weights (in graph order, concatenated once) and the other nodes as TF.js reads them. */
function weightsAndTopology(
  nodes: NodeDef[],
  origin: string,
): { specs: { name: string; shape: number[]; dtype: string }[]; all: Buffer; topology: Record<string, unknown>[] } {
  const specs: { name: string; shape: number[]; dtype: string }[] = [];
  const parts: Uint8Array[] = [];
  const topology: Record<string, unknown>[] = [];
  for (const n of nodes) {
    if (n.op === 'Const') {
      const v = constValues(n, origin);
      specs.push({ name: n.name, shape: v.shape, dtype: v.dtype });
      parts.push(v.bytes);
      const dtype = v.dtype === 'float32' ? 'DT_FLOAT' : 'DT_INT32';
      topology.push({
        name: n.name,
        op: 'Const',
        attr: { dtype: { type: dtype }, value: { tensor: { dtype, tensorShape: { dim: v.shape.map((s) => ({ size: String(s) })) } } } },
      });
    } else {
      // The proto's JSON form (camelCase, enums by name, bytes in base64) is what TF.js reads.
      const json = tensorflow.NodeDef.toObject(n as unknown as tensorflow.NodeDef, { enums: String, longs: String, bytes: String });
      delete json.device;
      topology.push(json);
    }
  }
  return { specs, all: Buffer.concat(parts), topology };
}

/** Every node the input feeds, in graph order: what has an output shape once the graph is fed. */
export function downstreamOf(graph: GraphDef, input: string): string[] {
  const reached = new Set([input]);
  let grew = true;
  while (grew) {
    grew = false;
    for (const n of graph.node) {
      if (!reached.has(n.name) && n.input.some((i) => !i.startsWith('^') && reached.has(nodeOf(i)))) {
        reached.add(n.name);
        grew = true;
      }
    }
  }
  return graph.node.filter((n) => reached.has(n.name)).map((n) => n.name);
}

/** Reads and converts a .pb in one step. */
export function graphDefModel(bytes: Uint8Array, o: GraphDefOptions): ModelFiles & { graph: GraphSource } {
  const sha = createHash('sha256').update(bytes).digest('hex');
  return convertGraphDef(readGraphDef(bytes, o.origin), sha, o);
}

export { tensorflow };
