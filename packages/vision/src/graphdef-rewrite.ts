import { BackboneError } from './errors.js';
import { DataType, attrOf, constNode, floats, nodeOf, quantizedValues, type Attr, type NodeDef } from './graphdef-nodes.js';

/* How each node of a frozen graph becomes what TF.js runs: kept, rewritten, or refused by name. */

/** Pass-through ops TF.js does not have: each becomes an Identity. */
export const AS_IDENTITY = new Set(['CheckNumerics', 'StopGradient', 'Snapshot', 'PreventGradient']);
/** Ops of image models that TF.js runs (a subset of its converter's list), after graft's rewrites. */
export const SUPPORTED = new Set([
  'Const',
  'Placeholder',
  'Identity',
  'Conv2D',
  'DepthwiseConv2dNative',
  'BiasAdd',
  'Add',
  'AddV2',
  'AddN',
  'Sub',
  'Mul',
  'RealDiv',
  'Maximum',
  'Minimum',
  'Relu',
  'Relu6',
  'LeakyRelu',
  'Elu',
  'Selu',
  'Sigmoid',
  'Tanh',
  'Softmax',
  'Sqrt',
  'Rsqrt',
  'Square',
  'Exp',
  'Log',
  'MaxPool',
  'AvgPool',
  'Mean',
  'Max',
  'Concat',
  'ConcatV2',
  'Reshape',
  'Squeeze',
  'ExpandDims',
  'MatMul',
  'FusedBatchNorm',
  'FusedBatchNormV3',
  'Pad',
  'PadV2',
  'LRN',
  'Cast',
  'Shape',
  'StridedSlice',
  'Pack',
  'Transpose',
  'Slice',
  'Split',
  'SplitV',
  'ResizeBilinear',
  'Neg',
]);
/** Attributes later TensorFlow versions added with defaults, which TF.js expects to be written out. */
const DEFAULT_ATTRS: Record<string, Record<string, Attr>> = {
  Conv2D: { dilations: { list: { i: [1, 1, 1, 1] } } as Attr },
  DepthwiseConv2dNative: { dilations: { list: { i: [1, 1, 1, 1] } } as Attr },
};
/** The Placeholder graft feeds, where the graph's input (or the end of its decoding head) was. */
export function inputPlaceholder(name: string, size: number): NodeDef {
  return {
    name,
    op: 'Placeholder',
    input: [],
    attr: { dtype: { type: DataType.DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size }, { size }, { size: 3 }] } } },
  };
}

/**
 * One node as TF.js runs it: as it is (with the attributes later TensorFlow versions default),
 * a pass-through as an Identity, a batch norm folded into a multiply and an add.
 * @throws BackboneError naming a node whose op graft cannot run.
 */
export function rewriteNode(n: NodeDef, byName: Map<string, NodeDef>, origin: string): NodeDef[] {
  const inputs = n.input.filter((i) => !i.startsWith('^'));
  if (n.op === 'BatchNormWithGlobalNormalization') return foldBatchNorm(n, inputs, byName, origin);
  if (n.op === 'Dequantize') return [dequantizedConst(n, inputs, byName, origin)];
  // Not fed, a PlaceholderWithDefault passes its default on (retrain.py's BottleneckInputPlaceholder).
  if (AS_IDENTITY.has(n.op) || n.op === 'PlaceholderWithDefault')
    return [{ name: n.name, op: 'Identity', input: inputs.slice(0, 1), attr: { T: { type: DataType.DT_FLOAT } } }];
  if (QUANTIZED_COMPUTE.test(n.op))
    throw new BackboneError(
      `${origin}: node ${n.name} is a ${n.op}: graft runs graphs whose weights are quantized (Dequantize of constants, quantize_graph.py "weights" and "weights_rounded" modes, retrain.py's _quantized architectures), not graphs that compute in 8 bits ("eightbit" mode)`,
    );
  if (!SUPPORTED.has(n.op)) throw new BackboneError(`${origin}: node ${n.name} is a ${n.op}, an op graft cannot run in TF.js`);
  return [{ name: n.name, op: n.op, input: inputs, attr: { ...DEFAULT_ATTRS[n.op], ...n.attr } }];
}

/** Ops of graphs that compute in 8 bits ("eightbit" quantization): refused by name. */
const QUANTIZED_COMPUTE = /^(QuantizeV2|Quantize|Quantized\w+|Requantize\w*|RequantizationRange)$/;

/**
 * A Dequantize of constant 8-bit weights, computed once here into a float constant, exactly as
 * TensorFlow computes it: MIN_COMBINED and MIN_FIRST (for 8 bits both are
 * min + (q - lowest) * (max - min) / 255, lowest = 0 for quint8, -128 for qint8). SCALED is refused.
 * @throws BackboneError naming the node when its inputs are not constants or its mode is not one of those.
 */
function dequantizedConst(n: NodeDef, inputs: string[], byName: Map<string, NodeDef>, origin: string): NodeDef {
  const [q, lo, hi] = inputs.map((i) => byName.get(nodeOf(i)));
  if (q?.op !== 'Const' || lo?.op !== 'Const' || hi?.op !== 'Const')
    throw new BackboneError(`${origin}: Dequantize ${n.name} does not dequantize constants: graft runs only graphs whose weights are quantized`);
  const mode = attrOf(n, 'mode')?.s ? new TextDecoder().decode(attrOf(n, 'mode')!.s) : 'MIN_COMBINED';
  if (mode !== 'MIN_COMBINED' && mode !== 'MIN_FIRST')
    throw new BackboneError(`${origin}: Dequantize ${n.name} uses mode ${mode}; graft reads MIN_COMBINED and MIN_FIRST`);
  const { values, shape, signed } = quantizedValues(q, origin);
  const min = floats(lo, origin)[0];
  const max = floats(hi, origin)[0];
  const lowest = signed ? -128 : 0;
  const scale = (max - min) / 255;
  const out = new Float32Array(values.length);
  for (let i = 0; i < values.length; i++) out[i] = min + (values[i] - lowest) * scale;
  return constNode(n.name, out, shape);
}

/** y = (t - mean) * gamma / sqrt(var + eps) + beta, folded into y = t * scale + offset. */
function foldBatchNorm(n: NodeDef, inputs: string[], byName: Map<string, NodeDef>, origin: string): NodeDef[] {
  const [t, ...params] = inputs;
  const [mean, variance, beta, gamma] = params.map((p) => {
    const c = byName.get(nodeOf(p));
    if (c?.op !== 'Const') throw new BackboneError(`${origin}: batch norm ${n.name} has a parameter ${p} that is not a constant`);
    return floats(c, origin);
  });
  const eps = attrOf(n, 'variance_epsilon')?.f ?? 0.001;
  const useGamma = attrOf(n, 'scale_after_normalization')?.b ?? false;
  const scale = new Float32Array(mean.length);
  const offset = new Float32Array(mean.length);
  for (let c = 0; c < mean.length; c++) {
    scale[c] = (useGamma ? gamma[c] : 1) / Math.sqrt(variance[c] + eps);
    offset[c] = beta[c] - mean[c] * scale[c];
  }
  return [
    constNode(`${n.name}/graft_scale`, scale, [mean.length]),
    constNode(`${n.name}/graft_offset`, offset, [mean.length]),
    { name: `${n.name}/graft_mul`, op: 'Mul', input: [t, `${n.name}/graft_scale`], attr: { T: { type: DataType.DT_FLOAT } } },
    { name: n.name, op: 'Add', input: [`${n.name}/graft_mul`, `${n.name}/graft_offset`], attr: { T: { type: DataType.DT_FLOAT } } },
  ];
}
