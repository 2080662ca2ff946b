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
  const tensor = asVals ? { dtype: DT_FLOAT, tensorShape: { dim: shape.map((size) => ({ size })) }, floatVal: Array.from(values) } : { dtype: DT_FLOAT, tensorShape: { dim: shape.map((size) => ({ size })) }, tensorContent: bytesOf(values) };
  return { name, op: 'Const', attr: { dtype: { type: DT_FLOAT }, value: { tensor } } };
}
function intConst(name: string, values: number[]): Node {
  return { name, op: 'Const', attr: { dtype: { type: DT_INT32 }, value: { tensor: { dtype: DT_INT32, tensorShape: { dim: [{ size: values.length }] }, intVal: values } } } };
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
    { name: 'DecodeJpeg/contents', op: 'Const', attr: { dtype: { type: DT_STRING }, value: { tensor: { dtype: DT_STRING, tensorShape: {}, stringVal: [new Uint8Array(0)] } } } },
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
    { name: 'conv/Conv2D', op: 'Conv2D', input: ['Mul', 'conv/conv2d_params'], attr: { ...T, strides: ints(1, 2, 2, 1), padding: s('VALID'), use_cudnn_on_gpu: { b: true } } },
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
    { name: 'mixed/tower/conv/Conv2D', op: 'Conv2D', input: ['pool', 'mixed/tower/conv/conv2d_params'], attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') } },
    { name: 'mixed/tower/conv', op: 'Relu', input: ['mixed/tower/conv/Conv2D'], attr: T },
    scalarIntConst('mixed/join/concat_dim', 3),
    { name: 'mixed/join', op: 'Concat', input: ['mixed/join/concat_dim', 'mixed/conv', 'mixed/tower/conv'], attr: { ...T, N: { i: 2 } } },
    floatConst('mixed_1/conv/conv2d_params', [1, 1, 8, 6], w.c),
    { name: 'mixed_1/conv/Conv2D', op: 'Conv2D', input: ['mixed/join', 'mixed_1/conv/conv2d_params'], attr: { ...T, strides: ints(1, 1, 1, 1), padding: s('SAME') } },
    { name: 'mixed_1/conv', op: 'Relu', input: ['mixed_1/conv/Conv2D'], attr: T },
    scalarIntConst('mixed_1/join/axis', 3),
    { name: 'mixed_1/join', op: 'ConcatV2', input: ['mixed_1/conv', 'mixed/join', 'mixed_1/join/axis'], attr: { ...T, N: { i: 2 }, Tidx: { type: DT_INT32 } } },
    { name: pool, op: 'AvgPool', input: ['mixed_1/join'], attr: { ...T, ksize: ints(1, 8, 8, 1), strides: ints(1, 1, 1, 1), padding: s('VALID') } },
    intConst(`${pool}/_reshape/shape`, [-1, 14]),
    { name: `${pool}/_reshape`, op: 'Reshape', input: [pool, `${pool}/_reshape/shape`], attr: { ...T, Tshape: { type: DT_INT32 } } },
    floatConst('softmax/weights', [14, 5], w.fc),
    { name: 'softmax/logits/MatMul', op: 'MatMul', input: [`${pool}/_reshape`, 'softmax/weights'], attr: { ...T, transpose_a: { b: false }, transpose_b: { b: false } } },
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
