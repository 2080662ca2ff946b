import { BackboneError } from './errors.js';
import { floats, nodeOf, type GraphDef, type NodeDef } from './graphdef-nodes.js';
import { rewriteNode } from './graphdef-rewrite.js';

/*
 * The signature every retrain.py output graph shares (and the "TensorFlow for Poets" codelab built
 * on it): the frozen base, then retrain.py's own head: input_1/BottleneckInputPlaceholder (a
 * PlaceholderWithDefault whose default is the bottleneck), final_training_ops/weights/final_weights
 * [bottleneck, classes], final_training_ops/biases/final_biases, Wx_plus_b (MatMul + add), and
 * final_result (Softmax).
 */

/** retrain.py's head in a graph. */
export interface RetrainHead {
  /** The node whose output the head reads: the default of BottleneckInputPlaceholder. */
  bottleneck: string;
  /** The PlaceholderWithDefault itself. */
  placeholder: string;
  /** The Softmax (final_result). */
  output: string;
  /** The weight and bias nodes, as the graph names them (Const, or read through Identity or Dequantize). */
  weights: string;
  biases: string;
  dim: number;
  classes: number;
}

/** The MobileNet preprocessing retrain.py used when the graph has none: (x - 127.5) / 127.5. */
export const RETRAIN_MOBILENET_PREPROCESS = {
  name: 'symmetric',
  formula: '(x - 127.5) / 127.5',
  why: "retrain.py's MobileNet convention (input_mean = input_std = 127.5), not written in the graph",
} as const;

/** retrain.py's head, or undefined when the graph has none. */
export function retrainHead(graph: GraphDef): RetrainHead | undefined {
  const byName = new Map(graph.node.map((n) => [n.name, n]));
  const placeholder = graph.node.find((n) => n.op === 'PlaceholderWithDefault' && /BottleneckInputPlaceholder$/.test(n.name));
  if (!placeholder?.input[0]) return undefined;
  const consumers = (name: string) => graph.node.filter((n) => n.input.some((i) => nodeOf(i) === name));
  const matmul = consumers(placeholder.name).find((n) => n.op === 'MatMul');
  const add = matmul && consumers(matmul.name).find((n) => ['Add', 'AddV2', 'BiasAdd'].includes(n.op));
  const output = add && (byName.get('final_result') ?? consumers(add.name).find((n) => n.op === 'Softmax'));
  if (!matmul || !add || !output) return undefined;
  const weights = nodeOf(matmul.input[1]);
  const biases = nodeOf(add.input.map(nodeOf).find((i) => i !== matmul.name) ?? '');
  const shape = constShape(weights, byName);
  if (!shape || shape.length !== 2) return undefined;
  return { bottleneck: nodeOf(placeholder.input[0]), placeholder: placeholder.name, output: output.name, weights, biases, dim: shape[0], classes: shape[1] };
}

/** A weight node's shape, through Identity reads and Dequantize. */
function constShape(name: string, byName: Map<string, NodeDef>): number[] | undefined {
  const n = sourceConst(name, byName);
  return n?.attr.value?.tensor?.tensorShape?.dim?.map((d) => Number(d.size));
}

/** The Const (or Dequantize of one) a weight is read from, through Identity nodes. */
function sourceConst(name: string, byName: Map<string, NodeDef>): NodeDef | undefined {
  let n = byName.get(nodeOf(name));
  for (let hops = 0; n && n.op === 'Identity' && hops < 8; hops++) n = byName.get(nodeOf(n.input[0] ?? ''));
  if (n?.op === 'Dequantize') return byName.get(nodeOf(n.input[0] ?? ''));
  return n?.op === 'Const' ? n : undefined;
}

/**
 * The head's weights as floats: kernel [dim, classes] row-major and bias [classes], dequantized
 * when the graph stores them in 8 bits.
 * @throws BackboneError when they are not constants of the head's shape.
 */
export function retrainHeadWeights(graph: GraphDef, head: RetrainHead, origin: string): { kernel: Float32Array; bias: Float32Array } {
  const byName = new Map(graph.node.map((n) => [n.name, n]));
  const value = (name: string): Float32Array => {
    let n = byName.get(nodeOf(name));
    for (let hops = 0; n && n.op === 'Identity' && hops < 8; hops++) n = byName.get(nodeOf(n.input[0] ?? ''));
    if (n?.op === 'Dequantize') n = rewriteNode(n, byName, origin)[0];
    if (n?.op !== 'Const') throw new BackboneError(`${origin}: retrain.py's head weight ${name} is not a constant`);
    return floats(n, origin);
  };
  const kernel = value(head.weights);
  const bias = value(head.biases);
  if (kernel.length !== head.dim * head.classes || bias.length !== head.classes)
    throw new BackboneError(`${origin}: retrain.py's head has ${kernel.length} weights and ${bias.length} biases for [${head.dim}, ${head.classes}]`);
  return { kernel, bias };
}
