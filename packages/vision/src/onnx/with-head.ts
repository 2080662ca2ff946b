import { onnx } from '../../gen/onnx.js';
import { DataType, IR_VERSION, OPSET, tensorProto } from './onnx-builder.js';
import { VECTORS } from './backbone-onnx.js';

/*
 * A backbone's ONNX graph (uint8 pixels in, pooled vectors out) with a classifier head appended:
 * dense layers (ReLU between them, softmax last), class probabilities out. What a model folder's
 * model.onnx is: an app feeds resized RGB pixels and reads probabilities, nothing else.
 */

/** The output of a model with its head: class probabilities [batch, classes]. */
export const PROBABILITIES = 'probabilities';

/** One dense layer of a head: kernel [inputs, units] row-major, bias [units], its activation. */
export interface DenseSpec {
  kernel: Float32Array;
  bias: Float32Array;
  inputs: number;
  units: number;
  activation: 'relu' | 'softmax';
}

/**
 * The backbone's graph with the head after its vectors: one output, `probabilities`.
 * @throws Error when the backbone's graph has no `vectors` output, or the layers do not chain (a bug).
 */
export function withHead(backbone: Uint8Array, layers: readonly DenseSpec[], o: { description: string; metadata?: Record<string, string> }): Uint8Array {
  const model = onnx.ModelProto.decode(backbone);
  const graph = model.graph!;
  const nodes = (graph.node ??= []);
  const initializers = (graph.initializer ??= []);
  if (!(graph.output ?? []).some((v) => v.name === VECTORS)) throw new Error(`the backbone's graph has no ${VECTORS} output`);
  if (layers.length === 0 || layers.at(-1)!.activation !== 'softmax') throw new Error('a head ends in a softmax layer');
  const taken = new Set<string>([
    ...nodes.flatMap((n) => n.output ?? []),
    ...initializers.map((t) => t.name ?? ''),
    ...(graph.input ?? []).map((v) => v.name ?? ''),
  ]);
  const name = (base: string) => {
    let n = base;
    for (let k = 1; taken.has(n); k++) n = `${base}_${k}`;
    taken.add(n);
    return n;
  };
  let x = VECTORS;
  for (const [i, l] of layers.entries()) {
    if (l.kernel.length !== l.inputs * l.units || l.bias.length !== l.units) throw new Error(`head layer ${i} has a kernel or bias of the wrong size`);
    const k = name(`head/dense_${i}/kernel`);
    const b = name(`head/dense_${i}/bias`);
    initializers.push(
      onnx.TensorProto.create(tensorProto(k, l.kernel, [l.inputs, l.units], DataType.FLOAT)),
      onnx.TensorProto.create(tensorProto(b, l.bias, [l.units], DataType.FLOAT)),
    );
    const mm = name(`head/dense_${i}/matmul`);
    const add = name(`head/dense_${i}/logits`);
    const act = i === layers.length - 1 ? PROBABILITIES : name(`head/dense_${i}/relu`);
    nodes.push(
      onnx.NodeProto.create({ name: mm, opType: 'MatMul', input: [x, k], output: [mm] }),
      onnx.NodeProto.create({ name: add, opType: 'Add', input: [mm, b], output: [add] }),
      onnx.NodeProto.create({ name: act, opType: l.activation === 'relu' ? 'Relu' : 'Softmax', input: [add], output: [act] }),
    );
    x = act;
  }
  const classes = layers.at(-1)!.units;
  graph.output = [
    onnx.ValueInfoProto.create({
      name: PROBABILITIES,
      type: { tensorType: { elemType: DataType.FLOAT, shape: { dim: [{ dimParam: 'batch' }, { dimValue: classes }] } } },
    }),
  ];
  graph.name = 'graft_classifier';
  model.irVersion = IR_VERSION;
  model.opsetImport = [onnx.OperatorSetIdProto.create({ domain: '', version: OPSET })];
  model.docString = o.description;
  model.metadataProps = Object.entries(o.metadata ?? {}).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }));
  return onnx.ModelProto.encode(model).finish();
}
