import { onnx } from '../../gen/onnx.js';
import { PREPROCESS, type BackboneSpec } from '../backbone-record.js';
import { BackboneError } from '../errors.js';
import { DataType, int, ints } from './onnx-builder.js';
import { PIXELS, VECTORS } from './backbone-onnx.js';

/*
 * ONNX models written by other tools (PyTorch's exporter, tf2onnx, keras2onnx...) as backbones:
 * read, described (their input, layout and size; where the classifier starts), cut at the
 * bottleneck, and wrapped so that they take what every graft backbone takes: uint8 RGB pixels
 * [batch, size, size, 3], preprocessed and laid out inside the graph, pooled vectors out.
 */

/** The oldest opset graft reads: what current exporters write by default and ONNX Runtime Mobile reads. */
export const MIN_OPSET = 13;

type Model = onnx.ModelProto & onnx.ModelProto.$Shape;
type Node = onnx.NodeProto.$Properties;

/** What `graft inspect` shows of an ONNX model. */
export interface OnnxDescription {
  opset: number;
  producer: string;
  input: { name: string; layout: 'nchw' | 'nhwc'; size?: number; dims: (number | string)[] };
  nodes: { name: string; op: string; inputs: string[]; outputs: string[] }[];
  outputs: string[];
  /** Values to cut at, best first: the pooled features the classifier reads. */
  candidates: string[];
  /** The classifier graft would cut off: its node and, when its weights say, how many classes. */
  classifier?: { node: string; op: string; classes?: number };
}

/**
 * Decodes an ONNX model and checks graft can feed it: one image input, an opset it reads, no
 * external weight files.
 * @throws BackboneError naming `origin` and what is wrong.
 */
export function readOnnx(bytes: Uint8Array, origin: string): Model {
  let model: Model;
  try {
    model = onnx.ModelProto.decode(bytes);
  } catch (err) {
    throw new BackboneError(`${origin} is not an ONNX model (truncated, or another format): ${(err as Error).message}`, { cause: err });
  }
  if (!model.graph || !model.graph.node?.length) throw new BackboneError(`${origin} is not an ONNX model: it has no graph`);
  const opset = opsetOf(model);
  if (opset < MIN_OPSET)
    throw new BackboneError(
      `${origin} uses ONNX opset ${opset}; graft reads opset ${MIN_OPSET} or later (export again, e.g. torch.onnx.export(..., opset_version=17))`,
    );
  if ((model.graph.initializer ?? []).some((t) => t.dataLocation === onnx.TensorProto.DataLocation.EXTERNAL)) {
    throw new BackboneError(`${origin} keeps its weights in external files: save it as one file (onnx.save(model, path, save_as_external_data=False))`);
  }
  return model;
}

function opsetOf(model: Model): number {
  const own = (model.opsetImport ?? []).find((o) => !o.domain || o.domain === 'ai.onnx');
  return Number(own?.version ?? 0);
}

/** The graph's image input: the one input that is not a weight. */
function imageInput(model: Model, origin: string): OnnxDescription['input'] & { elemType: number } {
  const weights = new Set((model.graph!.initializer ?? []).map((t) => t.name));
  const inputs = (model.graph!.input ?? []).filter((i) => !weights.has(i.name!));
  if (inputs.length !== 1) throw new BackboneError(`${origin} has ${inputs.length} inputs; graft feeds models of one image input`);
  const i = inputs[0];
  const t = i.type?.tensorType;
  const dims = (t?.shape?.dim ?? []).map((d) =>
    d.dimValue !== undefined && d.dimValue !== null && Number(d.dimValue) > 0 ? Number(d.dimValue) : (d.dimParam ?? '?'),
  );
  if (dims.length !== 4)
    throw new BackboneError(
      `${origin}: its input ${i.name} has ${dims.length} dimensions; graft feeds images [batch, channels, height, width] or [batch, height, width, channels]`,
    );
  if (t?.elemType !== DataType.FLOAT) throw new BackboneError(`${origin}: its input ${i.name} is not float32 (element type ${t?.elemType})`);
  const layout = dims[1] === 3 ? 'nchw' : dims[3] === 3 ? 'nhwc' : undefined;
  if (!layout)
    throw new BackboneError(
      `${origin}: cannot tell the channels of its input ${i.name} [${dims.join(', ')}]: graft feeds 3-channel RGB, channels first or last`,
    );
  const [h, w] = layout === 'nchw' ? [dims[2], dims[3]] : [dims[1], dims[2]];
  const size = typeof h === 'number' && h === w ? h : undefined;
  return { name: i.name!, layout, size, dims, elemType: t.elemType };
}

const POOLS = new Set(['GlobalAveragePool', 'ReduceMean', 'AveragePool', 'GlobalMaxPool']);
const CLASSIFIERS = new Set(['Gemm', 'MatMul']);
const THROUGH = new Set(['Flatten', 'Reshape', 'Squeeze', 'Identity', 'Dropout', 'Unsqueeze']);
const HEAD_OPS = new Set(['Softmax', 'LogSoftmax', 'Sigmoid', 'Identity', 'Add', 'Reshape', 'Flatten', 'Squeeze', 'Dropout', 'Cast']);

/** Describes a model as `graft inspect` shows it. @throws BackboneError as {@link readOnnx}. */
export function describeOnnx(bytes: Uint8Array, origin: string): OnnxDescription {
  const model = readOnnx(bytes, origin);
  const g = model.graph!;
  const producer = new Map<string, Node>();
  for (const n of g.node ?? []) for (const o of n.output ?? []) producer.set(o, n);
  const candidates: string[] = [];
  let classifier: OnnxDescription['classifier'];
  for (const out of g.output ?? []) {
    // Back from the output through the head (softmax, bias, reshapes) to the classifier, then to the pooling before it.
    let at = producer.get(out.name!);
    for (let hops = 0; at && hops < 12 && !CLASSIFIERS.has(at.opType!); hops++) at = HEAD_OPS.has(at.opType!) ? producer.get(at.input![0]) : undefined;
    if (!at || !CLASSIFIERS.has(at.opType!)) continue;
    const w = (g.initializer ?? []).find((t) => t.name === at!.input![1]);
    const transB = at.attribute?.find((a) => a.name === 'transB')?.i;
    classifier ??= { node: at.name || at.output![0], op: at.opType!, ...(w?.dims?.length === 2 ? { classes: Number(w.dims[transB ? 0 : 1]) } : {}) };
    let value = at.input![0];
    for (let hops = 0; hops < 8; hops++) {
      const p = producer.get(value);
      if (!p || POOLS.has(p.opType!) || !THROUGH.has(p.opType!)) break;
      value = p.input![0];
    }
    if (!candidates.includes(value)) candidates.push(value);
  }
  const input = imageInput(model, origin);
  return {
    opset: opsetOf(model),
    producer: [model.producerName, model.producerVersion].filter(Boolean).join(' '),
    input: { name: input.name, layout: input.layout, size: input.size, dims: input.dims },
    nodes: (g.node ?? []).map((n) => ({ name: n.name ?? '', op: n.opType ?? '', inputs: [...(n.input ?? [])], outputs: [...(n.output ?? [])] })),
    outputs: (g.output ?? []).map((o) => o.name!),
    candidates,
    ...(classifier ? { classifier } : {}),
  };
}

/** The value a bottleneck names: a value, else the first output of a node of that name. */
function bottleneckValue(model: Model, name: string, origin: string): string {
  const g = model.graph!;
  const values = new Set([...(g.node ?? []).flatMap((n) => n.output ?? []), ...(g.input ?? []).map((i) => i.name!)]);
  if (values.has(name)) return name;
  const node = (g.node ?? []).find((n) => n.name === name);
  if (node?.output?.[0]) return node.output[0];
  throw new BackboneError(`${origin} has no value or node ${JSON.stringify(name)} (graft inspect lists them)`);
}

/** Every value a subgraph (If, Loop, Scan bodies) reads from outside it. */
function subgraphReads(n: Node): string[] {
  const out: string[] = [];
  const visit = (g: onnx.GraphProto.$Properties) => {
    for (const m of g.node ?? []) {
      out.push(...(m.input ?? []));
      for (const a of m.attribute ?? []) [a.g, ...(a.graphs ?? [])].forEach((s) => s && visit(s));
    }
  };
  for (const a of n.attribute ?? []) [a.g, ...(a.graphs ?? [])].forEach((s) => s && visit(s));
  return out;
}

/** The nodes the value needs, in graph order. */
function neededNodes(model: Model, value: string): Node[] {
  const nodes = model.graph!.node ?? [];
  const producer = new Map<string, Node>();
  for (const n of nodes) for (const o of n.output ?? []) producer.set(o, n);
  const keep = new Set<Node>();
  const stack = [value];
  while (stack.length) {
    const n = producer.get(stack.pop()!);
    if (!n || keep.has(n)) continue;
    keep.add(n);
    stack.push(...(n.input ?? []).filter(Boolean), ...subgraphReads(n));
  }
  return nodes.filter((n) => keep.has(n));
}

/**
 * The model as a graft backbone graph: pixels in, through the spec's preprocessing, in the model's
 * layout, to its bottleneck (the given one, else the pooled features before its classifier), pooled
 * as graft pools (spatial values averaged, others flattened). `probe` runs a graph once to learn the
 * bottleneck's dimensions.
 * @throws BackboneError when the model cannot be fed or cut.
 */
export async function onnxBackboneGraph(
  bytes: Uint8Array,
  spec: BackboneSpec,
  origin: string,
  probe: (model: Uint8Array, inputSize: number) => Promise<number[]>,
): Promise<{ bytes: Uint8Array; bottleneck: string; inputSize: number; dim: number }> {
  const d = describeOnnx(bytes, origin);
  const model = readOnnx(bytes, origin);
  const inputSize = spec.inputSize || d.input.size;
  if (!inputSize) throw new BackboneError(`${origin}: its input ${d.input.name} [${d.input.dims.join(', ')}] does not say its image size: pass --input-size`);
  if (d.input.size && inputSize !== d.input.size) throw new BackboneError(`${origin} takes ${d.input.size}x${d.input.size} images, not ${inputSize}`);
  const bottleneck = spec.bottleneck || d.candidates[0] || d.outputs[0];
  const value = bottleneckValue(model, bottleneck, origin);
  const raw = wrapped(model, d, value, inputSize, spec, undefined);
  const dims = await probe(raw, inputSize);
  const pooled = wrapped(model, d, value, inputSize, spec, dims.length);
  const dim = dims.length === 4 ? (d.input.layout === 'nchw' ? dims[1] : dims[3]) : dims.slice(1).reduce((a, b) => a * b, 1);
  return { bytes: pooled, bottleneck, inputSize, dim };
}

/** The cut model with graft's input and (given the bottleneck's rank) its pooling. */
function wrapped(model: Model, d: OnnxDescription, value: string, inputSize: number, spec: BackboneSpec, rank: number | undefined): Uint8Array {
  const g = model.graph!;
  const opset = opsetOf(model);
  const kept = neededNodes(model, value);
  const used = new Set(kept.flatMap((n) => [...(n.input ?? []), ...subgraphReads(n)]));
  const taken = new Set([...kept.flatMap((n) => n.output ?? []), ...(g.initializer ?? []).map((t) => t.name!)]);
  const name = (base: string) => {
    let n = `graft_${base}`;
    for (let k = 1; taken.has(n); k++) n = `graft_${base}_${k}`;
    taken.add(n);
    return n;
  };
  const consts: onnx.TensorProto.$Properties[] = [];
  const nodes: Node[] = [];
  const node = (op: string, inputs: string[], attrs: onnx.AttributeProto.$Properties[], output = name(op.toLowerCase())): string => {
    nodes.push({ name: output, opType: op, input: inputs, output: [output], attribute: attrs });
    return output;
  };
  const floats = (base: string, v: readonly number[], dims: number[]) => {
    const n = name(base);
    consts.push({ name: n, dataType: DataType.FLOAT, dims, floatData: [...v] });
    return n;
  };
  const attr = (n: string, v: ReturnType<typeof int> | ReturnType<typeof ints>): onnx.AttributeProto.$Properties =>
    'i' in v
      ? { name: n, type: onnx.AttributeProto.AttributeType.INT, i: v.i }
      : { name: n, type: onnx.AttributeProto.AttributeType.INTS, ints: (v as { ints: number[] }).ints };
  // Pixels, preprocessed (per channel, channels last), then in the model's layout under the model's own input name.
  const a = PREPROCESS[spec.preprocess];
  let x = node('Cast', [PIXELS], [attr('to', int(DataType.FLOAT))]);
  x = node('Mul', [x, floats('scale', a.scale, [3])], []);
  x = node('Add', [x, floats('offset', a.offset, [3])], [], d.input.layout === 'nhwc' ? d.input.name : undefined);
  if (d.input.layout === 'nchw') node('Transpose', [x], [attr('perm', ints([0, 3, 1, 2]))], d.input.name);
  nodes.push(...kept);
  let out = value;
  if (rank === 4) {
    const axes = d.input.layout === 'nchw' ? [2, 3] : [1, 2];
    // ReduceMean takes its axes as an input from opset 18.
    if (opset >= 18) {
      const k = name('axes');
      consts.push({ name: k, dataType: DataType.INT64, dims: [2], int64Data: axes });
      out = node('ReduceMean', [value, k], [attr('keepdims', int(0))]);
    } else out = node('ReduceMean', [value], [attr('axes', ints(axes)), attr('keepdims', int(0))]);
  } else if (rank !== undefined && rank !== 2) out = node('Flatten', [value], [attr('axis', int(1))]);
  node('Identity', [out], [], VECTORS);
  const elem = (dims: (number | string)[]) => ({
    tensorType: { elemType: DataType.FLOAT, shape: { dim: dims.map((v) => (typeof v === 'number' ? { dimValue: v } : { dimParam: v })) } },
  });
  const out2: onnx.ModelProto.$Properties = {
    ...model,
    // Initializers need not be listed as inputs from IR 4; every runtime graft targets reads 7.
    irVersion: Math.max(Number(model.irVersion ?? 0), 7),
    graph: {
      ...g,
      node: nodes,
      initializer: [...(g.initializer ?? []).filter((t) => used.has(t.name!)), ...consts],
      input: [
        {
          name: PIXELS,
          type: {
            tensorType: {
              elemType: DataType.UINT8,
              shape: { dim: [{ dimParam: 'batch' }, { dimValue: inputSize }, { dimValue: inputSize }, { dimValue: 3 }] },
            },
          },
        },
      ],
      output: [{ name: VECTORS, type: rank === undefined ? { tensorType: { elemType: DataType.FLOAT } } : elem(['batch', 'dim']) }],
      valueInfo: (g.valueInfo ?? []).filter((v) => used.has(v.name!)),
    },
  };
  return onnx.ModelProto.encode(out2).finish();
}

/**
 * The shape of every node's first output for one zero image: the model run once with each of them
 * made a graph output (for `graft inspect`).
 * @throws OnnxRuntimeError when ONNX Runtime cannot run it.
 */
export async function onnxShapes(bytes: Uint8Array, d: OnnxDescription, size: number): Promise<Map<string, number[]>> {
  const model = readOnnx(bytes, 'the model');
  const g = model.graph!;
  const have = new Set((g.output ?? []).map((o) => o.name));
  const extra = d.nodes.map((n) => n.outputs[0]).filter((v): v is string => Boolean(v) && !have.has(v));
  g.output = [...(g.output ?? []), ...extra.map((name) => ({ name }))];
  const names = (g.output ?? []).map((o) => o.name!);
  const { openOnnxSession } = await import('./onnx-session.js');
  const shapes = new Map<string, number[]>();
  const session = await openOnnxSession(onnx.ModelProto.encode(model).finish(), { input: d.input.name, inputType: 'float32' });
  try {
    const dims = d.input.layout === 'nchw' ? [1, 3, size, size] : [1, size, size, 3];
    for (const [name, v] of Object.entries(await session.shapes(new Float32Array(size * size * 3), dims))) if (names.includes(name)) shapes.set(name, v);
  } finally {
    await session.close();
  }
  return shapes;
}
