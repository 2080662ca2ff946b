import * as tf from '@tensorflow/tfjs';
import { Stopped } from '../stop.js';
import { seededRandom } from '../head-training.js';
import type { HeadDataset } from '../head-types.js';
import type { VectorRow } from '../rows.js';
import type { TrainOptions } from '../options.js';
import { runQueue, sharedRows, type SharedRows } from '../thread-pool.js';
import { trainHead } from '../train.js';
import { headProbabilities } from './probabilities.js';

/*
 * Out-of-sample class probabilities: K heads, each trained (with the job's options and seed) on
 * every fold but one and asked about the photos of that one, so no photo is judged by a head that
 * saw it. Folds are stratified by label; each head stops early on a tenth of its own training
 * folds. Heads train in parallel on worker threads (fold-thread.ts), sharing the vectors.
 */

/** Which fold each photo is in: per class, a seeded shuffle dealt round-robin. */
export function foldOf(labels: ArrayLike<number>, C: number, K: number, seed: number): Int32Array {
  const rng = seededRandom(seed * 7919 + K);
  const fold = new Int32Array(labels.length);
  for (let c = 0; c < C; c++) {
    const members: number[] = [];
    for (let i = 0; i < labels.length; i++) if (labels[i] === c) members.push(i);
    for (let i = members.length - 1; i > 0; i--) {
      const j = Math.floor(rng() * (i + 1));
      [members[i], members[j]] = [members[j], members[i]];
    }
    members.forEach((m, r) => (fold[m] = r % K));
  }
  return fold;
}

/** What one fold head trains on: the other folds, a tenth of them (seeded) held out for early stopping. */
export function foldDataset(
  rows: readonly VectorRow[],
  labels: ArrayLike<number>,
  fold: Int32Array,
  k: number,
  dim: number,
  classes: string[],
  seed: number,
): { data: HeadDataset; held: number[] } {
  const rng = seededRandom(seed * 104_729 + k);
  const data: HeadDataset = { dim, classes, train: { x: [], y: [] }, validation: { x: [], y: [] } };
  const held: number[] = [];
  for (let i = 0; i < rows.length; i++) {
    if (fold[i] === k) held.push(i);
    else {
      const set = rng() < 0.1 ? data.validation : data.train;
      set.x.push(rows[i]);
      set.y.push(labels[i]);
    }
  }
  return { data, held };
}

/** Trains fold k's head and returns the held-out photos' probabilities ([held, C]). */
export async function trainFold(
  rows: readonly VectorRow[],
  labels: ArrayLike<number>,
  fold: Int32Array,
  k: number,
  dim: number,
  classes: string[],
  options: TrainOptions,
): Promise<Float32Array> {
  const { data, held } = foldDataset(rows, labels, fold, k, dim, classes, options.seed ?? 1);
  const head = await trainHead(data, options);
  return headProbabilities(
    head,
    held.map((i) => rows[i]),
  );
}

export interface FoldHooks {
  /** Folds already trained (a resumed audit): their held-out probabilities. */
  done?: ReadonlyMap<number, Float32Array>;
  /** After each fold is trained (store it here; awaited before it counts as done). */
  onFold?: (k: number, probs: Float32Array) => Promise<void>;
  /** Checked before each fold starts: stop (throwing Stopped) when true. */
  shouldStop?: () => boolean;
  parallel?: number;
}

/** What a fold thread gets once. */
export interface FoldThreadData {
  dim: number;
  classes: string[];
  backend: string;
  rows: SharedRows;
  labels: number[];
  fold: Int32Array;
  options: TrainOptions;
}

/**
 * Out-of-sample probabilities of every photo ([n, C]), K folds, `parallel` heads at a time.
 * @throws Stopped when shouldStop says so between folds.
 */
export async function outOfSampleProbabilities(
  rows: readonly VectorRow[],
  labels: number[],
  dim: number,
  classes: string[],
  K: number,
  options: TrainOptions,
  hooks: FoldHooks = {},
): Promise<Float32Array> {
  const C = classes.length;
  const fold = foldOf(labels, C, K, options.seed ?? 1);
  const out = new Float32Array(rows.length * C);
  const place = (k: number, probs: Float32Array) => {
    let r = 0;
    for (let i = 0; i < rows.length; i++) if (fold[i] === k) out.set(probs.subarray(r * C, ++r * C), i * C);
  };
  const todo: number[] = [];
  for (let k = 0; k < K; k++) {
    const stored = hooks.done?.get(k);
    if (stored) place(k, stored);
    else todo.push(k);
  }
  let finished = K - todo.length;
  const stopped = await runQueue<number, Float32Array>({
    jobs: todo,
    parallel: hooks.parallel ?? 1,
    shouldStop: hooks.shouldStop,
    here: (k) => trainFold(rows, labels, fold, k, dim, classes, options),
    threads: {
      script: new URL('./fold-thread.js', import.meta.url),
      data: () => threadData(rows, labels, fold, dim, classes, options),
      describe: (k) => `audit fold ${k}`,
    },
    finish: async (k, probs) => {
      await hooks.onFold?.(k, probs);
      place(k, probs);
      finished++;
    },
  });
  if (stopped) throw new Stopped(`audit after ${finished} folds (handed to onFold)`);
  return out;
}

function threadData(rows: readonly VectorRow[], labels: number[], fold: Int32Array, dim: number, classes: string[], options: TrainOptions): FoldThreadData {
  return { dim, classes, backend: tf.getBackend(), rows: sharedRows(rows, dim), labels, fold, options };
}
