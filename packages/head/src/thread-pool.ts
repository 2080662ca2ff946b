import { Worker } from 'node:worker_threads';

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
async function runOnThreads<J, R>(script: URL, workerData: unknown, parallel: number, take: () => J | undefined, finish: (job: J, result: R) => Promise<void>, describe: (job: J) => string): Promise<void> {
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

/** Vectors as one shared buffer of rows: what threads get once, without a copy each. */
export function sharedRows(vectors: readonly Float32Array[], dim: number): SharedArrayBuffer {
  const buf = new SharedArrayBuffer(vectors.length * dim * 4);
  const view = new Float32Array(buf);
  vectors.forEach((v, i) => view.set(v, i * dim));
  return buf;
}

/** Views over shared rows, as trainHead takes them (no copy). */
export function rowsOf(buf: SharedArrayBuffer, dim: number): Float32Array[] {
  const n = buf.byteLength / 4 / dim;
  return Array.from({ length: n }, (_, i) => new Float32Array(buf, i * dim * 4, dim));
}
