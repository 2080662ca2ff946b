import { BACKEND_NAMES } from '@graft/vision';
import type { Options } from '../args.js';

/* What a command is: its help, its options and what it runs. */

export interface Command {
  summary: string;
  usage: string;
  options: Options;
  run(argv: string[]): Promise<number>;
}

export const BACKEND_HELP = `  --backend NAME      auto (default, or $GRAFT_BACKEND), ${BACKEND_NAMES.join(', ')}`;
export const CACHE_HELP = `  --cache-dir DIR     model disk cache (default $GRAFT_CACHE_DIR, else ~/.cache/graft/models)`;
