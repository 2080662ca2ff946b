import * as tf from '@tensorflow/tfjs';
import { resolveTrainOptions, type ResolvedTrainOptions, type TrainOptions } from './options.js';

/** Vectors and their class indices. */
export interface LabelledVectors {
  x: Float32Array[];
  y: number[];
}

export interface HeadDataset {
  dim: number;
  classes: string[];
  train: LabelledVectors;
  validation: LabelledVectors;
}

export interface EpochResult {
  epoch: number;
  epochs: number;
  loss: number;
  accuracy: number;
  valLoss: number;
  valAccuracy: number;
}

/** Plain tensors: a checkpoint holds nothing tf-specific so it can be stored anywhere. */
export interface SavedTensor {
  name: string;
  shape: number[];
  values: Float32Array;
}

/** Everything needed to continue training exactly where it stopped. */
export interface TrainingCheckpoint {
  epoch: number;
  weights: SavedTensor[];
  optimizer: SavedTensor[];
  bestValAccuracy: number;
  bestValLoss: number;
  bestEpoch: number;
  bestWeights: SavedTensor[];
  epochsWithoutImprovement: number;
  history: EpochResult[];
}

/** A trained softmax head on standardised inputs. */
export interface TrainedHead {
  dim: number;
  classes: string[];
  /** [dim, classes] row-major. */
  kernel: Float32Array;
  bias: Float32Array;
  mean: Float32Array;
  std: Float32Array;
  options: ResolvedTrainOptions;
  history: EpochResult[];
  bestEpoch: number;
  stoppedEarly: boolean;
}

export interface TrainHooks {
  /** After each epoch, before its checkpoint. */
  onEpoch?: (r: EpochResult) => void | Promise<void>;
  /** Called after each epoch with the state to persist. */
  checkpoint?: (c: TrainingCheckpoint) => Promise<void>;
  /** Resume from this state instead of starting afresh. */
  resumeFrom?: TrainingCheckpoint;
  /** Checked between epochs: stop (throwing TrainingAborted) when true. */
  shouldStop?: () => boolean;
}

/** Training was asked to stop (shutdown); the last checkpoint holds its progress. */
export class TrainingAborted extends Error {
  constructor(readonly epoch: number) {
    super(`training stopped after epoch ${epoch}`);
    this.name = 'TrainingAborted';
  }
}

/**
 * Trains a [dim, classes] softmax layer with early stopping on validation accuracy
 * (the best epoch's weights are kept). Deterministic for a seed, so a resumed run
 * follows the same path as one that never stopped.
 * @throws RangeError for bad options or an empty training set.
 */
export async function trainHead(data: HeadDataset, options: TrainOptions = {}, hooks: TrainHooks = {}): Promise<TrainedHead> {
  const opts = resolveTrainOptions(options, data.classes.length);
  const n = data.train.x.length;
  if (n === 0) throw new RangeError('the training set is empty');
  const C = data.classes.length;
  const { mean, std } = opts.standardize ? moments(data.train.x, data.dim) : { mean: new Float32Array(data.dim), std: new Float32Array(data.dim).fill(1) };

  const xTrain = standardized(data.train.x, mean, std, data.dim);
  const yTrain = tf.tensor1d(data.train.y, 'int32');
  const weights = opts.classWeights === 'balanced' ? balancedWeights(data.train.y, C) : undefined;
  const wTrain = weights ? tf.tensor1d(data.train.y.map((c) => weights[c])) : undefined;
  const hasVal = data.validation.x.length > 0;
  const xVal = hasVal ? standardized(data.validation.x, mean, std, data.dim) : undefined;
  const yVal = hasVal ? tf.tensor1d(data.validation.y, 'int32') : undefined;

  const rng = seededRandom(opts.seed);
  // Near-zero start, as retrain.py (truncated normal, stddev 0.001): the first loss is ln(classes)
  // rather than whatever a random projection of standardised vectors happens to give.
  const init = tf.truncatedNormal([data.dim, C], 0, 0.001, 'float32', opts.seed);
  const zeros = tf.zeros([C]);
  const kernel = tf.variable(init, true);
  const bias = tf.variable(zeros, true);
  tf.dispose([init, zeros]);
  const optimizer = makeOptimizer(opts);
  const history: EpochResult[] = [];
  let best = { acc: -1, loss: Infinity, epoch: 0, kernel: undefined as Float32Array | undefined, bias: undefined as Float32Array | undefined };
  let since = 0;
  let start = 0;
  let stoppedEarly = false;

  try {
    if (hooks.resumeFrom) {
      const c = hooks.resumeFrom;
      kernel.assign(tf.tensor(c.weights[0].values, c.weights[0].shape));
      bias.assign(tf.tensor(c.weights[1].values, c.weights[1].shape));
      if (c.optimizer.length) await optimizer.setWeights(c.optimizer.map((t) => ({ name: t.name, tensor: tf.tensor(t.values, t.shape) })));
      start = c.epoch;
      since = c.epochsWithoutImprovement;
      history.push(...c.history);
      best = { acc: c.bestValAccuracy, loss: c.bestValLoss, epoch: c.bestEpoch, kernel: c.bestWeights[0]?.values, bias: c.bestWeights[1]?.values };
      // Replay the shuffles of finished epochs so the generator is where it was.
      for (let e = 0; e < start; e++) permutation(n, rng);
      // A run that had already stopped early is finished: the checkpoint came after its last epoch.
      if (opts.patience > 0 && since >= opts.patience) {
        stoppedEarly = start < opts.epochs;
        start = opts.epochs;
      }
    }
    for (let epoch = start + 1; epoch <= opts.epochs; epoch++) {
      if (hooks.shouldStop?.()) throw new TrainingAborted(epoch - 1);
      const order = permutation(n, rng);
      for (let i = 0; i < n; i += opts.batchSize) {
        const idx = tf.tensor1d(order.subarray(i, Math.min(n, i + opts.batchSize)), 'int32');
        tf.tidy(() => {
          const xb = tf.gather(xTrain, idx);
          const yb = tf.oneHot(tf.gather(yTrain, idx), C);
          const wb = wTrain ? tf.gather(wTrain, idx) : undefined;
          optimizer.minimize(() => tf.losses.softmaxCrossEntropy(yb, xb.matMul(kernel).add(bias), wb) as tf.Scalar, false, [kernel, bias]);
        });
        idx.dispose();
      }
      const tr = await score(xTrain, yTrain, kernel, bias, C);
      const va = xVal && yVal ? await score(xVal, yVal, kernel, bias, C) : tr;
      const result: EpochResult = { epoch, epochs: opts.epochs, loss: tr.loss, accuracy: tr.acc, valLoss: va.loss, valAccuracy: va.acc };
      history.push(result);
      // Better = higher validation accuracy, or equal accuracy at lower loss: small validation
      // sets tie often, and stopping on the first tie ends training far too early.
      if (va.acc > best.acc || (va.acc === best.acc && va.loss < best.loss)) {
        best = { acc: va.acc, loss: va.loss, epoch, kernel: (await kernel.data()) as Float32Array, bias: (await bias.data()) as Float32Array };
        since = 0;
      } else since++;
      await hooks.onEpoch?.(result);
      if (hooks.checkpoint) {
        await hooks.checkpoint({
          epoch,
          weights: [await save('kernel', kernel), await save('bias', bias)],
          optimizer: await Promise.all((await optimizer.getWeights()).map((w) => save(w.name, w.tensor))),
          bestValAccuracy: best.acc,
          bestValLoss: best.loss,
          bestEpoch: best.epoch,
          bestWeights: [
            { name: 'kernel', shape: [data.dim, C], values: best.kernel! },
            { name: 'bias', shape: [C], values: best.bias! },
          ],
          epochsWithoutImprovement: since,
          history: [...history],
        });
      }
      if (opts.patience > 0 && since >= opts.patience) {
        stoppedEarly = epoch < opts.epochs;
        break;
      }
    }
    return {
      dim: data.dim,
      classes: data.classes,
      kernel: best.kernel ?? ((await kernel.data()) as Float32Array),
      bias: best.bias ?? ((await bias.data()) as Float32Array),
      mean,
      std,
      options: opts,
      history,
      bestEpoch: best.epoch,
      stoppedEarly,
    };
  } finally {
    tf.dispose([xTrain, yTrain, kernel, bias]);
    wTrain?.dispose();
    if (xVal) tf.dispose([xVal, yVal!]);
    optimizer.dispose();
  }
}

function makeOptimizer(o: ResolvedTrainOptions): tf.Optimizer {
  if (o.optimizer === 'adam') return tf.train.adam(o.learningRate);
  if (o.optimizer === 'sgd') return tf.train.sgd(o.learningRate);
  return tf.train.rmsprop(o.learningRate);
}

async function save(name: string, t: tf.Tensor): Promise<SavedTensor> {
  return { name, shape: t.shape, values: new Float32Array((await t.data()) as Float32Array) };
}

async function score(x: tf.Tensor2D, y: tf.Tensor1D, kernel: tf.Variable, bias: tf.Variable, C: number): Promise<{ loss: number; acc: number }> {
  const [loss, acc] = tf.tidy(() => {
    const logits = x.matMul(kernel).add(bias);
    const l = tf.losses.softmaxCrossEntropy(tf.oneHot(y, C), logits);
    const a = logits.argMax(1).equal(y).cast('float32').mean();
    return [l, a];
  });
  const [l, a] = [(await loss.data())[0], (await acc.data())[0]];
  tf.dispose([loss, acc]);
  return { loss: l, acc: a };
}

/** n / (classes * count) per class: every class weighs as much in the loss (0 for a class with no examples). */
export function balancedWeights(y: readonly number[], classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const c of y) counts[c]++;
  return counts.map((k) => (k ? y.length / (classes * k) : 0));
}

/** Per-dimension mean and standard deviation (deviation floored so constant dimensions stay finite). */
export function moments(x: Float32Array[], dim: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  for (const v of x) for (let j = 0; j < dim; j++) mean[j] += v[j];
  for (let j = 0; j < dim; j++) mean[j] /= x.length;
  for (const v of x) for (let j = 0; j < dim; j++) sq[j] += (v[j] - mean[j]) ** 2;
  const std = new Float32Array(dim);
  for (let j = 0; j < dim; j++) std[j] = Math.max(Math.sqrt(sq[j] / x.length), 1e-6);
  return { mean: Float32Array.from(mean), std };
}

/** Stacks vectors into one standardised [n, dim] tensor. */
export function standardized(x: Float32Array[], mean: Float32Array, std: Float32Array, dim: number): tf.Tensor2D {
  const flat = new Float32Array(x.length * dim);
  for (let i = 0; i < x.length; i++) {
    const v = x[i];
    if (v.length !== dim) throw new RangeError(`vector ${i} has dimension ${v.length}, expected ${dim}`);
    for (let j = 0; j < dim; j++) flat[i * dim + j] = (v[j] - mean[j]) / std[j];
  }
  return tf.tensor2d(flat, [x.length, dim]);
}

/** A small, fast, seeded generator of floats in [0, 1) (mulberry32): same seed, same sequence. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function permutation(n: number, rng: () => number): Int32Array {
  const p = new Int32Array(n);
  for (let i = 0; i < n; i++) p[i] = i;
  for (let i = n - 1; i > 0; i--) {
    const j = Math.floor(rng() * (i + 1));
    const t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
  return p;
}
