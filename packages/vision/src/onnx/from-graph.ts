import { DataType, int, ints } from './onnx-builder.js';
import { ConversionError, TfOps, type Activation, type Padding, type Value } from './tf-ops.js';

/*
 * A TF.js graph model (a TensorFlow GraphDef in TF.js's JSON form: TF Hub models, and the graphs graft
 * converts from .pb files) as ONNX: walked back from the bottleneck node, each op written through
 * TfOps; Const nodes are the weights.
 */

/** An attribute in the GraphDef's JSON form (numbers of 64-bit fields as strings, bytes in base64). */
interface JsonAttr {
  s?: string;
  i?: string | number;
  f?: number;
  b?: boolean;
  type?: string;
  list?: { i?: (string | number)[]; s?: string[]; f?: number[] };
  shape?: { dim?: { size: string | number }[]; unknownRank?: boolean };
}
export interface GraphNode {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, JsonAttr>;
}
export interface GraphModelJson {
  node: GraphNode[];
}

type Weights = Map<string, { data: Float32Array | Int32Array; shape: number[] }>;

/**
 * Writes the graph from its input (the given node, else its only Placeholder) to `output` into `ops`.
 * @returns the output node's value.
 * @throws ConversionError naming the first node it cannot write.
 */
export function writeGraphModel(ops: TfOps, src: { json: GraphModelJson; weights: Weights; output: string; input?: string }, input: Value): Value {
  const byName = new Map(src.json.node.map((n) => [n.name, n]));
  const inputName = src.input ?? src.json.node.filter((n) => n.op === 'Placeholder').map((n) => n.name)[0];
  if (!inputName || !byName.has(inputName)) throw new ConversionError('the graph has no input node');
  const w = new GraphWriter(ops, byName, src.weights);
  w.values.set(inputName, [input]);
  return w.value(src.output);
}

const str = (a: JsonAttr | undefined): string | undefined => (a?.s === undefined ? undefined : Buffer.from(a.s, 'base64').toString('utf8'));
const num = (a: JsonAttr | undefined, d: number): number => (a?.i !== undefined ? Number(a.i) : a?.f !== undefined ? a.f : d);
const list = (a: JsonAttr | undefined): number[] => (a?.list?.i ?? []).map(Number);

/** `name:1` is output 1 of node `name`; `^name` a control input (dropped). */
function ref(input: string): { node: string; index: number } {
  const m = /^(.*?)(?::(\d+))?$/.exec(input)!;
  return { node: m[1], index: m[2] ? Number(m[2]) : 0 };
}

const UNARY: Record<string, string> = { Sqrt: 'Sqrt', Exp: 'Exp', Log: 'Log', Neg: 'Neg', Abs: 'Abs', Floor: 'Floor', Ceil: 'Ceil' };
const ACTIVATION: Record<string, Activation> = {
  Relu: 'relu',
  Relu6: 'relu6',
  Elu: 'elu',
  Selu: 'selu',
  Sigmoid: 'sigmoid',
  Tanh: 'tanh',
  Softplus: 'softplus',
  Softsign: 'softsign',
};
const BINARY: Record<string, 'Add' | 'Sub' | 'Mul' | 'Div' | 'Max' | 'Min'> = {
  Add: 'Add',
  AddV2: 'Add',
  BiasAdd: 'Add',
  Sub: 'Sub',
  Mul: 'Mul',
  RealDiv: 'Div',
  Maximum: 'Max',
  Minimum: 'Min',
};
const PASS = new Set(['Identity', 'StopGradient', 'CheckNumerics', 'Snapshot', 'PreventGradient', 'PlaceholderWithDefault', 'IdentityN']);

class GraphWriter {
  readonly values = new Map<string, Value[]>();

  constructor(
    private readonly ops: TfOps,
    private readonly byName: Map<string, GraphNode>,
    private readonly weights: Weights,
  ) {}

  value(input: string): Value {
    const { node, index } = ref(input);
    let outs = this.values.get(node);
    if (!outs) {
      const n = this.byName.get(node);
      if (!n) throw new ConversionError(`node ${node} is not in the graph`);
      outs = this.write(n);
      this.values.set(node, outs);
    }
    const v = outs[index];
    if (!v) throw new ConversionError(`node ${node} has no output ${index}`);
    return v;
  }

  private inputs(n: GraphNode): Value[] {
    return (n.input ?? []).filter((i) => !i.startsWith('^')).map((i) => this.value(i));
  }

  private constOf(v: Value, what: string, n: GraphNode): { data: Float32Array | Int32Array; shape: number[] } {
    if (!v.constant) throw new ConversionError(`node ${n.name} (${n.op}): its ${what} is not a constant`);
    return v.constant;
  }

  private floatsOf(v: Value, what: string, n: GraphNode): Float32Array {
    const k = this.constOf(v, what, n).data;
    return k instanceof Float32Array ? k : Float32Array.from(k);
  }

  private write(n: GraphNode): Value[] {
    const ops = this.ops;
    const a = n.attr ?? {};
    if (n.op === 'Const') {
      const w = this.weights.get(n.name);
      if (!w) throw new ConversionError(`constant ${n.name} has no weights`);
      return [{ name: '', rank: w.shape.length, constant: w }];
    }
    if (n.op === 'Placeholder') throw new ConversionError(`the graph has a second input, ${n.name}`);
    const x = this.inputs(n);
    const format = str(a.data_format);
    if (format && format !== 'NHWC' && format !== 'NDHWC') throw new ConversionError(`node ${n.name} (${n.op}) is ${format}`);
    if (PASS.has(n.op)) return n.op === 'IdentityN' ? x : [x[0]];
    const folded =
      x.length && x.every((v) => v.constant)
        ? foldConstant(
            n.op,
            x.map((v) => v.constant!),
          )
        : undefined;
    if (folded) return [{ name: '', rank: folded.shape.length, constant: folded }];
    if (n.op in ACTIVATION) return [ops.activation(x[0], ACTIVATION[n.op], n.name)];
    if (n.op in UNARY) return [ops.unary(UNARY[n.op], x[0], n.name)];
    if (n.op in BINARY) return [ops.binary(BINARY[n.op], x[0], x[1], n.name)];
    const write = this.writers[n.op];
    if (!write) throw new ConversionError(`node ${n.name} is a ${n.op}, which graft cannot convert to ONNX`);
    return [write(n, x, a)];
  }

  /** The ops with their own rules (elementwise ones are in the tables above). */
  private readonly writers: Record<string, (n: GraphNode, x: Value[], a: Record<string, JsonAttr>) => Value> = {
    LeakyRelu: (n, x, a) => this.ops.activation(x[0], { leaky: num(a.alpha, 0.2) }, n.name),
    Softmax: (n, x) => this.ops.activation(x[0], 'softmax', n.name),
    Rsqrt: (n, x) => this.ops.unary('Reciprocal', this.ops.unary('Sqrt', x[0], `${n.name}/sqrt`), n.name),
    Square: (n, x) => this.ops.binary('Mul', x[0], x[0], n.name),
    AddN: (n, x) => x.slice(1).reduce((acc, v, k) => this.ops.binary('Add', acc, v, `${n.name}_${k}`), x[0]),
    Conv2D: (n, x) => this.conv(n, x),
    DepthwiseConv2dNative: (n, x) => this.conv(n, x),
    _FusedConv2D: (n, x) => this.conv(n, x),
    FusedDepthwiseConv2dNative: (n, x) => this.conv(n, x),
    MaxPool: (n, x, a) => this.pool(n, x, a),
    AvgPool: (n, x, a) => this.pool(n, x, a),
    Mean: (n, x, a) => this.ops.reduce('ReduceMean', x[0], Array.from(this.constOf(x[1], 'axes', n).data), a.keep_dims?.b ?? false, n.name),
    Max: (n, x, a) => this.ops.reduce('ReduceMax', x[0], Array.from(this.constOf(x[1], 'axes', n).data), a.keep_dims?.b ?? false, n.name),
    ConcatV2: (n, x) =>
      this.ops.concat(
        x.slice(0, -1).map((v) => this.materialised(v, n)),
        this.constOf(x[x.length - 1], 'axis', n).data[0],
        n.name,
      ),
    Concat: (n, x) =>
      this.ops.concat(
        x.slice(1).map((v) => this.materialised(v, n)),
        this.constOf(x[0], 'axis', n).data[0],
        n.name,
      ),
    Reshape: (n, x) => this.ops.reshape(x[0], Array.from(this.constOf(x[1], 'shape', n).data), n.name),
    Squeeze: (n, x, a) => {
      const dims = list(a.squeeze_dims).length ? list(a.squeeze_dims) : list(a.axis);
      if (!dims.length) throw new ConversionError(`node ${n.name} (Squeeze) names no axes`);
      const out = this.ops.b.node('Squeeze', [this.ops.nhwc(x[0]), this.ops.b.int64s(`${n.name}/axes`, dims)], {}, n.name);
      return { name: out, rank: x[0].rank === undefined ? undefined : x[0].rank - dims.length };
    },
    ExpandDims: (n, x) => {
      const out = this.ops.b.node('Unsqueeze', [this.ops.nhwc(x[0]), this.ops.b.int64s(`${n.name}/axes`, [this.constOf(x[1], 'axis', n).data[0]])], {}, n.name);
      return { name: out, rank: x[0].rank === undefined ? undefined : x[0].rank + 1 };
    },
    MatMul: (n, x) => this.matMul(n, x),
    _FusedMatMul: (n, x) => this.matMul(n, x),
    FusedBatchNorm: (n, x, a) => this.batchNorm(n, x, a),
    FusedBatchNormV2: (n, x, a) => this.batchNorm(n, x, a),
    FusedBatchNormV3: (n, x, a) => this.batchNorm(n, x, a),
    Pad: (n, x) => this.pad(n, x, 0),
    PadV2: (n, x) => this.pad(n, x, this.floatsOf(x[2], 'value', n)[0]),
    LRN: (n, x, a) => {
      const size = 2 * num(a.depth_radius, 5) + 1;
      // TensorFlow sums squares over the window; ONNX averages them: its alpha is TensorFlow's times the window.
      const out = this.ops.b.node(
        'LRN',
        [this.ops.nchw(x[0])],
        { size: int(size), alpha: { f: num(a.alpha, 1) * size }, beta: { f: num(a.beta, 0.5) }, bias: { f: num(a.bias, 1) } },
        n.name,
      );
      return { name: out, rank: 4, nchw: true };
    },
    Transpose: (n, x) => {
      const perm = Array.from(this.constOf(x[1], 'permutation', n).data);
      return { name: this.ops.b.node('Transpose', [this.ops.nhwc(x[0])], { perm: ints(perm) }, n.name), rank: perm.length };
    },
    Cast: (n, x, a) => {
      const to = a.DstT?.type ?? 'DT_FLOAT';
      if (to !== 'DT_FLOAT') throw new ConversionError(`node ${n.name} casts to ${to}`);
      return x[0].constant ? x[0] : { ...x[0], name: this.ops.b.node('Cast', [x[0].name], { to: int(DataType.FLOAT) }, n.name), constant: undefined };
    },
  };

  private pool(n: GraphNode, x: Value[], a: Record<string, JsonAttr>): Value {
    const k = list(a.ksize);
    const s = list(a.strides);
    if (k[0] !== 1 || k[3] !== 1 || s[0] !== 1 || s[3] !== 1) throw new ConversionError(`node ${n.name} (${n.op}) pools over the batch or channels`);
    return this.ops.pool(x[0], n.op === 'MaxPool' ? 'max' : 'avg', [k[1], k[2]], [s[1], s[2]], this.padding(n), n.name);
  }

  private batchNorm(n: GraphNode, x: Value[], a: Record<string, JsonAttr>): Value {
    const [gamma, beta, mean, variance] = x.slice(1, 5).map((v, k) => this.floatsOf(v, ['scale', 'offset', 'mean', 'variance'][k], n));
    return this.ops.batchNorm(x[0], { mean, variance, gamma, beta, epsilon: num(a.epsilon, 0.001) }, n.name);
  }

  private pad(n: GraphNode, x: Value[], value: number): Value {
    const p = Array.from(this.constOf(x[1], 'paddings', n).data);
    return this.ops.pad(
      x[0],
      Array.from({ length: p.length / 2 }, (_, k) => [p[2 * k], p[2 * k + 1]]),
      value,
      n.name,
    );
  }

  /** A constant used as a tensor (not folded into an op's attributes) is written into the graph. */
  private materialised(v: Value, n: GraphNode): Value {
    if (v.name || !v.constant) return v;
    return this.ops.constant(`${n.name}/const`, v.constant.data, v.constant.shape);
  }

  private padding(n: GraphNode): Padding {
    const p = str(n.attr?.padding);
    if (p === 'SAME' || p === 'VALID') return p;
    if (p === 'EXPLICIT') {
      const e = list(n.attr?.explicit_paddings);
      return { pads: [e[2], e[3], e[4], e[5]] };
    }
    throw new ConversionError(`node ${n.name} (${n.op}) has padding ${JSON.stringify(p)}`);
  }

  private conv(n: GraphNode, x: Value[]): Value {
    const a = n.attr ?? {};
    const kernel = this.constOf(x[1], 'filter', n);
    const s = list(a.strides);
    const d = list(a.dilations);
    if (s.length && (s[0] !== 1 || s[3] !== 1)) throw new ConversionError(`node ${n.name} (${n.op}) strides over the batch or channels`);
    const o = { strides: [s[1] ?? 1, s[2] ?? 1] as [number, number], dilations: [d[1] ?? 1, d[2] ?? 1] as [number, number], padding: this.padding(n) };
    const fused = (a.fused_ops?.list?.s ?? []).map((b64) => Buffer.from(b64, 'base64').toString('utf8'));
    let bias: Float32Array | undefined;
    let activation: Activation = 'linear';
    for (const f of fused) {
      if (f === 'BiasAdd') bias = this.floatsOf(x[2], 'bias', n);
      else if (f in ACTIVATION) activation = ACTIVATION[f];
      else if (f === 'LeakyRelu') activation = { leaky: num(a.leakyrelu_alpha, 0.2) };
      else throw new ConversionError(`node ${n.name} (${n.op}) fuses ${f}`);
    }
    const data = kernel.data instanceof Float32Array ? kernel.data : Float32Array.from(kernel.data);
    const y =
      n.op === 'Conv2D' || n.op === '_FusedConv2D'
        ? this.ops.conv2d(x[0], data, kernel.shape, bias, o, n.name)
        : this.ops.depthwise(x[0], data, kernel.shape, bias, o, n.name);
    return this.ops.activation(y, activation, `${n.name}/activation`);
  }

  private matMul(n: GraphNode, x: Value[]): Value {
    const a = n.attr ?? {};
    if (a.transpose_a?.b) throw new ConversionError(`node ${n.name} (${n.op}) transposes its input`);
    const k = this.constOf(x[1], 'weights', n);
    let w = k.data instanceof Float32Array ? k.data : Float32Array.from(k.data);
    let [rows, cols] = k.shape;
    if (a.transpose_b?.b) {
      const t = new Float32Array(w.length);
      for (let r = 0; r < rows; r++) for (let c = 0; c < cols; c++) t[c * rows + r] = w[r * cols + c];
      w = t;
      [rows, cols] = [cols, rows];
    }
    const fused = (a.fused_ops?.list?.s ?? []).map((b64) => Buffer.from(b64, 'base64').toString('utf8'));
    let bias: Float32Array | undefined;
    let activation: Activation = 'linear';
    for (const f of fused) {
      if (f === 'BiasAdd') bias = this.floatsOf(x[2], 'bias', n);
      else if (f in ACTIVATION) activation = ACTIVATION[f];
      else throw new ConversionError(`node ${n.name} (${n.op}) fuses ${f}`);
    }
    return this.ops.activation(this.ops.dense(x[0], w, [rows, cols], bias, n.name), activation, `${n.name}/activation`);
  }
}

const FOLD_BINARY: Record<string, (p: number, q: number) => number> = {
  Add: (p, q) => p + q,
  AddV2: (p, q) => p + q,
  BiasAdd: (p, q) => p + q,
  Sub: (p, q) => p - q,
  Mul: (p, q) => p * q,
  RealDiv: (p, q) => p / q,
  Maximum: Math.max,
  Minimum: Math.min,
};
const FOLD_UNARY: Record<string, (p: number) => number> = {
  Sqrt: Math.sqrt,
  Rsqrt: (p) => 1 / Math.sqrt(p),
  Square: (p) => p * p,
  Neg: (p) => -p,
  Exp: Math.exp,
  Log: Math.log,
  Identity: (p) => p,
};

/**
 * An elementwise op on constants computed here (a graph's unfused batch norms compute their scale
 * from constants: Rsqrt(variance + epsilon) * gamma), in float32 as TensorFlow does.
 */
function foldConstant(op: string, k: { data: Float32Array | Int32Array; shape: number[] }[]): { data: Float32Array; shape: number[] } | undefined {
  const unary = FOLD_UNARY[op];
  if (unary && k.length === 1) return { data: Float32Array.from(k[0].data, unary), shape: k[0].shape };
  const binary = FOLD_BINARY[op];
  if (!binary || k.length !== 2 || k.some((c) => !(c.data instanceof Float32Array))) return undefined;
  const [p, q] = k;
  const rank = Math.max(p.shape.length, q.shape.length);
  const pad = (s: number[]) => [...Array(rank - s.length).fill(1), ...s];
  const ps = pad(p.shape);
  const qs = pad(q.shape);
  const shape = ps.map((d, i) => Math.max(d, qs[i]));
  if (ps.some((d, i) => d !== 1 && d !== shape[i]) || qs.some((d, i) => d !== 1 && d !== shape[i])) return undefined;
  const size = shape.reduce((m, d) => m * d, 1);
  const out = new Float32Array(size);
  const index = (s: number[], flat: number) => {
    let at = 0;
    let stride = 1;
    for (let i = rank - 1, rest = flat; i >= 0; i--) {
      const coord = rest % shape[i];
      rest = Math.floor(rest / shape[i]);
      if (s[i] !== 1) at += coord * stride;
      stride *= s[i];
    }
    return at;
  };
  for (let f = 0; f < size; f++) out[f] = binary(p.data[index(ps, f)], q.data[index(qs, f)]);
  return { data: out, shape };
}
