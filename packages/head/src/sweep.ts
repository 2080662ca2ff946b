import { createHash } from 'node:crypto';
import { Stopped } from './stop.js';
import { availableParallelism } from 'node:os';
import * as tf from '@tensorflow/tfjs';
import { resolveTrainOptions, type ResolvedTrainOptions, type TrainOptions } from './options.js';
import { runQueue, sharedRows, type SharedRows } from './thread-pool.js';
import { trainHead, type HeadDataset, type TrainedHead } from './train.js';

/*
 * Sweeps: a grid of heads trained on the same cached vectors (no backbone call), the best on
 * validation accuracy kept (ties: lower validation loss). Heads train in parallel on worker
 * threads, one per core for the single-threaded backends (wasm, cpu).
 */

/** The options a sweep may vary, each with the values to try. */
export interface SweepAxes {
  optimizer?: ('rmsprop' | 'adam' | 'sgd')[];
  learningRate?: number[];
  weightDecay?: number[];
  labelSmoothing?: number[];
  batchSize?: number[];
  hiddenUnits?: number[];
  dropout?: number[];
}

/** A grid: the union of the cartesian products of each entry. */
export type SweepGrid = SweepAxes[];

const AXES = ['optimizer', 'learningRate', 'weightDecay', 'labelSmoothing', 'batchSize', 'hiddenUnits', 'dropout'] as const;

/**
 * The default grid: 14 heads, a few minutes on 2 cores for 3,000 vectors of dimension 1,280.
 * Learning rate, L2 and label smoothing around RMSProp's defaults, and Adam with a 512-unit
 * hidden layer (dropout 0.5) with and without L2.
 */
export const DEFAULT_SWEEP_GRID: SweepGrid = [
  { optimizer: ['rmsprop'], learningRate: [0.0003, 0.001, 0.003], weightDecay: [0, 0.0001], labelSmoothing: [0, 0.1] },
  { optimizer: ['adam'], learningRate: [0.001], hiddenUnits: [512], dropout: [0.5], weightDecay: [0, 0.0001] },
];

/** One head of a sweep: a stable id (from its options) and its options. */
export interface SweepConfig {
  id: string;
  options: TrainOptions;
}

/** What one trained head of a sweep scored. */
export interface SweepHeadResult {
  id: string;
  options: ResolvedTrainOptions;
  valAccuracy: number;
  valLoss: number;
  seconds: number;
  head: TrainedHead;
  /** Taken from storage (a resumed sweep), not trained in this run. */
  restored?: boolean;
}

/**
 * Reads a grid from JSON text: one object of option -> values, or a list of them.
 * @throws RangeError naming the file and the bad entry.
 */
export function parseSweepGrid(text: string, origin: string): SweepGrid {
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch (err) {
    throw new RangeError(`${origin} is not JSON: ${(err as Error).message}`);
  }
  const list = Array.isArray(v) ? v : [v];
  if (list.length === 0) throw new RangeError(`${origin} lists no grid`);
  list.forEach((entry, i) => {
    if (!entry || typeof entry !== 'object' || Array.isArray(entry)) throw new RangeError(`${origin}: entry ${i + 1} must be an object of option: [values]`);
    for (const [k, vals] of Object.entries(entry)) {
      if (!(AXES as readonly string[]).includes(k))
        throw new RangeError(`${origin}: entry ${i + 1} has ${JSON.stringify(k)}; a sweep varies ${AXES.join(', ')}`);
      if (!Array.isArray(vals) || vals.length === 0) throw new RangeError(`${origin}: entry ${i + 1}: ${k} must be a non-empty list of values`);
      for (const x of vals)
        if (k === 'optimizer' ? typeof x !== 'string' : typeof x !== 'number') throw new RangeError(`${origin}: entry ${i + 1}: ${k} has ${JSON.stringify(x)}`);
    }
  });
  return list as SweepGrid;
}

/** Options in a fixed key order: what a config id is computed from. */
function canonical(o: ResolvedTrainOptions): string {
  return JSON.stringify(
    Object.keys(o)
      .sort()
      .map((k) => [k, o[k as keyof ResolvedTrainOptions]]),
  );
}

/** Heads one sweep may train at most: a grid asking for more is refused before anything is expanded. */
export const MAX_SWEEP_HEADS = 1000;
/** Epochs one sweep may train at most, all heads together (heads x each head's epochs). */
export const MAX_SWEEP_EPOCHS = 200_000;

/** How many heads a grid asks for (duplicates counted), computed without expanding it. */
export function countSweepHeads(grid: SweepGrid): number {
  let total = 0;
  for (const entry of grid) total += AXES.reduce((n, axis) => n * ((entry[axis] as unknown[] | undefined)?.length ?? 1), 1);
  return total;
}

/**
 * Every head of a grid, each option the grid does not vary taken from base (the job's own).
 * Duplicates (the same resolved options twice) are trained once.
 * @throws RangeError for a value the head refuses (naming it).
 */
export function expandGrid(grid: SweepGrid, base: TrainOptions, classes: number): SweepConfig[] {
  const count = countSweepHeads(grid);
  if (count > MAX_SWEEP_HEADS) throw new RangeError(`the sweep grid asks for ${count.toExponential(2)} heads, over ${MAX_SWEEP_HEADS}`);
  const out = new Map<string, SweepConfig>();
  for (const entry of grid) {
    let combos: TrainOptions[] = [{ ...base }];
    for (const axis of AXES) {
      const vals = entry[axis] as (string | number)[] | undefined;
      if (!vals) continue;
      combos = combos.flatMap((c) => vals.map((x) => ({ ...c, [axis]: x })));
    }
    for (const c of combos) {
      // A hidden layer's dropout default depends on it; a grid without dropout keeps that default.
      const options = { ...c, ...(entry.dropout ? {} : { dropout: undefined }) };
      const resolved = resolveTrainOptions(options, classes);
      const id = `h${createHash('sha256').update(canonical(resolved)).digest('hex').slice(0, 12)}`;
      if (!out.has(id)) out.set(id, { id, options });
    }
  }
  return [...out.values()];
}

/** The best head: highest validation accuracy, then lowest validation loss, then grid order. */
export function pickWinner(results: readonly SweepHeadResult[]): SweepHeadResult {
  if (results.length === 0) throw new RangeError('a sweep with no heads has no winner');
  return results.reduce((best, r) => (r.valAccuracy > best.valAccuracy || (r.valAccuracy === best.valAccuracy && r.valLoss < best.valLoss) ? r : best));
}

/** Heads trained at once by default: one per core for single-threaded backends, one for native ones (they use every core). */
export function defaultSweepParallelism(): number {
  const backend = tf.getBackend();
  return backend === 'wasm' || backend === 'cpu' ? Math.max(1, availableParallelism()) : 1;
}

export interface SweepHooks {
  /** Heads already trained (a resumed sweep): not trained again. */
  done?: ReadonlyMap<string, SweepHeadResult>;
  /** After each head is trained (store it here; awaited before the head counts as done), and first for each restored one (`restored` set). */
  onHead?: (r: SweepHeadResult, finished: number, total: number) => Promise<void>;
  /** Checked before each head starts: stop (throwing Stopped) when true. */
  shouldStop?: () => boolean;
  /** Heads at once (default {@link defaultSweepParallelism}); 1 trains on this thread. */
  parallel?: number;
}

/** What a sweep thread gets once: the vectors in shared memory. */
export interface SweepThreadData {
  dim: number;
  classes: string[];
  backend: string;
  train: { x: SharedRows; y: number[] };
  validation: { x: SharedRows; y: number[] };
}

/** Trains one head of a sweep and scores it at its best epoch. */
export async function trainSweepHead(data: HeadDataset, c: SweepConfig): Promise<SweepHeadResult> {
  const t0 = performance.now();
  const head = await trainHead(data, c.options);
  const best = head.history.find((h) => h.epoch === head.bestEpoch) ?? head.history.at(-1)!;
  return { id: c.id, options: head.options, valAccuracy: best.valAccuracy, valLoss: best.valLoss, seconds: (performance.now() - t0) / 1000, head };
}

/**
 * Trains every head of a sweep not already done, `parallel` at a time, and returns all of them
 * (restored ones included) in grid order.
 * @throws Stopped when shouldStop says so between heads; the first training error otherwise.
 */
export async function runSweep(data: HeadDataset, configs: readonly SweepConfig[], hooks: SweepHooks = {}): Promise<SweepHeadResult[]> {
  const results = new Map<string, SweepHeadResult>();
  for (const c of configs) {
    const r = hooks.done?.get(c.id);
    if (!r) continue;
    results.set(c.id, { ...r, restored: true });
    await hooks.onHead?.(results.get(c.id)!, results.size, configs.length);
  }
  const stopped = await runQueue<SweepConfig, SweepHeadResult>({
    jobs: configs.filter((c) => !results.has(c.id)),
    parallel: hooks.parallel ?? defaultSweepParallelism(),
    shouldStop: hooks.shouldStop,
    here: (c) => trainSweepHead(data, c),
    threads: {
      script: new URL('./sweep-thread.js', import.meta.url),
      data: (): SweepThreadData => ({
        dim: data.dim,
        classes: data.classes,
        backend: tf.getBackend(),
        train: { x: sharedRows(data.train.x, data.dim), y: data.train.y },
        validation: { x: sharedRows(data.validation.x, data.dim), y: data.validation.y },
      }),
      describe: (c) => `sweep head ${c.id}`,
    },
    finish: async (_, r) => {
      results.set(r.id, r);
      await hooks.onHead?.(r, results.size, configs.length);
    },
  });
  if (stopped) throw new Stopped(`sweep after ${results.size} heads (handed to onHead)`);
  return configs.map((c) => results.get(c.id)!);
}
