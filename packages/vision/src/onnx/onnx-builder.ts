import { onnx } from '../../gen/onnx.js';

/*
 * Writing an ONNX graph: nodes, constants and the graph's inputs and outputs, with names kept
 * unique, encoded as a ModelProto. Every model graft writes goes through here (converted backbones,
 * the backbone and head of a model folder).
 */

export const { DataType } = onnx.TensorProto;
export const { AttributeType } = onnx.AttributeProto;

/** The opset graft writes: wide support (ONNX Runtime Mobile, Core ML and NNAPI providers, onnx 1.12's checker). */
export const OPSET = 13;
/** IR version 8 (ONNX 1.12): what onnx 1.12's checker and every current runtime read. */
export const IR_VERSION = 8;

/** An attribute value, typed: ONNX tells an int from a float by its field. */
export type AttrValue = { f: number } | { i: number } | { s: string } | { floats: number[] } | { ints: number[] } | { t: onnx.TensorProto.$Properties };

export const int = (i: number): AttrValue => ({ i });
export const float = (f: number): AttrValue => ({ f });
export const ints = (v: readonly number[]): AttrValue => ({ ints: [...v] });
export const floats = (v: readonly number[]): AttrValue => ({ floats: [...v] });
export const str = (s: string): AttrValue => ({ s });

/** A dimension: a size, or a name for one the model leaves free (the batch). */
export type Dim = number | string;

function attribute(name: string, v: AttrValue): onnx.AttributeProto.$Properties {
  if ('f' in v) return { name, type: AttributeType.FLOAT, f: v.f };
  if ('i' in v) return { name, type: AttributeType.INT, i: v.i };
  if ('s' in v) return { name, type: AttributeType.STRING, s: new TextEncoder().encode(v.s) };
  if ('floats' in v) return { name, type: AttributeType.FLOATS, floats: v.floats };
  if ('ints' in v) return { name, type: AttributeType.INTS, ints: v.ints };
  return { name, type: AttributeType.TENSOR, t: v.t };
}

function valueInfo(name: string, elemType: number, dims: readonly Dim[]): onnx.ValueInfoProto.$Properties {
  return {
    name,
    type: { tensorType: { elemType, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } },
  };
}

/** A tensor's bytes as ONNX stores them (raw, little-endian, as typed arrays are on every platform graft runs on). */
export function tensorProto(
  name: string,
  data: Float32Array | Int32Array | BigInt64Array | Uint8Array,
  dims: readonly number[],
  dataType: number,
): onnx.TensorProto.$Properties {
  return { name, dims: [...dims], dataType, rawData: new Uint8Array(data.buffer, data.byteOffset, data.byteLength) };
}

/** One ONNX graph being written. Names are made unique; each method returns the name of the value it made. */
export class OnnxBuilder {
  private readonly nodes: onnx.NodeProto.$Properties[] = [];
  private readonly initializers: onnx.TensorProto.$Properties[] = [];
  private readonly inputs: onnx.ValueInfoProto.$Properties[] = [];
  private readonly outputs: onnx.ValueInfoProto.$Properties[] = [];
  private readonly taken = new Set<string>();

  /** A name not used yet, from a base name (a layer or node name of the source model). */
  unique(base: string): string {
    const clean = base || 'v';
    let name = clean;
    for (let k = 1; this.taken.has(name); k++) name = `${clean}_${k}`;
    this.taken.add(name);
    return name;
  }

  /** A float32 constant. */
  floats(base: string, data: Float32Array, dims: readonly number[]): string {
    const name = this.unique(base);
    this.initializers.push(tensorProto(name, data, dims, DataType.FLOAT));
    return name;
  }

  /** An int64 constant (shapes, axes, pads). */
  int64s(base: string, values: readonly number[], dims: readonly number[] = [values.length]): string {
    const name = this.unique(base);
    this.initializers.push(tensorProto(name, BigInt64Array.from(values.map((v) => BigInt(v))), dims, DataType.INT64));
    return name;
  }

  /** A scalar float constant. */
  scalar(base: string, value: number): string {
    return this.floats(base, Float32Array.of(value), []);
  }

  /** A node with one output. @returns the output's name. */
  node(op: string, inputs: readonly string[], attrs: Record<string, AttrValue> = {}, base = op): string {
    return this.nodeN(op, inputs, 1, attrs, base)[0];
  }

  /** A node with `count` outputs. */
  nodeN(op: string, inputs: readonly string[], count: number, attrs: Record<string, AttrValue> = {}, base = op): string[] {
    const name = this.unique(base);
    const outputs = count === 1 ? [name] : Array.from({ length: count }, (_, k) => this.unique(`${name}:${k}`));
    this.nodes.push({ name, opType: op, input: [...inputs], output: outputs, attribute: Object.entries(attrs).map(([k, v]) => attribute(k, v)) });
    return outputs;
  }

  /** A graph input. */
  input(base: string, elemType: number, dims: readonly Dim[]): string {
    const name = this.unique(base);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Makes `value` a graph output named `name` (through an Identity when the value has another name). */
  output(value: string, name: string, elemType: number, dims: readonly Dim[]): void {
    let out = value;
    if (value !== name) {
      if (this.taken.has(name)) throw new Error(`output name ${name} is taken`);
      this.taken.add(name);
      this.nodes.push({ name: `${name}/identity`, opType: 'Identity', input: [value], output: [name] });
      out = name;
    }
    this.outputs.push(valueInfo(out, elemType, dims));
  }

  /** The model, encoded. */
  encode(o: { graphName: string; producer: string; docString?: string; metadata?: Record<string, string> }): Uint8Array {
    const model: onnx.ModelProto.$Properties = {
      irVersion: IR_VERSION,
      opsetImport: [{ domain: '', version: OPSET }],
      producerName: o.producer,
      docString: o.docString ?? '',
      metadataProps: Object.entries(o.metadata ?? {}).map(([key, value]) => ({ key, value })),
      graph: { name: o.graphName, node: this.nodes, initializer: this.initializers, input: this.inputs, output: this.outputs },
    };
    return onnx.ModelProto.encode(model).finish();
  }
}

/** The smallest model: y = x, float [n]. What a provider is probed with. */
export function identityModel(): Uint8Array {
  const b = new OnnxBuilder();
  const x = b.input('x', DataType.FLOAT, ['n']);
  b.output(b.node('Identity', [x]), 'y', DataType.FLOAT, ['n']);
  return b.encode({ graphName: 'probe', producer: 'graft' });
}
