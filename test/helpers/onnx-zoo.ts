import { mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import * as tf from '@tensorflow/tfjs';
import { tensorflow } from '@graft/vision';

/*
 * Models holding every layer and op kind graft's ONNX converter writes, with seeded random weights,
 * for the parity tests (ONNX Runtime against TF.js on the same pixels); and one with a layer it
 * does not write, for the fallback.
 */

const init = (seed: number) => tf.initializers.randomNormal({ mean: 0, stddev: 0.2, seed });
/** A seeded positive initialiser (batch-norm variances and gammas). */
const positive = (seed: number) => tf.initializers.randomUniform({ minval: 0.5, maxval: 1.5, seed });

/** Writes a layers model to dir (model.json + w.bin) and returns the folder. */
async function save(model: tf.LayersModel, dir: string): Promise<string> {
  await mkdir(dir, { recursive: true });
  await model.save(
    tf.io.withSaveHandler(async (a) => {
      await writeFile(
        join(dir, 'model.json'),
        JSON.stringify({ format: 'layers-model', modelTopology: a.modelTopology, weightsManifest: [{ paths: ['w.bin'], weights: a.weightSpecs }] }),
      );
      await writeFile(join(dir, 'w.bin'), Buffer.from(a.weightData as ArrayBuffer));
      return { modelArtifactsInfo: { dateSaved: new Date(), modelTopologyType: 'JSON' } };
    }),
  );
  model.dispose();
  return dir;
}

/** Every Keras layer kind the converter writes, in one 32x32 model; its output is spatial (graft pools it). */
export async function layersZoo(dir: string): Promise<string> {
  const L = tf.layers;
  const input = tf.input({ shape: [32, 32, 3] });
  const a = (l: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => l.apply(x) as tf.SymbolicTensor;
  let x = a(L.rescaling({ scale: 0.5, offset: 0.1 }), input);
  x = a(
    L.zeroPadding2d({
      padding: [
        [0, 1],
        [1, 0],
      ],
    }),
    x,
  );
  x = a(L.conv2d({ filters: 8, kernelSize: 3, strides: 2, padding: 'valid', activation: 'relu', kernelInitializer: init(1), biasInitializer: init(2) }), x);
  x = a(
    L.batchNormalization({ movingMeanInitializer: init(3), movingVarianceInitializer: positive(4), gammaInitializer: positive(5), betaInitializer: init(6) }),
    x,
  );
  const relu6 = a(L.reLU({ maxValue: 6 }), x);
  const dw = a(
    L.depthwiseConv2d({ kernelSize: 3, depthMultiplier: 2, padding: 'same', useBias: true, depthwiseInitializer: init(7), biasInitializer: init(8) }),
    relu6,
  );
  const sep = a(
    L.separableConv2d({ filters: 16, kernelSize: 3, padding: 'same', activation: 'tanh', depthwiseInitializer: init(9), pointwiseInitializer: init(10) }),
    relu6,
  );
  const dil = a(L.conv2d({ filters: 16, kernelSize: 3, dilationRate: 2, padding: 'same', activation: 'sigmoid', kernelInitializer: init(11) }), relu6);
  const leaky = a(L.leakyReLU({ alpha: 0.1 }), dw);
  const sum = a(L.add(), [leaky, sep]);
  const prod = a(L.multiply(), [sum, dil]);
  const most = a(L.maximum(), [prod, a(L.elu(), sep)]);
  const least = a(L.minimum(), [most, a(L.activation({ activation: 'softplus' }), dil)]);
  const mean = a(L.average(), [least, a(L.activation({ activation: 'selu' }), sum)]);
  const joined = a(L.concatenate({ axis: -1 }), [mean, a(L.activation({ activation: 'softsign' }), dw), a(L.activation({ activation: 'hardSigmoid' }), sep)]);
  const maxp = a(L.maxPooling2d({ poolSize: 3, strides: 2, padding: 'same' }), joined);
  const avgp = a(L.averagePooling2d({ poolSize: 2, strides: 1, padding: 'valid' }), maxp);
  const same = a(L.averagePooling2d({ poolSize: 3, strides: 1, padding: 'same' }), avgp);
  const dropped = a(L.dropout({ rate: 0.5 }), same);
  const out = a(L.conv2d({ filters: 12, kernelSize: 1, activation: 'swish', kernelInitializer: init(12) }), dropped);
  return save(tf.model({ inputs: input, outputs: out }), dir);
}

/** The other end of a layers model: global pooling, flatten, reshape, dense layers and a softmax; a 2-d output. */
export async function denseZoo(dir: string): Promise<string> {
  const L = tf.layers;
  const input = tf.input({ shape: [16, 16, 3] });
  const a = (l: tf.layers.Layer, x: tf.SymbolicTensor | tf.SymbolicTensor[]) => l.apply(x) as tf.SymbolicTensor;
  const conv = a(L.conv2d({ filters: 6, kernelSize: 3, strides: 2, padding: 'same', activation: 'relu6', kernelInitializer: init(21) }), input);
  const flat = a(L.flatten(), a(L.maxPooling2d({ poolSize: 2 }), conv));
  const reshaped = a(L.flatten(), a(L.reshape({ targetShape: [4, 4, 6] }), flat));
  const gap = a(L.globalAveragePooling2d({}), conv);
  const gmp = a(L.globalMaxPooling2d({}), conv);
  const joined = a(L.concatenate(), [reshaped, gap, gmp]);
  const hidden = a(L.dense({ units: 20, activation: 'elu', kernelInitializer: init(22), biasInitializer: init(23) }), joined);
  const out = a(L.softmax(), a(L.dense({ units: 7, kernelInitializer: init(24) }), hidden));
  return save(tf.model({ inputs: input, outputs: out }), dir);
}

/** A model with a layer the converter does not write (UpSampling2D): it stays on TF.js. */
export async function unsupportedLayersModel(dir: string): Promise<string> {
  const L = tf.layers;
  const input = tf.input({ shape: [8, 8, 3] });
  const up = L.upSampling2d({ size: [2, 2] }).apply(input) as tf.SymbolicTensor;
  const out = L.conv2d({ filters: 4, kernelSize: 3, kernelInitializer: init(31) }).apply(up) as tf.SymbolicTensor;
  return save(tf.model({ inputs: input, outputs: out }), dir);
}

// ---- a TensorFlow graph with every op the converter writes -------------------------------------

const DT_FLOAT = tensorflow.DataType.DT_FLOAT;
const DT_INT32 = tensorflow.DataType.DT_INT32;
const T = { T: { type: DT_FLOAT } };
const s = (text: string) => ({ s: new TextEncoder().encode(text) });
const ints = (...i: number[]) => ({ list: { i } });

function rand(n: number, seed: number, scale = 0.3, shift = 0): Float32Array {
  let v = seed >>> 0;
  return Float32Array.from({ length: n }, () => {
    v = (v * 1664525 + 1013904223) >>> 0;
    return ((v / 2 ** 32) * 2 - 1) * scale + shift;
  });
}

type Node = { name: string; op: string; input?: string[]; attr?: Record<string, unknown> };
const fconst = (name: string, shape: number[], values: Float32Array): Node => ({
  name,
  op: 'Const',
  attr: {
    dtype: { type: DT_FLOAT },
    value: { tensor: { dtype: DT_FLOAT, tensorShape: { dim: shape.map((size) => ({ size })) }, tensorContent: new Uint8Array(values.buffer.slice(0)) } },
  },
});
const iconst = (name: string, values: number[], shape = [values.length]): Node => ({
  name,
  op: 'Const',
  attr: { dtype: { type: DT_INT32 }, value: { tensor: { dtype: DT_INT32, tensorShape: { dim: shape.map((size) => ({ size })) }, intVal: values } } },
});
const op = (name: string, kind: string, input: string[], attr: Record<string, unknown> = {}): Node => ({ name, op: kind, input, attr: { ...T, ...attr } });

/**
 * A frozen GraphDef (a Placeholder [-1, 24, 24, 3] to `out`, [n, 4, 4, 32]) with every op kind the
 * converter writes from TF graphs: convolutions (strided, dilated, depthwise, explicit padding), biases,
 * fused batch norms and an unfused one computed from constants, every elementwise op and activation,
 * pools, reductions, concatenations, pads, reshapes, LRN and a matrix product.
 */
export function graphZoo(): Uint8Array {
  const nodes: Node[] = [
    {
      name: 'input',
      op: 'Placeholder',
      attr: { dtype: { type: DT_FLOAT }, shape: { shape: { dim: [{ size: -1 }, { size: 24 }, { size: 24 }, { size: 3 }] } } },
    },
    fconst('k1', [3, 3, 3, 8], rand(216, 1)),
    op('conv1', 'Conv2D', ['input', 'k1'], { strides: ints(1, 2, 2, 1), padding: s('SAME'), dilations: ints(1, 1, 1, 1), data_format: s('NHWC') }),
    fconst('b1', [8], rand(8, 2, 0.1)),
    op('bias1', 'BiasAdd', ['conv1', 'b1']),
    fconst('bn/scale', [8], rand(8, 3, 0.3, 1)),
    fconst('bn/offset', [8], rand(8, 4, 0.1)),
    fconst('bn/mean', [8], rand(8, 5, 0.1)),
    fconst('bn/variance', [8], rand(8, 6, 0.3, 1)),
    op('bn', 'FusedBatchNormV3', ['bias1', 'bn/scale', 'bn/offset', 'bn/mean', 'bn/variance'], {
      epsilon: { f: 0.001 },
      is_training: { b: false },
      data_format: s('NHWC'),
      U: { type: DT_FLOAT },
    }),
    op('relu6', 'Relu6', ['bn']),
    fconst('dk', [3, 3, 8, 2], rand(144, 7)),
    op('dw', 'DepthwiseConv2dNative', ['relu6', 'dk'], { strides: ints(1, 1, 1, 1), padding: s('SAME'), dilations: ints(1, 1, 1, 1) }),
    fconst('k2', [3, 3, 8, 16], rand(1152, 8, 0.2)),
    op('dilated', 'Conv2D', ['relu6', 'k2'], { strides: ints(1, 1, 1, 1), padding: s('SAME'), dilations: ints(1, 2, 2, 1) }),
    fconst('k3', [3, 3, 8, 16], rand(1152, 9, 0.2)),
    op('explicit', 'Conv2D', ['relu6', 'k3'], {
      strides: ints(1, 1, 1, 1),
      padding: s('EXPLICIT'),
      explicit_paddings: ints(0, 0, 1, 1, 1, 1, 0, 0),
      dilations: ints(1, 1, 1, 1),
    }),
    // An unfused batch norm, as TF1's layers wrote it: its scale computed from constants.
    fconst('ubn/variance', [16], rand(16, 10, 0.3, 1)),
    fconst('ubn/epsilon', [], Float32Array.of(0.001)),
    op('ubn/add', 'AddV2', ['ubn/variance', 'ubn/epsilon']),
    op('ubn/rsqrt', 'Rsqrt', ['ubn/add']),
    fconst('ubn/gamma', [16], rand(16, 11, 0.2, 1)),
    op('ubn/mul', 'Mul', ['ubn/rsqrt', 'ubn/gamma']),
    op('ubn/mul_1', 'Mul', ['explicit', 'ubn/mul']),
    fconst('ubn/beta', [16], rand(16, 12, 0.1)),
    op('ubn/out', 'AddV2', ['ubn/mul_1', 'ubn/beta']),
    op('elu', 'Elu', ['dw']),
    op('sig', 'Sigmoid', ['dilated']),
    op('tanh', 'Tanh', ['ubn/out']),
    op('leaky', 'LeakyRelu', ['dw'], { alpha: { f: 0.2 } }),
    op('sum', 'AddN', ['elu', 'sig', 'tanh', 'leaky'], { N: { i: 4 } }),
    op('diff', 'Sub', ['sum', 'sig']),
    op('most', 'Maximum', ['diff', 'tanh']),
    op('least', 'Minimum', ['most', 'elu']),
    fconst('two', [], Float32Array.of(2)),
    op('half', 'RealDiv', ['least', 'two']),
    op('sq', 'Square', ['half']),
    op('sqrt', 'Sqrt', ['sq']),
    op('neg', 'Neg', ['sqrt']),
    op('exp', 'Exp', ['neg']),
    op('log', 'Log', ['exp']),
    op('relu', 'Relu', ['log']),
    iconst('axis', [3], []),
    op('joined', 'ConcatV2', ['relu', 'half', 'axis'], { N: { i: 2 }, Tidx: { type: DT_INT32 } }),
    op('lrn', 'LRN', ['joined'], { depth_radius: { i: 2 }, bias: { f: 1 }, alpha: { f: 0.1 }, beta: { f: 0.75 } }),
    op('maxp', 'MaxPool', ['lrn'], { ksize: ints(1, 3, 3, 1), strides: ints(1, 2, 2, 1), padding: s('SAME') }),
    iconst('paddings', [0, 0, 1, 0, 0, 1, 0, 0], [4, 2]),
    op('padded', 'Pad', ['maxp', 'paddings'], { Tpaddings: { type: DT_INT32 } }),
    fconst('pad_value', [], Float32Array.of(0.5)),
    op('padded2', 'PadV2', ['padded', 'paddings', 'pad_value'], { Tpaddings: { type: DT_INT32 } }),
    op('avgp', 'AvgPool', ['padded2'], { ksize: ints(1, 3, 3, 1), strides: ints(1, 2, 2, 1), padding: s('SAME') }),
    iconst('mean_axes', [1, 2]),
    op('mean', 'Mean', ['avgp', 'mean_axes'], { keep_dims: { b: true }, Tidx: { type: DT_INT32 } }),
    op('max', 'Max', ['avgp', 'mean_axes'], { keep_dims: { b: true }, Tidx: { type: DT_INT32 } }),
    op('scaled', 'Mul', ['avgp', 'mean']),
    op('shifted', 'Sub', ['scaled', 'max']),
    iconst('flat_shape', [-1, 4 * 4 * 32]),
    op('flat', 'Reshape', ['shifted', 'flat_shape'], { Tshape: { type: DT_INT32 } }),
    fconst('fc', [32, 4 * 4 * 32], rand(32 * 512, 13, 0.05)),
    op('dense', 'MatMul', ['flat', 'fc'], { transpose_a: { b: false }, transpose_b: { b: true } }),
    op('soft', 'Softmax', ['dense']),
    iconst('back', [-1, 1, 1, 32]),
    op('back4', 'Reshape', ['soft', 'back'], { Tshape: { type: DT_INT32 } }),
    iconst('sq_axis', [0], []),
    op('expanded', 'ExpandDims', ['back4', 'sq_axis'], { Tdim: { type: DT_INT32 } }),
    op('squeezed', 'Squeeze', ['expanded'], { squeeze_dims: ints(0) }),
    op('out', 'Mul', ['avgp', 'squeezed']),
  ];
  return tensorflow.GraphDef.encode(tensorflow.GraphDef.fromObject({ node: nodes, versions: { producer: 1000 } })).finish();
}
