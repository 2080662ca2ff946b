import * as tf from '@tensorflow/tfjs';
import type { ResolvedTrainOptions } from './options.js';
import { SCORE_ROWS, VectorBatches } from './vector-batches.js';
import { floatsOf, type VectorRow } from './rows.js';
import type { EpochResult, HeadDataset, SavedTensor, TrainedHead, TrainingCheckpoint } from './head-types.js';

/** Where a training run stands: what a checkpoint keeps. */
export interface TrainingProgress {
  /** Epochs finished before this run (a resumed run). */
  start: number;
  /** Epochs since validation last improved. */
  since: number;
  history: EpochResult[];
  best: { acc: number; loss: number; epoch: number; weights?: Float32Array[] };
  stoppedEarly: boolean;
}

/**
 * One training run's tensors and variables: the standardised data, the head's parameters (a softmax
 * layer, or a hidden ReLU layer and one), the optimizer and the seeded shuffles. Dispose when done.
 */
export class HeadTraining {
  private readonly n: number;
  private readonly C: number;
  private readonly H: number;
  private readonly mean: Float32Array;
  private readonly std: Float32Array;
  private readonly xTrain: VectorBatches;
  private readonly yTrain: tf.Tensor1D;
  private readonly wTrain?: tf.Tensor1D;
  private readonly xVal?: VectorBatches;
  private readonly yVal?: tf.Tensor1D;
  private readonly rng: () => number;
  private readonly shapes: [string, number[]][];
  private readonly params: tf.Variable[];
  private readonly kernels: tf.Variable[];
  private readonly optimizer: tf.Optimizer;

  constructor(
    private readonly data: HeadDataset,
    private readonly opts: ResolvedTrainOptions,
  ) {
    this.n = data.train.x.length;
    this.C = data.classes.length;
    ({ mean: this.mean, std: this.std } = opts.standardize
      ? moments(data.train.x, data.dim)
      : { mean: new Float32Array(data.dim), std: new Float32Array(data.dim).fill(1) });
    // The vectors stay the caller's rows: only one batch at a time becomes a tensor.
    this.xTrain = new VectorBatches(data.train.x, this.mean, this.std, data.dim);
    this.yTrain = tf.tensor1d(data.train.y, 'int32');
    const weights = opts.classWeights === 'balanced' ? balancedWeights(data.train.y, this.C) : undefined;
    this.wTrain = weights ? tf.tensor1d(data.train.y.map((c) => weights[c])) : undefined;
    if (data.validation.x.length > 0) {
      this.xVal = new VectorBatches(data.validation.x, this.mean, this.std, data.dim);
      this.yVal = tf.tensor1d(data.validation.y, 'int32');
    }
    this.rng = seededRandom(opts.seed);
    const H = (this.H = opts.hiddenUnits);
    const C = this.C;
    // Near-zero output start, as retrain.py (truncated normal, stddev 0.001): the first loss is ln(classes)
    // rather than whatever a random projection of standardised vectors happens to give. A hidden layer
    // starts He-initialised so ReLU units are alive.
    this.shapes = H
      ? [
          ['hidden_kernel', [data.dim, H]],
          ['hidden_bias', [H]],
          ['kernel', [H, C]],
          ['bias', [C]],
        ]
      : [
          ['kernel', [data.dim, C]],
          ['bias', [C]],
        ];
    this.params = this.shapes.map(([name, shape]) =>
      tf.tidy(() => {
        const init =
          name === 'hidden_kernel'
            ? tf.randomNormal(shape, 0, Math.sqrt(2 / data.dim), 'float32', opts.seed)
            : name === 'kernel'
              ? tf.truncatedNormal(shape, 0, 0.001, 'float32', opts.seed)
              : tf.zeros(shape);
        return tf.variable(init, true);
      }),
    );
    this.kernels = this.params.filter((_, i) => this.shapes[i][0].endsWith('kernel'));
    this.optimizer = makeOptimizer(opts);
  }

  private logitsOf(x: tf.Tensor2D, dropSeed?: number): tf.Tensor2D {
    const p = this.params;
    if (!this.H) return x.matMul(p[0]).add(p[1]);
    let h = tf.relu(x.matMul(p[0]).add(p[1])) as tf.Tensor2D;
    if (dropSeed !== undefined && this.opts.dropout > 0) h = tf.dropout(h, this.opts.dropout, undefined, dropSeed) as tf.Tensor2D;
    return h.matMul(p[2]).add(p[3]);
  }

  /** The parameters' current values. */
  values(): Promise<Float32Array[]> {
    return Promise.all(this.params.map(async (p) => (await p.data()) as Float32Array));
  }

  /** The progress of a run that starts from nothing. */
  fresh(): TrainingProgress {
    return { start: 0, since: 0, history: [], best: { acc: -1, loss: Infinity, epoch: 0 }, stoppedEarly: false };
  }

  /** Puts a checkpoint's weights and optimizer state back, and replays its shuffles. @throws RangeError when it was made with other options. */
  async restore(c: TrainingCheckpoint): Promise<TrainingProgress> {
    if (c.weights.length !== this.params.length)
      throw new RangeError(`the checkpoint has ${c.weights.length} weight tensors, this head ${this.params.length}: it was made with other options`);
    this.params.forEach((p, i) => p.assign(tf.tensor(c.weights[i].values, c.weights[i].shape)));
    if (c.optimizer.length) await this.optimizer.setWeights(c.optimizer.map((t) => ({ name: t.name, tensor: tf.tensor(t.values, t.shape) })));
    const p: TrainingProgress = {
      start: c.epoch,
      since: c.epochsWithoutImprovement,
      history: [...c.history],
      best: { acc: c.bestValAccuracy, loss: c.bestValLoss, epoch: c.bestEpoch, weights: c.bestWeights.length ? c.bestWeights.map((w) => w.values) : undefined },
      stoppedEarly: false,
    };
    // Replay the shuffles of finished epochs so the generator is where it was.
    for (let e = 0; e < p.start; e++) permutation(this.n, this.rng);
    // A run that had already stopped early is finished: the checkpoint came after its last epoch.
    if (this.opts.patience > 0 && p.since >= this.opts.patience) {
      p.stoppedEarly = p.start < this.opts.epochs;
      p.start = this.opts.epochs;
    }
    return p;
  }

  /** One pass over the training set in a seeded order. */
  trainEpoch(epoch: number): void {
    const { opts, n, C } = this;
    const order = permutation(n, this.rng);
    for (let i = 0, step = 0; i < n; i += opts.batchSize, step++) {
      const rows = order.subarray(i, Math.min(n, i + opts.batchSize));
      const idx = tf.tensor1d(rows, 'int32');
      tf.tidy(() => {
        const xb = this.xTrain.batch(rows);
        const yb = tf.oneHot(tf.gather(this.yTrain, idx), C);
        const wb = this.wTrain ? tf.gather(this.wTrain, idx) : undefined;
        // Dropout masks from the seed, epoch and step: a resumed run draws the same ones.
        const dropSeed = opts.seed * 1_000_003 + epoch * 10_007 + step;
        this.optimizer.minimize(
          () => {
            let loss = tf.losses.softmaxCrossEntropy(yb, this.logitsOf(xb, dropSeed), wb, opts.labelSmoothing) as tf.Scalar;
            if (opts.weightDecay > 0) loss = loss.add(tf.addN(this.kernels.map((k) => k.square().sum())).mul(opts.weightDecay));
            return loss;
          },
          false,
          this.params,
        );
      });
      idx.dispose();
    }
  }

  /** Loss and accuracy on the training and validation sets (the training set's when there is no validation set). */
  async score(epoch: number): Promise<EpochResult> {
    const logits = (x: tf.Tensor2D) => this.logitsOf(x);
    const tr = await score(this.xTrain, this.yTrain, logits, this.C);
    const va = this.xVal && this.yVal ? await score(this.xVal, this.yVal, logits, this.C) : tr;
    return { epoch, epochs: this.opts.epochs, loss: tr.loss, accuracy: tr.acc, valLoss: va.loss, valAccuracy: va.acc };
  }

  /** What a checkpoint after this epoch keeps. */
  async checkpoint(epoch: number, p: TrainingProgress): Promise<TrainingCheckpoint> {
    return {
      epoch,
      weights: await Promise.all(this.params.map((v, i) => save(this.shapes[i][0], v))),
      optimizer: await Promise.all((await this.optimizer.getWeights()).map((w) => save(w.name, w.tensor))),
      bestValAccuracy: p.best.acc,
      bestValLoss: p.best.loss,
      bestEpoch: p.best.epoch,
      bestWeights: this.shapes.map(([name, shape], i) => ({ name, shape, values: p.best.weights![i] })),
      epochsWithoutImprovement: p.since,
      history: [...p.history],
    };
  }

  /** The trained head: the best epoch's weights. */
  async result(p: TrainingProgress): Promise<TrainedHead> {
    const w = p.best.weights ?? (await this.values());
    const H = this.H;
    return {
      dim: this.data.dim,
      classes: this.data.classes,
      kernel: w[H ? 2 : 0],
      bias: w[H ? 3 : 1],
      ...(H ? { hidden: { kernel: w[0], bias: w[1], units: H } } : {}),
      mean: this.mean,
      std: this.std,
      options: this.opts,
      history: p.history,
      bestEpoch: p.best.epoch,
      stoppedEarly: p.stoppedEarly,
    };
  }

  dispose(): void {
    tf.dispose([this.yTrain, ...this.params]);
    this.wTrain?.dispose();
    this.yVal?.dispose();
    this.optimizer.dispose();
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

/** Mean loss and accuracy over a set, SCORE_ROWS rows at a time. */
async function score(x: VectorBatches, y: tf.Tensor1D, logitsOf: (x: tf.Tensor2D) => tf.Tensor2D, C: number): Promise<{ loss: number; acc: number }> {
  let loss = 0;
  let correct = 0;
  for (let i = 0; i < x.length; i += SCORE_ROWS) {
    const end = Math.min(x.length, i + SCORE_ROWS);
    const [l, a] = tf.tidy(() => {
      const yb = y.slice(i, end - i);
      const logits = logitsOf(x.batch(VectorBatches.range(i, end)));
      return [
        tf.losses.softmaxCrossEntropy(tf.oneHot(yb, C), logits, undefined, undefined, tf.Reduction.SUM),
        logits.argMax(1).equal(yb).cast('float32').sum(),
      ];
    });
    loss += (await l.data())[0];
    correct += (await a.data())[0];
    tf.dispose([l, a]);
  }
  return { loss: loss / x.length, acc: correct / x.length };
}

/** n / (classes * count) per class: every class weighs as much in the loss (0 for a class with no examples). */
export function balancedWeights(y: readonly number[], classes: number): number[] {
  const counts = new Array<number>(classes).fill(0);
  for (const c of y) counts[c]++;
  return counts.map((k) => (k ? y.length / (classes * k) : 0));
}

/**
 * Per-dimension mean and standard deviation (deviation floored so constant dimensions stay finite),
 * in one pass over the rows (sums in float64: a million half-float rows are decoded once, not twice).
 */
export function moments(x: readonly VectorRow[], dim: number): { mean: Float32Array; std: Float32Array } {
  const mean = new Float64Array(dim);
  const sq = new Float64Array(dim);
  const scratch = new Float32Array(dim);
  for (const row of x) {
    const v = floatsOf(row, scratch);
    for (let j = 0; j < dim; j++) {
      mean[j] += v[j];
      sq[j] += v[j] * v[j];
    }
  }
  const std = new Float32Array(dim);
  for (let j = 0; j < dim; j++) {
    mean[j] /= x.length;
    std[j] = Math.max(Math.sqrt(Math.max(sq[j] / x.length - mean[j] * mean[j], 0)), 1e-6);
  }
  return { mean: Float32Array.from(mean), std };
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
