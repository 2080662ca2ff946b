import type * as tf from '@tensorflow/tfjs';
import { ConversionError, TfOps, type Activation, type Padding, type Value } from './tf-ops.js';

/*
 * A TF.js layers model (Keras) as ONNX: walked back from its outputs through each layer's inbound
 * node, nested models included, each layer written through TfOps with its loaded weights.
 */

type SymbolicTensor = tf.SymbolicTensor;
type Layer = tf.layers.Layer;
type Config = Record<string, unknown>;

/** Layers that pass their input on at inference. */
const PASS_THROUGH = new Set([
  'Dropout',
  'SpatialDropout1D',
  'SpatialDropout2D',
  'GaussianNoise',
  'GaussianDropout',
  'AlphaDropout',
  'ActivityRegularization',
  'Masking',
]);

/**
 * Writes `model` (from its inputs to its outputs) into `ops`, its first input fed by `input`.
 * @returns the model's first output.
 * @throws ConversionError naming the first layer it cannot write.
 */
export function writeLayersModel(ops: TfOps, model: tf.LayersModel, input: Value): Value {
  if (model.inputs.length !== 1 || model.outputs.length !== 1)
    throw new ConversionError(`a model with ${model.inputs.length} inputs and ${model.outputs.length} outputs (graft converts one image in, one tensor out)`);
  const values = new Map<number, Value>([[model.inputs[0].id, input]]);
  return new LayersWriter(ops, values).tensor(model.outputs[0]);
}

class LayersWriter {
  constructor(
    private readonly ops: TfOps,
    private readonly values: Map<number, Value>,
  ) {}

  /** The value of a symbolic tensor, writing the layers it needs first. */
  tensor(t: SymbolicTensor): Value {
    const known = this.values.get(t.id);
    if (known) return known;
    const layer = t.sourceLayer as Layer;
    const node = layer.inboundNodes[t.nodeIndex];
    if (!node) throw new ConversionError(`layer ${layer.name} has no inbound node ${t.nodeIndex}`);
    const inputs = node.inputTensors.map((x) => this.tensor(x));
    const outputs = this.layer(layer, inputs, node.inputTensors);
    node.outputTensors.forEach((o, k) => this.values.set(o.id, outputs[k]));
    const v = this.values.get(t.id);
    if (!v) throw new ConversionError(`layer ${layer.name}: output ${t.tensorIndex} not written`);
    return v;
  }

  private layer(layer: Layer, inputs: Value[], symbolic: SymbolicTensor[]): Value[] {
    const cls = layer.getClassName();
    if ('layers' in layer && 'inputs' in layer) {
      // A model nested as a layer: its inputs are this node's inputs.
      const inner = layer as unknown as tf.LayersModel;
      inner.inputs.forEach((x, k) => this.values.set(x.id, inputs[k]));
      return inner.outputs.map((o) => this.tensor(o));
    }
    if (cls === 'InputLayer' || PASS_THROUGH.has(cls)) return inputs;
    const write = WRITERS[cls];
    if (!write) throw new ConversionError(`layer ${layer.name} is a ${cls}, which graft cannot convert to ONNX`);
    return [
      write({
        ops: this.ops,
        c: layer.getConfig() as Config,
        w: weightsOf(layer),
        x: inputs[0],
        inputs,
        name: layer.name,
        cls,
        rank: symbolic[0].shape.length,
      }),
    ];
  }
}

/** What a layer's writer gets: the ops, its config and weights, its inputs. */
interface LayerCall {
  ops: TfOps;
  c: Config;
  w: Map<string, { data: Float32Array; shape: number[] }>;
  x: Value;
  inputs: Value[];
  name: string;
  cls: string;
  /** Rank of the first input. */
  rank: number;
}

/** A convolution layer with its bias and activation. */
function convLayer(l: LayerCall): Value {
  const { ops, c, w, x, name } = l;
  checkChannelsLast(c, name);
  const bias = c.useBias ? w.get('bias')?.data : undefined;
  let y: Value;
  if (l.cls === 'Conv2D') {
    if ((c.groups as number | undefined) && (c.groups as number) !== 1) throw new ConversionError(`layer ${name} (Conv2D) has groups=${String(c.groups)}`);
    const k = w.get('kernel')!;
    y = ops.conv2d(x, k.data, k.shape, bias, conv(c), name);
  } else if (l.cls === 'DepthwiseConv2D') {
    const k = w.get('depthwise_kernel')!;
    y = ops.depthwise(x, k.data, k.shape, bias, conv(c), name);
  } else {
    const dk = w.get('depthwise_kernel')!;
    const pk = w.get('pointwise_kernel')!;
    const d = ops.depthwise(x, dk.data, dk.shape, undefined, conv(c), `${name}/depthwise`);
    y = ops.conv2d(d, pk.data, pk.shape, bias, { strides: [1, 1], padding: 'VALID' }, name);
  }
  return ops.activation(y, activationOf(c.activation, name), `${name}/activation`);
}

const MERGE_OPS = { Add: 'Add', Multiply: 'Mul', Subtract: 'Sub', Maximum: 'Max', Minimum: 'Min' } as const;

/** Every layer class graft converts, but convolutions' kin and pass-throughs. */
const WRITERS: Record<string, (l: LayerCall) => Value> = {
  Conv2D: convLayer,
  DepthwiseConv2D: convLayer,
  SeparableConv2D: convLayer,
  BatchNormalization: ({ ops, c, w, x, name, rank }) => {
    const axis = c.axis as number | number[];
    const ax = Array.isArray(axis) ? axis : [axis];
    if (ax.length !== 1 || (ax[0] !== -1 && ax[0] !== rank - 1))
      throw new ConversionError(`layer ${name} (BatchNormalization) normalises axis ${JSON.stringify(axis)}, not the channels`);
    return ops.batchNorm(
      x,
      {
        mean: w.get('moving_mean')!.data,
        variance: w.get('moving_variance')!.data,
        gamma: w.get('gamma')?.data,
        beta: w.get('beta')?.data,
        epsilon: c.epsilon as number,
      },
      name,
    );
  },
  ReLU: ({ ops, c, x, name }) => {
    if (((c.negativeSlope as number | undefined) ?? 0) !== 0 || ((c.threshold as number | undefined) ?? 0) !== 0)
      throw new ConversionError(`layer ${name} (ReLU) has a negative slope or threshold`);
    const max = c.maxValue as number | null | undefined;
    return ops.activation(x, max === null || max === undefined ? 'relu' : { clip: [0, max] }, name);
  },
  Activation: ({ ops, c, x, name }) => ops.activation(x, activationOf(c.activation, name), name),
  LeakyReLU: ({ ops, c, x, name }) => ops.activation(x, { leaky: (c.alpha as number | undefined) ?? 0.3 }, name),
  ELU: ({ ops, c, x, name }) => {
    if (((c.alpha as number | undefined) ?? 1) !== 1) throw new ConversionError(`layer ${name} (ELU) has alpha ${String(c.alpha)}`);
    return ops.activation(x, 'elu', name);
  },
  Softmax: ({ ops, x, name }) => ops.activation(x, 'softmax', name),
  ZeroPadding2D: ({ ops, c, x, name }) => {
    const [[t, b], [l, r]] = c.padding as [[number, number], [number, number]];
    return ops.pad(
      x,
      [
        [0, 0],
        [t, b],
        [l, r],
        [0, 0],
      ],
      0,
      name,
    );
  },
  ...Object.fromEntries(
    Object.entries(MERGE_OPS).map(([cls, op]) => [
      cls,
      ({ ops, x, inputs, name }: LayerCall) => inputs.slice(1).reduce((acc, v, k) => ops.binary(op, acc, v, `${name}_${k}`), x),
    ]),
  ),
  Average: ({ ops, x, inputs, name }) => {
    const sum = inputs.slice(1).reduce((acc, v, k) => ops.binary('Add', acc, v, `${name}_${k}`), x);
    return ops.binary('Mul', sum, scalar(1 / inputs.length), name);
  },
  Concatenate: ({ ops, c, inputs, name }) => ops.concat(inputs, c.axis as number, name),
  MaxPooling2D: poolLayer,
  AveragePooling2D: poolLayer,
  GlobalAveragePooling2D: globalPoolLayer,
  GlobalMaxPooling2D: globalPoolLayer,
  Flatten: ({ ops, x, name }) => ops.flatten(x, name),
  Reshape: ({ ops, c, x, name }) => ops.reshape(x, [-1, ...(c.targetShape as number[])], name),
  Dense: ({ ops, c, w, x, name }) => {
    const k = w.get('kernel')!;
    const y = ops.dense(x, k.data, k.shape as [number, number], c.useBias ? w.get('bias')?.data : undefined, name);
    return ops.activation(y, activationOf(c.activation, name), `${name}/activation`);
  },
  Rescaling: ({ ops, c, x, name }) =>
    ops.binary('Add', ops.binary('Mul', x, scalar(c.scale as number), `${name}/scale`), scalar((c.offset as number | undefined) ?? 0), `${name}/offset`),
};

function poolLayer({ ops, c, x, name, cls }: LayerCall): Value {
  checkChannelsLast(c, name);
  const size = pair(c.poolSize, name);
  return ops.pool(x, cls === 'MaxPooling2D' ? 'max' : 'avg', size, pair(c.strides ?? size, name), padding(c.padding, name), name);
}

function globalPoolLayer({ ops, c, x, name, cls }: LayerCall): Value {
  checkChannelsLast(c, name);
  return ops.reduce(cls === 'GlobalAveragePooling2D' ? 'ReduceMean' : 'ReduceMax', x, [1, 2], (c.keepdims as boolean | undefined) ?? false, name);
}

function scalar(v: number): Value {
  return { name: '', rank: 0, constant: { data: Float32Array.of(v), shape: [] } };
}

/** A layer's weights by their short name (kernel, bias, gamma...), as floats. */
function weightsOf(layer: Layer): Map<string, { data: Float32Array; shape: number[] }> {
  const out = new Map<string, { data: Float32Array; shape: number[] }>();
  for (const v of layer.weights) {
    const short = (v.originalName ?? v.name).split('/').pop()!.replace(/:\d+$/, '');
    out.set(short, { data: v.read().dataSync() as Float32Array, shape: v.shape as number[] });
  }
  return out;
}

function checkChannelsLast(c: Config, name: string): void {
  if (c.dataFormat && c.dataFormat !== 'channelsLast') throw new ConversionError(`layer ${name} is channels-first`);
}

function pair(v: unknown, name: string): [number, number] {
  if (typeof v === 'number') return [v, v];
  if (Array.isArray(v) && v.length === 2) return [v[0] as number, v[1] as number];
  throw new ConversionError(`layer ${name}: cannot read ${JSON.stringify(v)} as a pair`);
}

function padding(p: unknown, name: string): Padding {
  if (p === 'same') return 'SAME';
  if (p === 'valid') return 'VALID';
  throw new ConversionError(`layer ${name} has padding ${JSON.stringify(p)}`);
}

function conv(c: Config, name = String(c.name)): { strides: [number, number]; dilations: [number, number]; padding: Padding } {
  return { strides: pair(c.strides, name), dilations: pair(c.dilationRate ?? 1, name), padding: padding(c.padding, name) };
}

const ACTIVATIONS: Record<string, Activation> = {
  linear: 'linear',
  relu: 'relu',
  relu6: 'relu6',
  sigmoid: 'sigmoid',
  tanh: 'tanh',
  elu: 'elu',
  selu: 'selu',
  softplus: 'softplus',
  softsign: 'softsign',
  hardSigmoid: 'hard_sigmoid',
  hard_sigmoid: 'hard_sigmoid',
  swish: 'swish',
  silu: 'swish',
  exponential: 'exponential',
  softmax: 'softmax',
};

function activationOf(a: unknown, name: string): Activation {
  const key = typeof a === 'string' ? a : a === undefined || a === null ? 'linear' : '';
  const found = ACTIVATIONS[key];
  if (!found) throw new ConversionError(`layer ${name} has activation ${JSON.stringify(a)}, which graft cannot convert`);
  return found;
}
