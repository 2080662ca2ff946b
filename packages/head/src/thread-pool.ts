import { Worker } from 'node:worker_threads';
import { floatsOf, type VectorRow } from './rows.js';

/*
 * A queue of jobs that may stop between jobs, run on this thread or on worker threads: `parallel`
 * threads, each started once with the shared data and sent one job at a time. A thread answers
 * { ok: true, result } or { ok: false, error }. Sweeps (heads) and audits (folds) use it.
 */

/** What a thread posts back for one job. */
export type ThreadAnswer<R> = { ok: true; result: R } | { ok: false; error: string };

export interface QueueOptions<J, R> {
  jobs: readonly J[];
  /** Jobs at once, clamped to 1..jobs; 1 runs them on this thread with `here`. */
  parallel: number;
  /** Checked before each job starts: true stops the queue (the jobs under way finish). */
  shouldStop?: () => boolean;
  /** One job on this thread. */
  here: (job: J) => Promise<R>;
  /** The thread script, what each thread gets once (made only when threads run), and a job's name for errors. */
  threads: { script: URL; data: () => unknown; describe: (job: J) => string };
  /** Each result, awaited before its runner takes the next job. */
  finish: (job: J, result: R) => Promise<void>;
}

/**
 * Runs every job, or stops between jobs when shouldStop says so.
 * @returns whether it stopped before every job ran.
 * @throws the first job's error.
 */
export async function runQueue<J, R>(o: QueueOptions<J, R>): Promise<boolean> {
  let next = 0;
  let stopped = false;
  const take = (): J | undefined => {
    if (stopped || next >= o.jobs.length) return undefined;
    if (o.shouldStop?.()) {
      stopped = true;
      return undefined;
    }
    return o.jobs[next++];
  };
  const parallel = Math.max(1, Math.min(o.parallel, o.jobs.length));
  if (parallel === 1) {
    for (let job = take(); job !== undefined; job = take()) await o.finish(job, await o.here(job));
  } else {
    await runOnThreads(o.threads.script, o.threads.data(), parallel, take, o.finish, o.threads.describe);
  }
  return stopped;
}

/**
 * Runs jobs from take() (undefined: none left) on threads of `script`, handing each result to finish
 * (awaited before that thread takes its next job).
 * @throws the first job's error, named by describe(job); the threads are stopped either way.
 */
async function runOnThreads<J, R>(
  script: URL,
  workerData: unknown,
  parallel: number,
  take: () => J | undefined,
  finish: (job: J, result: R) => Promise<void>,
  describe: (job: J) => string,
): Promise<void> {
  const runThread = async () => {
    const worker = new Worker(script, { workerData });
    try {
      for (let job = take(); job !== undefined; job = take()) {
        const current = job;
        const result = await new Promise<R>((resolve, reject) => {
          const onMessage = (m: ThreadAnswer<R>) => {
            worker.off('error', onError);
            if (m.ok) resolve(m.result);
            else reject(new Error(`${describe(current)}: ${m.error}`));
          };
          const onError = (err: Error) => {
            worker.off('message', onMessage);
            reject(err);
          };
          worker.once('message', onMessage);
          worker.once('error', onError);
          worker.postMessage(current);
        });
        await finish(current, result);
      }
    } finally {
      await worker.terminate();
    }
  };
  await Promise.all(Array.from({ length: parallel }, runThread));
}

/** Rows in one shared buffer: float32, or half floats when every row was (a float16 job's). */
export interface SharedRows {
  buffer: SharedArrayBuffer;
  half: boolean;
}

/** Vectors as one shared buffer of rows, in their own dtype: what threads get once, without a copy each. */
export function sharedRows(vectors: readonly VectorRow[], dim: number): SharedRows {
  const half = vectors.length > 0 && vectors.every((v) => v instanceof Uint16Array);
  const buffer = new SharedArrayBuffer(vectors.length * dim * (half ? 2 : 4));
  if (half) {
    const view = new Uint16Array(buffer);
    vectors.forEach((v, i) => view.set(v as Uint16Array, i * dim));
  } else {
    const view = new Float32Array(buffer);
    const scratch = new Float32Array(dim);
    vectors.forEach((v, i) => view.set(floatsOf(v, scratch), i * dim));
  }
  return { buffer, half };
}

/** Views over shared rows, as trainHead takes them (no copy). */
export function rowsOf({ buffer, half }: SharedRows, dim: number): VectorRow[] {
  const width = half ? 2 : 4;
  const n = buffer.byteLength / width / dim;
  return Array.from({ length: n }, (_, i) => (half ? new Uint16Array(buffer, i * dim * width, dim) : new Float32Array(buffer, i * dim * width, dim)));
}
