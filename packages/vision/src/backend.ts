import * as tf from '@tensorflow/tfjs';

/** Backends graft can run on, best first. */
export type BackendName = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
export const BACKEND_NAMES: readonly BackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

interface Candidate {
  name: BackendName;
  /** Module whose import registers the backend; none for the built-in cpu backend. */
  module?: string;
  /** The name tf.setBackend knows it by. */
  tfName: string;
}

const CANDIDATES: readonly Candidate[] = [
  { name: 'tfjs-node-gpu', module: '@tensorflow/tfjs-node-gpu', tfName: 'tensorflow' },
  { name: 'tfjs-node', module: '@tensorflow/tfjs-node', tfName: 'tensorflow' },
  // Single-threaded in Node: scale with one worker process per core.
  { name: 'wasm', module: '@tensorflow/tfjs-backend-wasm', tfName: 'wasm' },
  { name: 'cpu', tfName: 'cpu' },
];

export interface BackendChoice {
  name: BackendName;
  /** Why each better backend was passed over. */
  skipped: { name: BackendName; reason: string }[];
}

export interface BackendOptions {
  /** A backend name, or 'auto' (default) for the best one that loads. */
  preferred?: BackendName | 'auto';
  /** Module loader; tests replace it to simulate missing packages. */
  importModule?: (specifier: string) => Promise<unknown>;
  /** Receives one line naming the backend in use and what was skipped. */
  log?: (choice: BackendChoice) => void;
}

/** The backends to try for a preference, in order. @throws TypeError for an unknown name. */
export function backendPlan(preferred: BackendName | 'auto' = 'auto'): BackendName[] {
  if (preferred === 'auto') return CANDIDATES.map((c) => c.name);
  if (!BACKEND_NAMES.includes(preferred)) throw new TypeError(`unknown backend ${JSON.stringify(preferred)}: use auto, ${BACKEND_NAMES.join(', ')}`);
  return [preferred];
}

let current: Promise<BackendChoice> | undefined;

/**
 * Picks and initialises the TensorFlow.js backend once per process:
 * tfjs-node-gpu, else tfjs-node, else wasm, else cpu (or exactly the preferred one).
 * @throws Error when the preferred backend (or every candidate) fails to load.
 */
export function initBackend(opts: BackendOptions = {}): Promise<BackendChoice> {
  current ??= chooseBackend(opts);
  return current;
}

async function chooseBackend(opts: BackendOptions): Promise<BackendChoice> {
  const importModule = opts.importModule ?? ((s: string) => import(s));
  const skipped: BackendChoice['skipped'] = [];
  for (const name of backendPlan(opts.preferred)) {
    const c = CANDIDATES.find((x) => x.name === name)!;
    try {
      if (c.module) await importModule(c.module);
      if (!(await tf.setBackend(c.tfName))) throw new Error(`tf.setBackend('${c.tfName}') returned false`);
      await tf.ready();
      const choice = { name, skipped };
      opts.log?.(choice);
      return choice;
    } catch (err) {
      // A missing native package is the usual case: say how to get it, not only that the import failed.
      const missing = c.module && /Cannot find (package|module)/.test(firstLine(err));
      skipped.push({ name, reason: missing ? `${c.module} is not installed (npm install ${c.module}: its install step downloads libtensorflow; the Docker images have it)` : firstLine(err) });
    }
  }
  current = undefined;
  if (opts.preferred && opts.preferred !== 'auto') throw new Error(`backend ${skipped[0].name} cannot start: ${skipped[0].reason}`);
  throw new Error(`no TensorFlow.js backend could start: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].slice(0, 200);
}
