import { BACKEND_NAMES } from '@graft/vision';
import { UsageError, type Options, type Values } from '../args.js';

/* What a command is: its help, its options and what it runs. */

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(argv: string[]): Promise<number>;
}

export const BACKEND_HELP = `  --backend NAME      where backbones run: auto (default, or $GRAFT_BACKEND: ONNX Runtime, on CUDA where a GPU
                      and its provider are there), ${BACKEND_NAMES.join(', ')}`;
export const THREADS_HELP = `  --threads N         ONNX Runtime threads per worker process ($GRAFT_THREADS; graft worker: default 1; a local cluster:
                      one worker per two cores with two threads each, see BENCHMARKS.md)`;

/** What a local cluster's workers take from the command that starts them: their number, threads and backend. */
export function localWorkers(v: Values): { workers?: number; threads?: number; backend?: string } {
  const n = (k: string) => (typeof v[k] === 'string' ? Number(v[k]) : undefined);
  for (const k of ['workers', 'threads']) {
    const x = n(k);
    if (x !== undefined && (!Number.isInteger(x) || x < 1)) throw new UsageError(`--${k} must be a positive integer, got ${JSON.stringify(v[k])}`);
  }
  return {
    workers: n('workers'),
    threads: n('threads') ?? (process.env.GRAFT_THREADS ? Number(process.env.GRAFT_THREADS) : undefined),
    backend: (v.backend as string | undefined) ?? process.env.GRAFT_BACKEND,
  };
}
export const CACHE_HELP = `  --cache-dir DIR     model disk cache (default $GRAFT_CACHE_DIR, else ~/.cache/graft/models)`;
