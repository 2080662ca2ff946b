import { uniformAffine, type ChannelAffine } from '../backbone-record.js';
import { DataType, OnnxBuilder, float, int, ints, str, type AttrValue } from './onnx-builder.js';

/*
 * TensorFlow's image ops (NHWC, channels last) written as ONNX (whose convolutions and pools are
 * NCHW). Every value keeps TensorFlow's meaning; a 4-D value may be held channels-first, and is
 * transposed only where an op needs the other layout (once per value), so a chain of convolutions,
 * activations and per-channel arithmetic runs channels-first with no transpose between its ops.
 * Both converters (Keras layers, TF graphs) write through here.
 */

/** Thrown for what the converter cannot write; the backbone then stays on TF.js, with this reason. */
export class ConversionError extends Error {
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'ConversionError';
  }
}

/** A value of the source model: its ONNX name, and how it is held. */
export interface Value {
  name: string;
  /** Rank when known (4 for images); undefined when the converter cannot tell. */
  rank?: number;
  /** A 4-D value held channels-first (NCHW); otherwise it is held as TensorFlow has it. */
  nchw?: boolean;
  /** A constant's values, when the converter knows them (weights, shapes, axes). */
  constant?: { data: Float32Array | Int32Array; shape: number[] };
}

const TO_NCHW = [0, 3, 1, 2];
const TO_NHWC = [0, 2, 3, 1];
/** Where each NHWC axis sits in NCHW. */
const NCHW_AXIS = [0, 2, 3, 1];

export type Padding = 'SAME' | 'VALID' | { pads: [number, number, number, number] /* top, bottom, left, right */ };

export interface ConvOptions {
  strides: [number, number];
  dilations?: [number, number];
  padding: Padding;
}

export type Activation =
  | 'linear'
  | 'relu'
  | 'relu6'
  | 'sigmoid'
  | 'tanh'
  | 'elu'
  | 'selu'
  | 'softplus'
  | 'softsign'
  | 'hard_sigmoid'
  | 'swish'
  | 'exponential'
  | 'softmax'
  | { leaky: number }
  | { clip: [number, number] };

/** The TensorFlow ops graft converts, written into one ONNX graph. */
export class TfOps {
  private readonly nchwOf = new Map<string, string>();
  private readonly nhwcOf = new Map<string, string>();

  constructor(readonly b: OnnxBuilder) {}

  /** The value as TensorFlow has it (a channels-first value transposed back, once). */
  nhwc(v: Value): string {
    if (!v.nchw) return v.name;
    let t = this.nhwcOf.get(v.name);
    if (!t) {
      t = this.b.node('Transpose', [v.name], { perm: ints(TO_NHWC) }, `${v.name}/nhwc`);
      this.nhwcOf.set(v.name, t);
    }
    return t;
  }

  /** A 4-D value channels-first (transposed once). */
  nchw(v: Value): string {
    if (v.nchw) return v.name;
    if (v.rank !== undefined && v.rank !== 4) throw new ConversionError(`${v.name} has rank ${v.rank}, not an image`);
    let t = this.nchwOf.get(v.name);
    if (!t) {
      t = this.b.node('Transpose', [v.name], { perm: ints(TO_NCHW) }, `${v.name}/nchw`);
      this.nchwOf.set(v.name, t);
    }
    return t;
  }

  /** A value as TensorFlow has it, wrapped. */
  plain(name: string, rank?: number): Value {
    return { name, rank };
  }

  private image(name: string): Value {
    return { name, rank: 4, nchw: true };
  }

  private pads(
    p: Padding,
    kernel: [number, number] = [1, 1],
    dilations: [number, number] = [1, 1],
    strides: [number, number] = [1, 1],
  ): Record<string, AttrValue> {
    if (p === 'SAME' && (dilations[0] > 1 || dilations[1] > 1)) {
      // ONNX Runtime computes no SAME padding for dilated kernels. TensorFlow dilates with stride 1
      // only, and SAME then pads (k - 1) * d whatever the input's size, the odd one at the end.
      if (strides[0] !== 1 || strides[1] !== 1) throw new ConversionError('a dilated convolution with strides');
      const total = kernel.map((k, i) => (k - 1) * dilations[i]);
      return { pads: ints([Math.floor(total[0] / 2), Math.floor(total[1] / 2), Math.ceil(total[0] / 2), Math.ceil(total[1] / 2)]) };
    }
    if (p === 'SAME') return { auto_pad: str('SAME_UPPER') };
    if (p === 'VALID') return { pads: ints([0, 0, 0, 0]) };
    const [t, bt, l, r] = p.pads;
    return { pads: ints([t, l, bt, r]) };
  }

  /** tf.nn.conv2d with an HWIO kernel [kh, kw, in, out], plus a bias. */
  conv2d(x: Value, kernel: Float32Array, shape: number[], bias: Float32Array | undefined, o: ConvOptions, base: string): Value {
    const [kh, kw, cin, cout] = shape;
    const w = new Float32Array(kernel.length);
    for (let h = 0; h < kh; h++)
      for (let ww = 0; ww < kw; ww++)
        for (let i = 0; i < cin; i++) for (let c = 0; c < cout; c++) w[((c * cin + i) * kh + h) * kw + ww] = kernel[((h * kw + ww) * cin + i) * cout + c];
    return this.conv(x, w, [cout, cin, kh, kw], bias, o, 1, base);
  }

  /** tf.nn.depthwise_conv2d with a kernel [kh, kw, in, multiplier], plus a bias. */
  depthwise(x: Value, kernel: Float32Array, shape: number[], bias: Float32Array | undefined, o: ConvOptions, base: string): Value {
    const [kh, kw, cin, mult] = shape;
    const w = new Float32Array(kernel.length);
    for (let h = 0; h < kh; h++)
      for (let ww = 0; ww < kw; ww++)
        for (let i = 0; i < cin; i++) for (let m = 0; m < mult; m++) w[((i * mult + m) * kh + h) * kw + ww] = kernel[((h * kw + ww) * cin + i) * mult + m];
    return this.conv(x, w, [cin * mult, 1, kh, kw], bias, o, cin, base);
  }

  private conv(x: Value, w: Float32Array, wShape: number[], bias: Float32Array | undefined, o: ConvOptions, group: number, base: string): Value {
    const inputs = [this.nchw(x), this.b.floats(`${base}/W`, w, wShape)];
    if (bias) inputs.push(this.b.floats(`${base}/B`, bias, [bias.length]));
    const kernel = wShape.slice(2) as [number, number];
    const dilations = o.dilations ?? [1, 1];
    const attrs: Record<string, AttrValue> = {
      kernel_shape: ints(kernel),
      strides: ints(o.strides),
      dilations: ints(dilations),
      group: int(group),
      ...this.pads(o.padding, kernel, dilations, o.strides),
    };
    return this.image(this.b.node('Conv', inputs, attrs, base));
  }

  /** Max or average pooling (TensorFlow's average leaves padding out of the count, as ONNX's does by default). */
  pool(x: Value, kind: 'max' | 'avg', size: [number, number], strides: [number, number], padding: Padding, base: string): Value {
    const attrs = { kernel_shape: ints(size), strides: ints(strides), ...this.pads(padding) };
    return this.image(this.b.node(kind === 'max' ? 'MaxPool' : 'AveragePool', [this.nchw(x)], attrs, base));
  }

  /** Mean over image axes (global average pooling and its kin). */
  mean(x: Value, axes: number[], keepDims: boolean, base: string): Value {
    return this.reduce('ReduceMean', x, axes, keepDims, base);
  }

  reduce(op: 'ReduceMean' | 'ReduceMax', x: Value, axes: number[], keepDims: boolean, base: string): Value {
    const norm = axes.map((a) => (a < 0 && x.rank ? a + x.rank : a)).sort();
    // Channels-first can be reduced in place when what is left has the same order either way: channels
    // left beside height or width would come out in another order.
    const left = [0, 1, 2, 3].filter((a) => !norm.includes(a));
    const keepsOrder = keepDims || !(left.includes(3) && (left.includes(1) || left.includes(2)));
    if (x.nchw && norm.every((a) => a >= 0) && keepsOrder) {
      const out = this.b.node(op, [x.name], { axes: ints(norm.map((a) => NCHW_AXIS[a])), keepdims: int(keepDims ? 1 : 0) }, base);
      return keepDims ? this.image(out) : { name: out, rank: 4 - norm.length };
    }
    const out = this.b.node(op, [this.nhwc(x)], { axes: ints(norm), keepdims: int(keepDims ? 1 : 0) }, base);
    return { name: out, rank: x.rank === undefined ? undefined : keepDims ? x.rank : x.rank - norm.length };
  }

  /** An activation, applied where the value is held (all are elementwise but softmax). */
  activation(x: Value, a: Activation, base: string): Value {
    if (a === 'linear') return x;
    const keep = (name: string): Value => ({ ...x, name, constant: undefined });
    if (a === 'softmax') return { name: this.b.node('Softmax', [this.nhwc(x)], { axis: int(-1) }, base), rank: x.rank };
    if (typeof a === 'object' && 'leaky' in a) return keep(this.b.node('LeakyRelu', [x.name], { alpha: float(a.leaky) }, base));
    if (typeof a === 'object')
      return keep(this.b.node('Clip', [x.name, this.b.scalar(`${base}/min`, a.clip[0]), this.b.scalar(`${base}/max`, a.clip[1])], {}, base));
    switch (a) {
      case 'relu6':
        return this.activation(x, { clip: [0, 6] }, base);
      case 'hard_sigmoid':
        return keep(this.b.node('HardSigmoid', [x.name], { alpha: float(0.2), beta: float(0.5) }, base));
      case 'swish':
        return keep(this.b.node('Mul', [x.name, this.b.node('Sigmoid', [x.name], {}, `${base}/sigmoid`)], {}, base));
      case 'exponential':
        return keep(this.b.node('Exp', [x.name], {}, base));
      default: {
        const op = ({ relu: 'Relu', sigmoid: 'Sigmoid', tanh: 'Tanh', elu: 'Elu', selu: 'Selu', softplus: 'Softplus', softsign: 'Softsign' } as const)[a];
        return keep(this.b.node(op, [x.name], {}, base));
      }
    }
  }

  /** An elementwise op of one input (Sqrt, Neg...): kept where the value is held. */
  unary(op: string, x: Value, base: string): Value {
    return { ...x, constant: undefined, name: this.b.node(op, [x.name], {}, base) };
  }

  /**
   * An elementwise op of two values with TensorFlow's broadcasting. A channels-first image stays
   * channels-first with another one, a scalar, or a per-channel constant (reshaped to [C, 1, 1]).
   */
  binary(op: 'Add' | 'Sub' | 'Mul' | 'Div' | 'Max' | 'Min', a: Value, c: Value, base: string): Value {
    const image = a.nchw ? a : c.nchw ? c : undefined;
    const other = image === a ? c : a;
    if (image && (other.nchw || (other.rank === 4 && !other.constant))) {
      const names = [this.nchw(a), this.nchw(c)];
      return this.image(this.b.node(op, names, {}, base));
    }
    if (image && other.constant) {
      const k = this.channelsFirstConstant(other.constant, base);
      if (k) return this.image(this.b.node(op, image === a ? [a.name, k] : [k, c.name], {}, base));
    }
    const rank = a.rank !== undefined && c.rank !== undefined ? Math.max(a.rank, c.rank) : undefined;
    return { name: this.b.node(op, [this.held(a, base), this.held(c, base)], {}, base), rank };
  }

  /** A value as TensorFlow has it, a constant not yet in the graph written as one. */
  private held(v: Value, base: string): string {
    if (v.name) return this.nhwc(v);
    const k = v.constant!;
    return k.data instanceof Float32Array ? this.b.floats(`${base}/k`, k.data, k.shape) : this.b.int64s(`${base}/k`, Array.from(k.data), k.shape);
  }

  /** A constant that broadcasts over NHWC as a channels-first one: a scalar, [C], [1, C], [1, 1, C], [1, 1, 1, C]. */
  private channelsFirstConstant(k: { data: Float32Array | Int32Array; shape: number[] }, base: string): string | undefined {
    const size = k.shape.reduce((p, d) => p * d, 1);
    const data = k.data instanceof Float32Array ? k.data : Float32Array.from(k.data);
    if (size === 1) return this.b.floats(`${base}/k`, data.slice(0, 1), []);
    if (k.shape.length > 4 || k.shape.slice(0, -1).some((d) => d !== 1)) return undefined;
    return this.b.floats(`${base}/k`, data, [size, 1, 1]);
  }

  /** A constant value (folded into the ops that read it where they can). */
  constant(base: string, data: Float32Array | Int32Array, shape: number[]): Value {
    const name = data instanceof Float32Array ? this.b.floats(base, data, shape) : this.b.int64s(base, Array.from(data), shape);
    return { name, rank: shape.length, constant: { data, shape } };
  }

  /** Per-channel y = x * scale + offset (a batch norm folded: ONNX Runtime folds it into the convolution before it). */
  scaleOffset(x: Value, scale: Float32Array, offset: Float32Array, base: string): Value {
    const mul = this.binary('Mul', x, { name: '', rank: 1, constant: { data: scale, shape: [scale.length] } }, `${base}/scale`);
    return this.binary('Add', mul, { name: '', rank: 1, constant: { data: offset, shape: [offset.length] } }, `${base}/offset`);
  }

  /** Batch normalisation in inference: (x - mean) / sqrt(var + eps) * gamma + beta, on the last axis. */
  batchNorm(x: Value, p: { mean: Float32Array; variance: Float32Array; gamma?: Float32Array; beta?: Float32Array; epsilon: number }, base: string): Value {
    const c = p.mean.length;
    const scale = new Float32Array(c);
    const offset = new Float32Array(c);
    for (let i = 0; i < c; i++) {
      scale[i] = (p.gamma ? p.gamma[i] : 1) / Math.sqrt(p.variance[i] + p.epsilon);
      offset[i] = (p.beta ? p.beta[i] : 0) - p.mean[i] * scale[i];
    }
    return this.scaleOffset(x, scale, offset, base);
  }

  /** Concatenation along a TensorFlow axis (channels map to channels-first when every input is held so). */
  concat(xs: Value[], axis: number, base: string): Value {
    const rank = xs.find((x) => x.rank !== undefined)?.rank;
    const a = axis < 0 && rank !== undefined ? axis + rank : axis;
    if (a >= 0 && xs.every((x) => x.nchw || (x.rank === 4 && !x.constant))) {
      return this.image(
        this.b.node(
          'Concat',
          xs.map((x) => this.nchw(x)),
          { axis: int(NCHW_AXIS[a]) },
          base,
        ),
      );
    }
    return {
      name: this.b.node(
        'Concat',
        xs.map((x) => this.nhwc(x)),
        { axis: int(axis) },
        base,
      ),
      rank,
    };
  }

  /** Zero (or constant) padding, pads as TensorFlow gives them: [[before, after]] per axis. */
  pad(x: Value, pairs: number[][], value: number, base: string): Value {
    const rank = pairs.length;
    const order = x.nchw ? TO_NCHW : [...Array(rank).keys()];
    const onnxPads = [...order.map((a) => pairs[a][0]), ...order.map((a) => pairs[a][1])];
    const out = this.b.node('Pad', [x.name, this.b.int64s(`${base}/pads`, onnxPads), this.b.scalar(`${base}/value`, value)], { mode: str('constant') }, base);
    return { ...x, name: out, constant: undefined };
  }

  /** x @ w (+ bias) for a 2-D x and a [in, out] matrix. */
  dense(x: Value, w: Float32Array, shape: [number, number], bias: Float32Array | undefined, base: string): Value {
    if (x.rank !== undefined && x.rank !== 2) throw new ConversionError(`${base}: a dense layer on a rank-${x.rank} input`);
    const inputs = [this.nhwc(x), this.b.floats(`${base}/W`, w, shape)];
    if (bias) inputs.push(this.b.floats(`${base}/B`, bias, [bias.length]));
    return { name: this.b.node('Gemm', inputs, {}, base), rank: 2 };
  }

  /** Reshape to a TensorFlow shape (-1 once allowed, 0 never: TensorFlow has no "copy this dimension"). */
  reshape(x: Value, shape: number[], base: string): Value {
    return { name: this.b.node('Reshape', [this.nhwc(x), this.b.int64s(`${base}/shape`, shape)], {}, base), rank: shape.length };
  }

  /** [N, ...] to [N, rest] in TensorFlow's order. */
  flatten(x: Value, base: string): Value {
    return { name: this.b.node('Flatten', [this.nhwc(x)], { axis: int(1) }, base), rank: 2 };
  }

  /** Identity, for ops that pass their input on (dropout, noise, stop-gradient in inference). */
  identity(x: Value): Value {
    return x;
  }

  /** uint8 NHWC pixels to the model's float input: x * scale + offset per channel (skipped where it is x). */
  pixels(name: string, size: number, affine: ChannelAffine): Value {
    const input = this.b.input(name, DataType.UINT8, ['batch', size, size, 3]);
    const x = this.b.node('Cast', [input], { to: int(DataType.FLOAT) }, 'pixels_float');
    return { name: affinePixels(this.b, x, affine), rank: 4 };
  }

  /** A bottleneck as graft pools it: images averaged over height and width, vectors as they are, anything else flattened. */
  pooled(x: Value, base: string): Value {
    if (x.rank === 4) return this.mean(x, [1, 2], false, base);
    if (x.rank === 2) return x;
    return this.flatten(x, base);
  }
}

/** x * scale + offset on float NHWC pixels (scalars when the channels share them, else [3] on the last axis). */
export function affinePixels(b: OnnxBuilder, x: string, a: ChannelAffine): string {
  const u = uniformAffine(a);
  const k = (base: string, v: readonly number[]) => (u ? b.scalar(base, v[0]) : b.floats(base, Float32Array.from(v), [3]));
  let y = x;
  if (!u || u.scale !== 1) y = b.node('Mul', [y, k('preprocess_scale', a.scale)], {}, 'preprocess_scale');
  if (!u || u.offset !== 0) y = b.node('Add', [y, k('preprocess_offset', a.offset)], {}, 'preprocess_offset');
  return y;
}
