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
  /** The softmax layer: [dim or hidden units, classes] row-major. */
  kernel: Float32Array;
  bias: Float32Array;
  /** The hidden layer (dense + ReLU; dropout only in training), when the options asked for one: kernel [dim, units]. */
  hidden?: { kernel: Float32Array; bias: Float32Array; units: number };
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
  const H = opts.hiddenUnits;
  // Near-zero output start, as retrain.py (truncated normal, stddev 0.001): the first loss is ln(classes)
  // rather than whatever a random projection of standardised vectors happens to give. A hidden layer
  // starts He-initialised so ReLU units are alive.
  const shapes: [string, number[]][] = H
    ? [['hidden_kernel', [data.dim, H]], ['hidden_bias', [H]], ['kernel', [H, C]], ['bias', [C]]]
    : [['kernel', [data.dim, C]], ['bias', [C]]];
  const params = shapes.map(([name, shape]) =>
    tf.tidy(() => {
      const init = name === 'hidden_kernel' ? tf.randomNormal(shape, 0, Math.sqrt(2 / data.dim), 'float32', opts.seed) : name === 'kernel' ? tf.truncatedNormal(shape, 0, 0.001, 'float32', opts.seed) : tf.zeros(shape);
      return tf.variable(init, true);
    }),
  );
  const kernels = params.filter((_, i) => shapes[i][0].endsWith('kernel'));
  const logitsOf = (x: tf.Tensor2D, dropSeed?: number): tf.Tensor2D => {
    if (!H) return x.matMul(params[0]).add(params[1]);
    let h = tf.relu(x.matMul(params[0]).add(params[1])) as tf.Tensor2D;
    if (dropSeed !== undefined && opts.dropout > 0) h = tf.dropout(h, opts.dropout, undefined, dropSeed) as tf.Tensor2D;
    return h.matMul(params[2]).add(params[3]);
  };
  const optimizer = makeOptimizer(opts);
  const history: EpochResult[] = [];
  let best = { acc: -1, loss: Infinity, epoch: 0, weights: undefined as Float32Array[] | undefined };
  let since = 0;
  let start = 0;
  let stoppedEarly = false;
  const values = async () => Promise.all(params.map(async (p) => (await p.data()) as Float32Array));

  try {
    if (hooks.resumeFrom) {
      const c = hooks.resumeFrom;
      if (c.weights.length !== params.length) throw new RangeError(`the checkpoint has ${c.weights.length} weight tensors, this head ${params.length}: it was made with other options`);
      params.forEach((p, i) => p.assign(tf.tensor(c.weights[i].values, c.weights[i].shape)));
      if (c.optimizer.length) await optimizer.setWeights(c.optimizer.map((t) => ({ name: t.name, tensor: tf.tensor(t.values, t.shape) })));
      start = c.epoch;
      since = c.epochsWithoutImprovement;
      history.push(...c.history);
      best = { acc: c.bestValAccuracy, loss: c.bestValLoss, epoch: c.bestEpoch, weights: c.bestWeights.length ? c.bestWeights.map((w) => w.values) : undefined };
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
      for (let i = 0, step = 0; i < n; i += opts.batchSize, step++) {
        const idx = tf.tensor1d(order.subarray(i, Math.min(n, i + opts.batchSize)), 'int32');
        tf.tidy(() => {
          const xb = tf.gather(xTrain, idx);
          const yb = tf.oneHot(tf.gather(yTrain, idx), C);
          const wb = wTrain ? tf.gather(wTrain, idx) : undefined;
          // Dropout masks from the seed, epoch and step: a resumed run draws the same ones.
          const dropSeed = opts.seed * 1_000_003 + epoch * 10_007 + step;
          optimizer.minimize(
            () => {
              let loss = tf.losses.softmaxCrossEntropy(yb, logitsOf(xb, dropSeed), wb, opts.labelSmoothing) as tf.Scalar;
              if (opts.weightDecay > 0) loss = loss.add(tf.addN(kernels.map((k) => k.square().sum())).mul(opts.weightDecay));
              return loss;
            },
            false,
            params,
          );
        });
        idx.dispose();
      }
      const tr = await score(xTrain, yTrain, logitsOf, C);
      const va = xVal && yVal ? await score(xVal, yVal, logitsOf, C) : tr;
      const result: EpochResult = { epoch, epochs: opts.epochs, loss: tr.loss, accuracy: tr.acc, valLoss: va.loss, valAccuracy: va.acc };
      history.push(result);
      // Better = higher validation accuracy, or equal accuracy at lower loss: small validation
      // sets tie often, and stopping on the first tie ends training far too early.
      if (va.acc > best.acc || (va.acc === best.acc && va.loss < best.loss)) {
        best = { acc: va.acc, loss: va.loss, epoch, weights: await values() };
        since = 0;
      } else since++;
      await hooks.onEpoch?.(result);
      if (hooks.checkpoint) {
        await hooks.checkpoint({
          epoch,
          weights: await Promise.all(params.map((p, i) => save(shapes[i][0], p))),
          optimizer: await Promise.all((await optimizer.getWeights()).map((w) => save(w.name, w.tensor))),
          bestValAccuracy: best.acc,
          bestValLoss: best.loss,
          bestEpoch: best.epoch,
          bestWeights: shapes.map(([name, shape], i) => ({ name, shape, values: best.weights![i] })),
          epochsWithoutImprovement: since,
          history: [...history],
        });
      }
      if (opts.patience > 0 && since >= opts.patience) {
        stoppedEarly = epoch < opts.epochs;
        break;
      }
    }
    const w = best.weights ?? (await values());
    return {
      dim: data.dim,
      classes: data.classes,
      kernel: w[H ? 2 : 0],
      bias: w[H ? 3 : 1],
      ...(H ? { hidden: { kernel: w[0], bias: w[1], units: H } } : {}),
      mean,
      std,
      options: opts,
      history,
      bestEpoch: best.epoch,
      stoppedEarly,
    };
  } finally {
    tf.dispose([xTrain, yTrain, ...params]);
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

async function score(x: tf.Tensor2D, y: tf.Tensor1D, logitsOf: (x: tf.Tensor2D) => tf.Tensor2D, C: number): Promise<{ loss: number; acc: number }> {
  const [loss, acc] = tf.tidy(() => {
    const logits = logitsOf(x);
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
