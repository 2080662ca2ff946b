import { existsSync } from 'node:fs';
import * as tf from '@tensorflow/tfjs';

/*
 * Where a process runs backbones: ONNX Runtime (CUDA where a GPU and its provider are there, else
 * its CPU kernels), or one of TensorFlow.js's backends. TensorFlow.js is loaded either way: heads
 * train on it, and a backbone ONNX Runtime cannot take stays on it.
 */

/** TensorFlow.js's backends, best first. */
export type TfjsBackendName = 'tfjs-node-gpu' | 'tfjs-node' | 'wasm' | 'cpu';
/** Where backbones run: ONNX Runtime, or a TensorFlow.js backend. */
export type BackendName = 'onnxruntime' | TfjsBackendName;
export const BACKEND_NAMES: readonly BackendName[] = ['onnxruntime', 'tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];
export const TFJS_BACKEND_NAMES: readonly TfjsBackendName[] = ['tfjs-node-gpu', 'tfjs-node', 'wasm', 'cpu'];

interface Candidate {
  name: TfjsBackendName;
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

/** How this process runs ONNX Runtime sessions. */
export interface OnnxPlacement {
  provider: 'cpu' | 'cuda';
  /** The CUDA device (as CUDA counts them) under the cuda provider. */
  deviceId: number;
  /** Intra-op threads per session. */
  threads: number;
}

export interface BackendChoice {
  /** Where backbones run. */
  name: BackendName;
  /** The TensorFlow.js backend: heads, browser bundles, backbones ONNX Runtime cannot take. */
  tfjs: TfjsBackendName;
  /** Set when backbones run on ONNX Runtime. */
  onnx?: OnnxPlacement;
  /** Why each better choice was passed over. */
  skipped: { name: string; reason: string }[];
}

export interface BackendOptions {
  /** A backend name, or 'auto' (default): ONNX Runtime, else the best TensorFlow.js backend that loads. */
  preferred?: BackendName | 'auto';
  /** ONNX Runtime intra-op threads per session. Default 1 (one worker per core: see BENCHMARKS.md). */
  threads?: number;
  /** The CUDA device ONNX Runtime runs on (a `worker --gpus` child's; the CLI pins it). Unset: device 0. */
  gpu?: string;
  /** Module loader; tests replace it to simulate missing packages. */
  importModule?: (specifier: string) => Promise<unknown>;
  /** Whether ONNX Runtime's CUDA provider runs here; undefined when it does, else why not. Tests replace it. */
  probeCuda?: (deviceId: number) => Promise<string | undefined>;
  /** Whether this machine has an NVIDIA GPU (its driver's device files). Tests replace it. */
  hasGpu?: () => boolean;
  /** Receives the choice once it is made. */
  log?: (choice: BackendChoice) => void;
}

/** The backends to try for a preference, in order. @throws TypeError for an unknown name. */
export function backendPlan(preferred: BackendName | 'auto' = 'auto'): BackendName[] {
  if (preferred === 'auto') return [...BACKEND_NAMES];
  if (!BACKEND_NAMES.includes(preferred)) throw new TypeError(`unknown backend ${JSON.stringify(preferred)}: use auto, ${BACKEND_NAMES.join(', ')}`);
  return [preferred];
}

let current: Promise<BackendChoice> | undefined;
let chosen: BackendChoice | undefined;

/**
 * Picks and initialises the backends once per process: ONNX Runtime (CUDA, else CPU) for
 * backbones with the best TensorFlow.js backend beside it, else tfjs-node-gpu, tfjs-node, wasm,
 * cpu (or exactly the preferred one).
 * @throws Error when the preferred backend (or every candidate) fails to load.
 */
export function initBackend(opts: BackendOptions = {}): Promise<BackendChoice> {
  current ??= chooseBackend(opts).then(
    (c) => (chosen = c),
    (err) => {
      current = undefined;
      throw err;
    },
  );
  return current;
}

/** The choice {@link initBackend} made, or undefined before it (backbones then run on TF.js). */
export function backendChoice(): BackendChoice | undefined {
  return chosen;
}

/** The CUDA device a `--gpus` child's GPU names: its number (CUDA_DEVICE_ORDER=PCI_BUS_ID keeps nvidia-smi's numbering), else 0. */
export function cudaDeviceOf(gpu: string | undefined): number {
  return gpu && /^\d+$/.test(gpu) ? Number(gpu) : 0;
}

/**
 * Makes the choice {@link initBackend} makes (sets TensorFlow.js's backend, nothing else): for
 * tests of the plan; processes call initBackend.
 */
export async function chooseBackend(opts: BackendOptions): Promise<BackendChoice> {
  const importModule = opts.importModule ?? ((s: string) => import(s));
  const plan = backendPlan(opts.preferred);
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1))
    throw new RangeError(`threads must be a positive integer, got ${opts.threads}`);
  const skipped: BackendChoice['skipped'] = [];
  let onnx: OnnxPlacement | undefined;
  if (plan[0] === 'onnxruntime') {
    try {
      onnx = await placeOnnx(importModule, opts, skipped);
    } catch (err) {
      skipped.push({ name: 'onnxruntime', reason: missingReason('onnxruntime-node', err, 'reinstall graft (npm ci)') });
      if (opts.preferred === 'onnxruntime') throw new Error(`backend onnxruntime cannot start: ${skipped[skipped.length - 1].reason}`);
    }
  }
  // A TF.js backend asked for by name is the only one tried. Beside ONNX Runtime on a GPU, TensorFlow.js
  // keeps off it: one CUDA user per process, on its own device.
  const strict = plan.length === 1 && plan[0] !== 'onnxruntime';
  const tfjsPlan = strict ? (plan as TfjsBackendName[]) : TFJS_BACKEND_NAMES.filter((n) => !(onnx?.provider === 'cuda' && n === 'tfjs-node-gpu'));
  for (const name of tfjsPlan) {
    const c = CANDIDATES.find((x) => x.name === name)!;
    try {
      if (c.module) await importModule(c.module);
      if (!(await tf.setBackend(c.tfName))) throw new Error(`tf.setBackend('${c.tfName}') returned false`);
      await tf.ready();
      const choice: BackendChoice = { name: onnx ? 'onnxruntime' : name, tfjs: name, ...(onnx ? { onnx } : {}), skipped };
      opts.log?.(choice);
      return choice;
    } catch (err) {
      skipped.push({
        name,
        reason: missingReason(c.module ?? name, err, `npm install ${c.module}: its install step downloads libtensorflow; the Docker images have it`),
      });
      if (strict) throw new Error(`backend ${name} cannot start: ${skipped[skipped.length - 1].reason}`);
    }
  }
  throw new Error(`no backend could start: ${skipped.map((s) => `${s.name}: ${s.reason}`).join('; ')}`);
}

/** ONNX Runtime's placement: CUDA where the provider and a GPU are there and a session runs on it, else CPU. */
async function placeOnnx(importModule: (s: string) => Promise<unknown>, opts: BackendOptions, skipped: BackendChoice['skipped']): Promise<OnnxPlacement> {
  const ort = (await importModule('onnxruntime-node')) as { listSupportedBackends?: () => { name: string }[] };
  const threads = opts.threads ?? 1;
  const deviceId = cudaDeviceOf(opts.gpu);
  const listed = (ort.listSupportedBackends?.() ?? []).some((b) => b.name === 'cuda');
  const why = !listed
    ? 'this onnxruntime-node has no CUDA provider'
    : !(opts.hasGpu ?? (() => existsSync('/dev/nvidiactl')))()
      ? 'no NVIDIA GPU on this machine'
      : await (opts.probeCuda ?? probeCuda)(deviceId);
  if (!why) return { provider: 'cuda', deviceId, threads };
  skipped.push({ name: 'onnxruntime (cuda)', reason: why });
  return { provider: 'cpu', deviceId: 0, threads };
}

/** Opens a one-op session on the CUDA provider: the provider's libraries, CUDA 12 and cuDNN 9 all have to be there. */
async function probeCuda(deviceId: number): Promise<string | undefined> {
  const { openOnnxSession } = await import('./onnx/onnx-session.js');
  const { identityModel } = await import('./onnx/onnx-builder.js');
  try {
    const s = await openOnnxSession(identityModel(), { provider: 'cuda', deviceId, inputType: 'float32' });
    await s.close();
    return undefined;
  } catch (err) {
    return `the CUDA provider did not start (${firstLine(err)}): it needs CUDA 12 and cuDNN 9 (see the README's GPU nodes)`;
  }
}

/** Why a candidate did not load: how to get a missing package, else the error's first line. */
function missingReason(module: string, err: unknown, fix: string): string {
  return /Cannot find (package|module)/.test(firstLine(err)) ? `${module} is not installed (${fix})` : firstLine(err);
}

function firstLine(err: unknown): string {
  const msg = err instanceof Error ? err.message : String(err);
  return msg.split('\n')[0].slice(0, 200);
}
