import * as tf from '@tensorflow/tfjs';
import { tensorflow } from '../gen/tensorflow.js';
import type { BackboneSpec } from './backbone-record.js';
import { BackboneError } from './errors.js';
import { DataType, constNode, nodeOf, type GraphDef, type NodeDef } from './graphdef-nodes.js';
import { readGraphDef } from './graphdef.js';
import type { ModelFiles } from './model-files.js';
import { modelArtifacts } from './tfjs-model.js';
import type { DenseSpec } from './onnx/with-head.js';

/*
 * retrain.py's way out: a frozen GraphDef backbone with a trained head appended as retrain.py writes
 * it, so what reads retrain.py's output_graph.pb (label_image.py, TensorFlow's camera demos, graft
 * import) reads a graft model too. The original graph is kept up to the bottleneck (its decoding head
 * included), then input_1/BottleneckInputPlaceholder, final_training_ops (weights, biases, MatMul,
 * add) and final_result (Softmax), constants frozen.
 */

/** The node a retrain.py graph's probabilities come out of. */
export const RETRAIN_OUTPUT = 'final_result';

const FLOAT = { type: DataType.DT_FLOAT };

/** The nodes an output needs (its ancestors, and itself). */
function ancestors(graph: GraphDef, output: string): Set<string> {
  const byName = new Map(graph.node.map((n) => [n.name, n]));
  const keep = new Set<string>();
  const stack = [output];
  while (stack.length) {
    const name = stack.pop()!;
    if (keep.has(name)) continue;
    const n = byName.get(name);
    if (!n) throw new BackboneError(`the graph has no node ${name}`);
    keep.add(name);
    for (const i of n.input) stack.push(nodeOf(i));
  }
  return keep;
}

/**
 * The rank of a graph backbone's bottleneck, from one run of its converted TF.js graph on a blank
 * picture: 4 (spatial, pooled as graft pools it) or 2.
 */
export async function bottleneckRank(files: ModelFiles, spec: Pick<BackboneSpec, 'inputSize'>): Promise<number> {
  const model = await tf.loadGraphModel(tf.io.fromMemory(modelArtifacts(files)));
  const x = tf.zeros([1, spec.inputSize!, spec.inputSize!, 3]);
  try {
    const y = model.execute(x) as tf.Tensor;
    const rank = y.rank;
    y.dispose();
    return rank;
  } finally {
    x.dispose();
    model.dispose();
  }
}

/**
 * The original GraphDef up to `bottleneck`, then retrain.py's head with these weights (one softmax
 * layer: retrain.py's shape), as bytes. A spatial bottleneck (`rank` 4) is global-average-pooled first, as graft pools it.
 * @throws BackboneError when the head is not one softmax layer, or the bottleneck is not in the graph.
 */
export function retrainOutputGraph(pb: Uint8Array, origin: string, bottleneck: string, rank: number, head: readonly DenseSpec[]): Uint8Array {
  if (head.length !== 1 || head[0].activation !== 'softmax') throw new BackboneError("the head has a hidden layer: retrain.py's graph holds one softmax layer");
  const [layer] = head;
  const graph = readGraphDef(pb, origin);
  const keep = ancestors(graph, nodeOf(bottleneck));
  const nodes: NodeDef[] = graph.node.filter((n) => keep.has(n.name));
  const taken = new Set(nodes.map((n) => n.name));
  for (const name of ['input_1/BottleneckInputPlaceholder', RETRAIN_OUTPUT])
    if (taken.has(name)) throw new BackboneError(`the graph's bottleneck already depends on a node named ${name}`);
  let features = bottleneck;
  if (rank === 4) {
    nodes.push(constNode('graft/bottleneck_pool/reduction_indices', Int32Array.of(1, 2), [2]), {
      name: 'graft/bottleneck_pool',
      op: 'Mean',
      input: [bottleneck, 'graft/bottleneck_pool/reduction_indices'],
      attr: { T: FLOAT, Tidx: { type: DataType.DT_INT32 }, keep_dims: { b: false } },
    });
    features = 'graft/bottleneck_pool';
  }
  nodes.push(
    {
      name: 'input_1/BottleneckInputPlaceholder',
      op: 'PlaceholderWithDefault',
      input: [features],
      attr: { dtype: FLOAT, shape: { shape: { dim: [{ size: -1 }, { size: layer.inputs }] } } },
    },
    constNode('final_training_ops/weights/final_weights', layer.kernel, [layer.inputs, layer.units]),
    constNode('final_training_ops/biases/final_biases', layer.bias, [layer.units]),
    {
      name: 'final_training_ops/Wx_plus_b/MatMul',
      op: 'MatMul',
      input: ['input_1/BottleneckInputPlaceholder', 'final_training_ops/weights/final_weights'],
      attr: { T: FLOAT, transpose_a: { b: false }, transpose_b: { b: false } },
    },
    {
      name: 'final_training_ops/Wx_plus_b/add',
      op: 'Add',
      input: ['final_training_ops/Wx_plus_b/MatMul', 'final_training_ops/biases/final_biases'],
      attr: { T: FLOAT },
    },
    { name: RETRAIN_OUTPUT, op: 'Softmax', input: ['final_training_ops/Wx_plus_b/add'], attr: { T: FLOAT } },
  );
  return tensorflow.GraphDef.encode(tensorflow.GraphDef.fromObject({ node: nodes, versions: graph.versions ?? undefined })).finish();
}
