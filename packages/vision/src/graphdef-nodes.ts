import { tensorflow } from '../gen/tensorflow.js';
import { BackboneError } from './errors.js';

/* A GraphDef's messages as graft reads them, and the small helpers every graph step shares. */

export const { DataType } = tensorflow;

/* The decoded messages, as graft reads them (protobufjs fills repeated fields with [] and maps with {}). */
export interface TensorShape {
  dim: { size: number }[];
}
export interface Tensor {
  dtype: number;
  tensorShape?: TensorShape | null;
  tensorContent?: Uint8Array;
  floatVal: number[];
  doubleVal: number[];
  intVal: number[];
  int64Val: number[];
}
export interface Attr {
  list?: { i?: number[] };
  s?: Uint8Array;
  i?: number;
  f?: number;
  b?: boolean;
  type?: number;
  shape?: TensorShape;
  tensor?: Tensor;
}
export interface NodeDef {
  name: string;
  op: string;
  input: string[];
  device?: string;
  attr: Record<string, Attr>;
}
export interface GraphDef {
  node: NodeDef[];
  versions?: { producer: number } | null;
  version?: number;
}

/** A fresh, aligned copy (Node's Buffer#slice would be a view into the file). */
export function aligned(b: Uint8Array): ArrayBuffer {
  return Uint8Array.prototype.slice.call(b).buffer as ArrayBuffer;
}

/** `name:1` and `^name` both name the node `name`. */
export function nodeOf(input: string): string {
  return input.replace(/^\^/, '').replace(/:\d+$/, '');
}

export function attrOf(n: NodeDef, key: string): Attr | undefined {
  return n.attr?.[key] ?? undefined;
}

/** The values of a Const node, as TF.js weights take them. @throws BackboneError for a dtype graft does not read. */
export function constValues(n: NodeDef, origin: string): { dtype: 'float32' | 'int32'; shape: number[]; bytes: Uint8Array } {
  const t = attrOf(n, 'value')?.tensor;
  if (!t) throw new BackboneError(`${origin}: Const node ${n.name} has no value`);
  const shape = (t.tensorShape?.dim ?? []).map((d) => Number(d.size));
  const size = shape.reduce((a, b) => a * b, 1);
  const fill = <T extends Float32Array | Int32Array>(out: T, vals: ArrayLike<number>): T => {
    if (vals.length === size) out.set(vals);
    else if (vals.length === 1) out.fill(vals[0]);
    else if (vals.length !== 0) throw new BackboneError(`${origin}: Const node ${n.name} has ${vals.length} values for shape [${shape}]`);
    return out;
  };
  const asBytes = (a: Float32Array | Int32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
  const content = t.tensorContent && t.tensorContent.length ? t.tensorContent : undefined;
  const check = (bytesPer: number) => {
    if (content && content.length !== size * bytesPer)
      throw new BackboneError(`${origin}: Const node ${n.name} has ${content.length} bytes for shape [${shape}] (truncated?)`);
  };
  switch (t.dtype) {
    case DataType.DT_FLOAT:
      check(4);
      // The raw bytes are a view into the file (little-endian, as TensorFlow writes them): no copy here.
      return { dtype: 'float32', shape, bytes: content ?? asBytes(fill(new Float32Array(size), t.floatVal)) };
    case DataType.DT_DOUBLE: {
      check(8);
      const vals = content ? new Float64Array(aligned(content)) : t.doubleVal;
      return { dtype: 'float32', shape, bytes: asBytes(fill(new Float32Array(size), vals)) };
    }
    case DataType.DT_INT32:
      check(4);
      return { dtype: 'int32', shape, bytes: content ?? asBytes(fill(new Int32Array(size), t.intVal)) };
    case DataType.DT_INT64: {
      check(8);
      const vals = content ? Array.from(new BigInt64Array(aligned(content)), Number) : t.int64Val.map(Number);
      return { dtype: 'int32', shape, bytes: asBytes(fill(new Int32Array(size), vals)) };
    }
    default:
      throw new BackboneError(`${origin}: Const node ${n.name} has type ${DataType[t.dtype] ?? t.dtype}, which graft cannot turn into a weight`);
  }
}

/** A float32 Const node's values. */
export function floats(n: NodeDef, origin: string): Float32Array {
  const v = constValues(n, origin);
  if (v.dtype !== 'float32') throw new BackboneError(`${origin}: ${n.name} is not a float constant`);
  return new Float32Array(aligned(v.bytes));
}

export function constNode(name: string, values: Float32Array | Int32Array, shape: number[]): NodeDef {
  const dtype = values instanceof Float32Array ? DataType.DT_FLOAT : DataType.DT_INT32;
  const bytes = new Uint8Array(values.buffer, values.byteOffset, values.byteLength);
  return {
    name,
    op: 'Const',
    input: [],
    attr: {
      dtype: { type: dtype },
      value: {
        tensor: { dtype, tensorShape: { dim: shape.map((size) => ({ size })) }, tensorContent: bytes, floatVal: [], doubleVal: [], intVal: [], int64Val: [] },
      },
    },
  };
}

/**
 * The integer values of an 8-bit Const (quint8, qint8, uint8, int8), as quantized weights store them.
 * @throws BackboneError for another type, or a size that does not match the shape.
 */
export function quantizedValues(n: NodeDef, origin: string): { values: Int32Array; shape: number[]; signed: boolean } {
  const t = attrOf(n, 'value')?.tensor;
  if (!t) throw new BackboneError(`${origin}: Const node ${n.name} has no value`);
  const shape = (t.tensorShape?.dim ?? []).map((d) => Number(d.size));
  const size = shape.reduce((a, b) => a * b, 1);
  const signed = t.dtype === DataType.DT_QINT8 || t.dtype === DataType.DT_INT8;
  if (![DataType.DT_QUINT8, DataType.DT_QINT8, DataType.DT_UINT8, DataType.DT_INT8].includes(t.dtype))
    throw new BackboneError(`${origin}: ${n.name} is a ${DataType[t.dtype] ?? t.dtype} constant, not 8-bit quantized values`);
  const content = t.tensorContent && t.tensorContent.length ? t.tensorContent : undefined;
  let values: Int32Array;
  if (content) {
    if (content.length !== size) throw new BackboneError(`${origin}: Const node ${n.name} has ${content.length} bytes for shape [${shape}] (truncated?)`);
    values = signed ? Int32Array.from(new Int8Array(aligned(content))) : Int32Array.from(content);
  } else {
    const vals = t.intVal;
    if (vals.length !== size && vals.length !== 1) throw new BackboneError(`${origin}: Const node ${n.name} has ${vals.length} values for shape [${shape}]`);
    values = vals.length === size ? Int32Array.from(vals) : new Int32Array(size).fill(vals[0]);
  }
  return { values, shape, signed };
}
