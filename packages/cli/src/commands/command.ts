import { BACKEND_NAMES } from '@graft/vision';
import type { Options, Values } from '../args.js';

/* What a command is: its help, its options and what it runs. */

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(argv: string[]): Promise<number>;
}

export const BACKEND_HELP = `  --backend NAME      where backbones run: auto (default, or $GRAFT_BACKEND: ONNX Runtime, on CUDA where a GPU
                      and its provider are there), ${BACKEND_NAMES.join(', ')}`;
export const THREADS_HELP = `  --threads N         ONNX Runtime threads per worker process (default 1, or $GRAFT_THREADS: one worker per core)`;

/** The options a local cluster's workers take from the command that starts them. */
export function workerArgsOf(v: Values): string[] {
  return (['backend', 'threads'] as const).flatMap((k) => (typeof v[k] === 'string' ? [`--${k}`, v[k] as string] : []));
}
export const CACHE_HELP = `  --cache-dir DIR     model disk cache (default $GRAFT_CACHE_DIR, else ~/.cache/graft/models)`;
