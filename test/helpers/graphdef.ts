import * as tf from '@tensorflow/tfjs';
import { tensorflow } from '@graft/vision';

/*
 * A small frozen GraphDef with the op set of Google's December 2015 InceptionV3: the JPEG decoding
 * head (DecodeJpeg, Cast, ExpandDims, ResizeBilinear, Sub, Mul), Conv2D with VALID and SAME padding,
 * BatchNormWithGlobalNormalization, CheckNumerics, Relu, MaxPool, the old Concat (axis first) and
 * ConcatV2, AvgPool as pool_3, Reshape, MatMul, BiasAdd and Softmax; serialised with graft's own
 * protobufjs messages. `reference` computes the same network with tf ops.
 */

const DT_FLOAT = tensorflow.DataType.DT_FLOAT;
const DT_INT32 = tensorflow.DataType.DT_INT32;
const DT_STRING = tensorflow.DataType.DT_STRING;

export const SEED_INPUT = 33;

type Attr = Record<string, unknown>;
interface Node {
  name: string;
  op: string;
  input?: string[];
  attr?: Record<string, Attr>;
}

/** Seeded pseudo-random floats in [-scale, scale]. */
function rand(n: number, seed: number, scale = 0.5): Float32Array {
  let s = seed >>> 0;
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    s = (s * 1664525 + 1013904223) >>> 0;
    out[i] = ((s / 2 ** 32) * 2 - 1) * scale;
  }
  return out;
}

const bytesOf = (a: Float32Array | Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
const s = (text: string) => ({ s: new TextEncoder().encode(text) });
const ints = (...i: number[]) => ({ list: { i } });

function floatConst(name: string, shape: number[], values: Float32Array, asVals = false): Node {
  const tensor = asVals
    ? { dtype: DT_FLOAT, tensorShape: { dim: shape.map((size) => ({ size })) }, floatVal: Array.from(values) }
    : { dtype: DT_FLOAT, tensorShape: { dim: shape.map((size) => ({ size })) }, tensorContent: bytesOf(values) };
  return { name, op: 'Const', attr: { dtype: { type: DT_FLOAT }, value: { tensor } } };
}
function intConst(name: string, values: number[]): Node {
  return {
    name,
    op: 'Const',
    attr: { dtype: { type: DT_INT32 }, value: { tensor: { dtype: DT_INT32, tensorShape: { dim: [{ size: values.length }] }, intVal: values } } },
  };
}
function scalarIntConst(name: string, value: number): Node {
  return { name, op: 'Const', attr: { dtype: { type: DT_INT32 }, value: { tensor: { dtype: DT_INT32, tensorShape: {}, intVal: [value] } } } };
}
const T = { T: { type: DT_FLOAT } };

export interface SeedWeights {
  conv: Float32Array;
  bn: { mean: Float32Array; variance: Float32Array; beta: Float32Array; gamma: Float32Array };
  a: Float32Array;
  b: Float32Array;
  c: Float32Array;
  fc: Float32Array;
  bias: Float32Array;
}

export interface SeedGraph {
  bytes: Uint8Array;
  weights: SeedWeights;
  /** Channels of pool_3. */
  dim: number;
}

/**
 * The graph, serialised. `poolName` renames pool_3 (to test finding a bottleneck by structure);
 * `extraOp` adds a node of that op after pool_3 (to test the unsupported-op error).
 */
export function seedGraph(opts: { poolName?: string; extraOp?: string } = {}): SeedGraph {
  const pool = opts.poolName ?? 'pool_3';
  const C1 = 8;
  const w: SeedWeights = {
    conv: rand(3 * 3 * 3 * C1, 1),
    bn: { mean: rand(C1, 2, 0.2), variance: rand(C1, 3, 0.4).map((v) => v + 0.5), beta: rand(C1, 4, 0.1), gamma: rand(C1, 5, 0.3).map((v) => v + 1) },
    a: rand(C1 * 4, 6),
    b: rand(3 * 3 * C1 * 4, 7, 0.2),
    c: rand(8 * 6, 8),
    fc: rand(14 * 5, 9),
    bias: rand(5, 10),
  };
  const nodes: Node[] = [
    {
      name: 'DecodeJpeg/contents',
      op: 'Const',
      attr: { dtype: { type: DT_STRING }, value: { tensor: { dtype: DT_STRING, tensorShape: {}, stringVal: [new Uint8Array(0)] } } },
    },
    { name: 'DecodeJpeg', op: 'DecodeJpeg', input: ['DecodeJpeg/contents'], attr: { channels: { i: 3 }, ratio: { i: 1 } } },
    { name: 'Cast', op: 'Cast', input: ['DecodeJpeg'], attr: { SrcT: { type: tensorflow.DataType.DT_UINT8 }, DstT: { type: DT_FLOAT } } },
    scalarIntConst('ExpandDims/dim', 0),
    { name: 'ExpandDims', op: 'ExpandDims', input: ['Cast', 'ExpandDims/dim'], attr: { T: { type: DT_FLOAT }, Tdim: { type: DT_INT32 } } },
    intConst('ResizeBilinear/size', [SEED_INPUT, SEED_INPUT]),
    { name: 'ResizeBilinear', op: 'ResizeBilinear', input: ['ExpandDims', 'ResizeBilinear/size'], attr: { ...T, align_corners: { b: false } } },
    floatConst('Sub/y', [], Float32Array.of(128), true),
    { name: 'Sub', op: 'Sub', input: ['ResizeBilinear', 'Sub/y'], attr: T },
    floatConst('Mul/y', [], Float32Array.of(1 / 128), true),
    { name: 'Mul', op: 'Mul', input: ['Sub', 'Mul/y'], attr: T },
    floatConst('conv/conv2d_params', [3, 3, 3, C1], w.conv),
    {
      name: 'conv/Conv2D',
      op: 'Conv2D',
      input: ['Mul', 'conv/conv2d_params'],
      attr: { ...T, strides: ints(1, 2, 2, 1), padding: s('VALID'), use_cudnn_on_gpu: { b: true } },
    },
    floatConst('conv/batchnorm/moving_mean', [C1], w.bn.mean),
    floatConst('conv/batchnorm/moving_variance', [C1], w.bn.variance),
    floatConst('conv/batchnorm/beta', [C1], w.bn.beta),
    floatConst('conv/batchnorm/gamma', [C1], w.bn.gamma),
    {
      name: 'conv/batchnorm',
      op: 'BatchNormWithGlobalNormalization',
      input: ['conv/Conv2D', 'conv/batchnorm/moving_mean', 'conv/batchnorm/moving_variance', 'conv/batchnorm/beta', 'conv/batchnorm/gamma'],
      attr: { ...T, variance_epsilon: { f: 0.001 }, scale_after_normalization: { b: true } },
    },
    { name: 'conv/CheckNumerics', op: 'CheckNumerics', input: ['conv/batchnorm'], attr: { ...T, message: s('LayerNorm') } },
    { name: 'conv', op: 'Relu', input: ['conv/CheckNumerics'], attr: T },
    { name: 'pool', op: 'MaxPool', input: ['conv'], attr: { ...T, ksize: ints(1, 3, 3, 1), strides: ints(1, 2, 2, 1), padding: s('SAME') } },
    floatConst('mixed/conv/conv2d_params', [1, 1, C1, 4], w.a),
    { name: 'mixed/conv/Conv2D', op: 'Conv2D', input: ['pool', 'mixed/conv/conv2d_params'], attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') } },
    { name: 'mixed/conv', op: 'Relu', input: ['mixed/conv/Conv2D'], attr: T },
    floatConst('mixed/tower/conv/conv2d_params', [3, 3, C1, 4], w.b),
    {
      name: 'mixed/tower/conv/Conv2D',
      op: 'Conv2D',
      input: ['pool', 'mixed/tower/conv/conv2d_params'],
      attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') },
    },
    { name: 'mixed/tower/conv', op: 'Relu', input: ['mixed/tower/conv/Conv2D'], attr: T },
    scalarIntConst('mixed/join/concat_dim', 3),
    { name: 'mixed/join', op: 'Concat', input: ['mixed/join/concat_dim', 'mixed/conv', 'mixed/tower/conv'], attr: { ...T, N: { i: 2 } } },
    floatConst('mixed_1/conv/conv2d_params', [1, 1, 8, 6], w.c),
    {
      name: 'mixed_1/conv/Conv2D',
      op: 'Conv2D',
      input: ['mixed/join', 'mixed_1/conv/conv2d_params'],
      attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') },
    },
    { name: 'mixed_1/conv', op: 'Relu', input: ['mixed_1/conv/Conv2D'], attr: T },
    scalarIntConst('mixed_1/join/axis', 3),
    { name: 'mixed_1/join', op: 'ConcatV2', input: ['mixed_1/conv', 'mixed/join', 'mixed_1/join/axis'], attr: { ...T, N: { i: 2 }, Tidx: { type: DT_INT32 } } },
    { name: pool, op: 'AvgPool', input: ['mixed_1/join'], attr: { ...T, ksize: ints(1, 8, 8, 1), strides: ints(1, 1, 1, 1), padding: s('VALID') } },
    intConst(`${pool}/_reshape/shape`, [-1, 14]),
    { name: `${pool}/_reshape`, op: 'Reshape', input: [pool, `${pool}/_reshape/shape`], attr: { ...T, Tshape: { type: DT_INT32 } } },
    floatConst('softmax/weights', [14, 5], w.fc),
    {
      name: 'softmax/logits/MatMul',
      op: 'MatMul',
      input: [`${pool}/_reshape`, 'softmax/weights'],
      attr: { ...T, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    floatConst('softmax/biases', [5], w.bias),
    { name: 'softmax/logits', op: 'BiasAdd', input: ['softmax/logits/MatMul', 'softmax/biases'], attr: T },
    { name: 'softmax', op: 'Softmax', input: ['softmax/logits'], attr: T },
  ];
  if (opts.extraOp) nodes.push({ name: 'mystery', op: opts.extraOp, input: [pool], attr: T });
  const bytes = tensorflow.GraphDef.encode(tensorflow.GraphDef.fromObject({ node: nodes, versions: { producer: 9 } })).finish();
  return { bytes, weights: w, dim: 14 };
}

/** pool_3 of the seed graph for 0..255 pixels [n, S, S, 3], computed directly with tf ops, pooled to [n, dim]. */
export function reference(w: SeedWeights, pixels: tf.Tensor4D): tf.Tensor2D {
  return tf.tidy(() => {
    const x = pixels.sub(128).mul(1 / 128) as tf.Tensor4D;
    const conv = tf.conv2d(x, tf.tensor4d(w.conv, [3, 3, 3, 8]), 2, 'valid');
    const bn = conv.sub(tf.tensor1d(w.bn.mean)).mul(tf.tensor1d(w.bn.gamma)).div(tf.tensor1d(w.bn.variance).add(0.001).sqrt()).add(tf.tensor1d(w.bn.beta));
    const pool = tf.maxPool(tf.relu(bn) as tf.Tensor4D, 3, 2, 'same');
    const a = tf.relu(tf.conv2d(pool, tf.tensor4d(w.a, [1, 1, 8, 4]), 1, 'same'));
    const b = tf.relu(tf.conv2d(pool, tf.tensor4d(w.b, [3, 3, 8, 4]), 1, 'same'));
    const join = tf.concat([a, b], 3) as tf.Tensor4D;
    const c = tf.relu(tf.conv2d(join, tf.tensor4d(w.c, [1, 1, 8, 6]), 1, 'same'));
    const join1 = tf.concat([c, join], 3) as tf.Tensor4D;
    return tf.avgPool(join1, 8, 1, 'valid').reshape([pixels.shape[0], -1]) as tf.Tensor2D;
  });
}

// ---- retrain.py output graphs --------------------------------------------------------------

const DT_QUINT8 = tensorflow.DataType.DT_QUINT8;
const DT_QINT8 = tensorflow.DataType.DT_QINT8;

/** 8-bit weights as quantize_graph.py "weights" mode stores them, and the floats they stand for. */
export function quantized(
  name: string,
  shape: number[],
  seed: number,
  mode: 'MIN_COMBINED' | 'MIN_FIRST' = 'MIN_COMBINED',
  signed = false,
): { nodes: Node[]; values: Float32Array } {
  const n = shape.reduce((a, b) => a * b, 1);
  const q = Uint8Array.from(rand(n, seed, 1), (x) => Math.round((x + 1) * 127.5));
  const [min, max] = [-0.6, 0.8];
  const lowest = signed ? -128 : 0;
  const stored = signed ? Int8Array.from(q, (v) => v - 128) : q;
  // Hand-computed: min + (q - lowest) * (max - min) / 255.
  const values = Float32Array.from(stored, (v) => min + (v - lowest) * ((max - min) / 255));
  const dtype = signed ? DT_QINT8 : DT_QUINT8;
  const nodes: Node[] = [
    {
      name: `${name}_quint8_const`,
      op: 'Const',
      attr: {
        dtype: { type: dtype },
        value: { tensor: { dtype, tensorShape: { dim: shape.map((size) => ({ size })) }, tensorContent: new Uint8Array(stored.buffer) } },
      },
    },
    floatConst(`${name}_min`, [], Float32Array.of(min), true),
    floatConst(`${name}_max`, [], Float32Array.of(max), true),
    { name, op: 'Dequantize', input: [`${name}_quint8_const`, `${name}_min`, `${name}_max`], attr: { T: { type: dtype }, mode: s(mode) } },
  ];
  return { nodes, values };
}

/** retrain.py's head on a bottleneck of `dim`: BottleneckInputPlaceholder, final_training_ops, final_result. */
function retrainHeadNodes(bottleneck: string, dim: number, classes: number): { nodes: Node[]; kernel: Float32Array; bias: Float32Array } {
  const kernel = rand(dim * classes, 41, 0.8);
  const bias = rand(classes, 42, 0.2);
  const nodes: Node[] = [
    {
      name: 'input_1/BottleneckInputPlaceholder',
      op: 'PlaceholderWithDefault',
      input: [bottleneck],
      attr: { dtype: { type: DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size: dim }] } } },
    },
    floatConst('final_training_ops/weights/final_weights', [dim, classes], kernel),
    { name: 'final_training_ops/weights/final_weights/read', op: 'Identity', input: ['final_training_ops/weights/final_weights'], attr: T },
    floatConst('final_training_ops/biases/final_biases', [classes], bias),
    { name: 'final_training_ops/biases/final_biases/read', op: 'Identity', input: ['final_training_ops/biases/final_biases'], attr: T },
    {
      name: 'final_training_ops/Wx_plus_b/MatMul',
      op: 'MatMul',
      input: ['input_1/BottleneckInputPlaceholder', 'final_training_ops/weights/final_weights/read'],
      attr: { ...T, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    {
      name: 'final_training_ops/Wx_plus_b/add',
      op: 'Add',
      input: ['final_training_ops/Wx_plus_b/MatMul', 'final_training_ops/biases/final_biases/read'],
      attr: T,
    },
    { name: 'final_result', op: 'Softmax', input: ['final_training_ops/Wx_plus_b/add'], attr: T },
  ];
  return { nodes, kernel, bias };
}

export const RETRAIN_MOBILENET_INPUT = 16;

export interface RetrainGraph {
  bytes: Uint8Array;
  /** The bottleneck's size, and retrain.py's head on it. */
  dim: number;
  classes: number;
  kernel: Float32Array;
  bias: Float32Array;
  /** The bottleneck computed with tf ops from hand-dequantized weights, for already-preprocessed input [n, S, S, 3]. */
  reference?: (x: tf.Tensor4D) => tf.Tensor2D;
}

/**
 * A retrain.py output graph of the MobileNetV1 `_quantized` kind: a float Placeholder `input`, 8-bit
 * weights behind Dequantize (MIN_COMBINED and MIN_FIRST), Relu6, DepthwiseConv2dNative, AvgPool,
 * MobilenetV1/Logits/SpatialSqueeze, then retrain.py's head. `groundTruth` adds retrain.py's second
 * float placeholder; `extraOp` adds a node of that op on the logits (an op graft refuses).
 */
export function retrainMobileNetGraph(opts: { classes?: number; groundTruth?: boolean; extraOp?: string } = {}): RetrainGraph {
  const S = RETRAIN_MOBILENET_INPUT;
  const classes = opts.classes ?? 3;
  const c0 = quantized('MobilenetV1/Conv2d_0/weights/read/_0__cf__0', [3, 3, 3, 4], 21);
  const dw = rand(3 * 3 * 4, 22, 0.5);
  const c1 = quantized('MobilenetV1/Conv2d_1_pointwise/weights/read/_1__cf__1', [1, 1, 4, 6], 23, 'MIN_FIRST');
  const logits = rand(6 * 10, 24, 0.5);
  const logitsBias = rand(10, 25, 0.1);
  const head = retrainHeadNodes('MobilenetV1/Logits/SpatialSqueeze', 10, classes);
  const nodes: Node[] = [
    { name: 'input', op: 'Placeholder', attr: { dtype: { type: DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size: S }, { size: S }, { size: 3 }] } } } },
    ...(opts.groundTruth
      ? [
          {
            name: 'input/GroundTruthInput',
            op: 'Placeholder',
            attr: { dtype: { type: DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size: classes }] } } },
          },
        ]
      : []),
    ...c0.nodes,
    { name: 'MobilenetV1/Conv2d_0/Conv2D', op: 'Conv2D', input: ['input', c0.nodes[3].name], attr: { ...T, strides: ints(1, 2, 2, 1), padding: s('SAME') } },
    { name: 'MobilenetV1/Conv2d_0/Relu6', op: 'Relu6', input: ['MobilenetV1/Conv2d_0/Conv2D'], attr: T },
    floatConst('MobilenetV1/Conv2d_1_depthwise/depthwise_weights', [3, 3, 4, 1], dw),
    {
      name: 'MobilenetV1/Conv2d_1_depthwise/depthwise',
      op: 'DepthwiseConv2dNative',
      input: ['MobilenetV1/Conv2d_0/Relu6', 'MobilenetV1/Conv2d_1_depthwise/depthwise_weights'],
      attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') },
    },
    { name: 'MobilenetV1/Conv2d_1_depthwise/Relu6', op: 'Relu6', input: ['MobilenetV1/Conv2d_1_depthwise/depthwise'], attr: T },
    ...c1.nodes,
    {
      name: 'MobilenetV1/Conv2d_1_pointwise/Conv2D',
      op: 'Conv2D',
      input: ['MobilenetV1/Conv2d_1_depthwise/Relu6', c1.nodes[3].name],
      attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') },
    },
    { name: 'MobilenetV1/Conv2d_1_pointwise/Relu6', op: 'Relu6', input: ['MobilenetV1/Conv2d_1_pointwise/Conv2D'], attr: T },
    {
      name: 'MobilenetV1/Logits/AvgPool_1a/AvgPool',
      op: 'AvgPool',
      input: ['MobilenetV1/Conv2d_1_pointwise/Relu6'],
      attr: { ...T, ksize: ints(1, S / 2, S / 2, 1), strides: ints(1, 2, 2, 1), padding: s('VALID') },
    },
    floatConst('MobilenetV1/Logits/Conv2d_1c_1x1/weights', [1, 1, 6, 10], logits),
    {
      name: 'MobilenetV1/Logits/Conv2d_1c_1x1/Conv2D',
      op: 'Conv2D',
      input: ['MobilenetV1/Logits/AvgPool_1a/AvgPool', 'MobilenetV1/Logits/Conv2d_1c_1x1/weights'],
      attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') },
    },
    floatConst('MobilenetV1/Logits/Conv2d_1c_1x1/biases', [10], logitsBias),
    {
      name: 'MobilenetV1/Logits/Conv2d_1c_1x1/BiasAdd',
      op: 'BiasAdd',
      input: ['MobilenetV1/Logits/Conv2d_1c_1x1/Conv2D', 'MobilenetV1/Logits/Conv2d_1c_1x1/biases'],
      attr: T,
    },
    { name: 'MobilenetV1/Logits/SpatialSqueeze', op: 'Squeeze', input: ['MobilenetV1/Logits/Conv2d_1c_1x1/BiasAdd'], attr: { ...T, squeeze_dims: ints(1, 2) } },
    ...(opts.extraOp ? [{ name: 'MobilenetV1/Logits/odd', op: opts.extraOp, input: ['MobilenetV1/Logits/SpatialSqueeze'], attr: T }] : []),
    ...head.nodes,
  ];
  const bytes = tensorflow.GraphDef.encode(tensorflow.GraphDef.fromObject({ node: nodes, versions: { producer: 21 } })).finish();
  const reference = (x: tf.Tensor4D) =>
    tf.tidy(() => {
      const relu6 = (t: tf.Tensor4D) => tf.clipByValue(t, 0, 6) as tf.Tensor4D;
      const a = relu6(tf.conv2d(x, tf.tensor4d(c0.values, [3, 3, 3, 4]), 2, 'same'));
      const b = relu6(tf.depthwiseConv2d(a, tf.tensor4d(dw, [3, 3, 4, 1]), 1, 'same'));
      const c = relu6(tf.conv2d(b, tf.tensor4d(c1.values, [1, 1, 4, 6]), 1, 'same'));
      const p = tf.avgPool(c, S / 2, 2, 'valid');
      const l = tf.conv2d(p, tf.tensor4d(logits, [1, 1, 6, 10]), 1, 'same').add(tf.tensor1d(logitsBias));
      return l.reshape([x.shape[0], 10]) as tf.Tensor2D;
    });
  return { bytes, dim: 10, classes, kernel: head.kernel, bias: head.bias, reference };
}

/** A retrain.py output graph of the InceptionV3 kind: the seed graph's DecodeJpeg head and pool_3/_reshape, then retrain.py's head. */
export function retrainInceptionGraph(classes = 4): RetrainGraph {
  const base = tensorflow.GraphDef.decode(seedGraph().bytes);
  const kept = base.node.filter((n) => !(n.name ?? '').startsWith('softmax'));
  const head = retrainHeadNodes('pool_3/_reshape', 14, classes);
  const graph = tensorflow.GraphDef.fromObject({
    node: [...kept.map((n) => tensorflow.NodeDef.toObject(n as tensorflow.NodeDef)), ...head.nodes],
    versions: { producer: 9 },
  });
  return { bytes: tensorflow.GraphDef.encode(graph).finish(), dim: 14, classes, kernel: head.kernel, bias: head.bias };
}
