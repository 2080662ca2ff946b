import * as tf from '@tensorflow/tfjs';
import { backendChoice, type OnnxPlacement, type TfjsBackendName } from './backend.js';
import { PREPROCESS, fingerprintOf, resolvedInfo, type BackboneSpec, type ResolvedBackbone } from './backbone-record.js';
import type { Backbone } from './backbone-types.js';
import { BackboneError } from './errors.js';
import type { GraphSource } from './graphdef.js';
import { fetchModel, type FetchModelOptions, type ModelFiles } from './model-source.js';
import { isOnnxModel } from './model-files.js';
import { cachedOnnxBackbone, onnxModelBackbone, onnxOrTfjs } from './onnx/onnx-backbone.js';
import { loadTfjsModel, tfjsEmbed, type TfjsModel } from './tfjs-model.js';

export type { Backbone, BackboneRuntime } from './backbone-types.js';
export { runtimeLabel } from './backbone-types.js';

export interface LoadBackboneOptions extends FetchModelOptions {
  /** Called with a warning when a model came from a mirror of its address. */
  onWarning?: (message: string) => void;
  /** Called with the address a model with mirrors was loaded from. */
  onSource?: (url: string) => void;
  /** Per-request timeout while mirrors remain to be tried, ms. Default 10000. */
  mirrorTimeoutMs?: number;
  /**
   * Where the backbone runs: 'auto' (default) follows this process's backend choice (initBackend),
   * 'tfjs' keeps it on TF.js, 'resolve' loads it only to learn what it is (TF.js models stay on TF.js).
   */
  runtime?: 'auto' | 'tfjs' | 'resolve';
  /** Receives a line once when a backbone stays on TF.js although ONNX Runtime runs here. */
  onRuntimeNote?: (message: string) => void;
}

/** Addresses that failed in this process: each is tried once, not on every job. */
const failedSources = new Map<string, string>();

/** A backbone's files, fetched and verified but not yet loaded. */
export interface FetchedBackbone {
  /** The spec the files are for (with the address that served them). */
  spec: BackboneSpec | ResolvedBackbone;
  files: ModelFiles;
  warning?: string;
}

/**
 * Fetches and verifies a backbone's files. A catalogue entry with mirrors tries its address, then
 * each mirror (each once per process), and records the one that served.
 * @throws BackboneError when the model cannot be fetched or breaks the source policy.
 */
export async function fetchBackbone(spec: BackboneSpec | ResolvedBackbone, opts: LoadBackboneOptions = {}): Promise<FetchedBackbone> {
  if (!spec.mirrors?.length || 'fingerprint' in spec) {
    const files = await fetchModel(spec.url, {
      ...opts,
      upload: spec.uploadSha256,
      expectWeightsSha256: spec.weightsSha256,
      graph: { bottleneck: spec.bottleneck, inputSize: spec.inputSize, inputNode: spec.inputNode },
    });
    if (files.graph && spec.sourceSha256 && files.graph.sha256 !== spec.sourceSha256) {
      throw new BackboneError(`${spec.url} has SHA-256 ${files.graph.sha256}, not the ${spec.sourceSha256} this backbone was resolved from: refusing it`);
    }
    return { spec: files.graph ? fromGraphDef(spec, files.graph) : spec, files };
  }
  const reasons: string[] = [];
  const sources = [spec.url, ...spec.mirrors];
  for (const [k, url] of sources.entries()) {
    const failed = failedSources.get(url);
    if (failed) {
      reasons.push(failed);
      continue;
    }
    try {
      const files = await fetchModel(url, { ...opts, timeoutMs: k < sources.length - 1 ? (opts.mirrorTimeoutMs ?? 10_000) : opts.timeoutMs });
      opts.onSource?.(url);
      const warning = k > 0 ? `${spec.id}: ${reasons.join('; ')}; loaded from ${url} instead` : undefined;
      if (warning) opts.onWarning?.(warning);
      return { spec: { ...spec, url }, files, warning };
    } catch (err) {
      failedSources.set(url, (err as Error).message);
      reasons.push((err as Error).message);
    }
  }
  throw new BackboneError(
    `cannot load backbone ${spec.id} from any of its ${sources.length} addresses: ${reasons.join('; ')} (the embedded default, --backbone auto, needs no network)`,
  );
}

/**
 * A spec completed from its converted GraphDef: the node it was cut at, the input size the graph
 * gives, and no preprocessing by graft when the graph takes pixels and preprocesses them itself.
 */
function fromGraphDef<T extends BackboneSpec>(spec: T, g: GraphSource): T {
  // A graph that says nothing of its preprocessing follows its kind's convention, unless the user
  // chose (or the spec is resolved already: then it says what was used).
  const chosen = spec.preprocessGiven || 'fingerprint' in spec;
  const preprocess = g.pixelsIn ? 'none' : !chosen && g.suggestedPreprocess ? g.suggestedPreprocess.name : spec.preprocess;
  return { ...spec, bottleneck: g.bottleneck, inputSize: spec.inputSize || g.inputSize, preprocess, inputNode: g.inputNode, sourceSha256: g.sha256 };
}

/**
 * Loads fetched files as a backbone, cut at its bottleneck, and warms it up: on ONNX Runtime when
 * this process runs it (a TF.js model converted, checked against TF.js, cached), else on TF.js. A
 * resolved spec (one with a fingerprint, from a task or a model folder) must match it: other
 * weights are an error.
 * @throws BackboneError when the model cannot be parsed, cut, or has another fingerprint.
 */
export async function backboneFromFiles(f: FetchedBackbone, opts: LoadBackboneOptions = {}): Promise<Backbone> {
  const backbone = await buildBackbone(f, opts);
  const expected = 'fingerprint' in f.spec ? f.spec.fingerprint : undefined;
  if (expected && backbone.info.fingerprint !== expected) {
    backbone.dispose();
    throw new BackboneError(
      `backbone ${f.spec.url} has fingerprint ${backbone.info.fingerprint}, but ${expected} was expected: the weights differ between machines`,
    );
  }
  return backbone;
}

/**
 * Fetches, verifies and loads a backbone ({@link fetchBackbone}, then {@link backboneFromFiles}).
 * @throws BackboneError when the model cannot be fetched, parsed, cut, or has another fingerprint.
 */
export async function loadBackbone(spec: BackboneSpec | ResolvedBackbone, opts: LoadBackboneOptions = {}): Promise<Backbone> {
  return backboneFromFiles(await fetchBackbone(spec, opts), opts);
}

/** The ONNX Runtime placement a load uses: none when TF.js is asked for or this process chose TF.js. */
function placementFor(opts: LoadBackboneOptions): OnnxPlacement | undefined {
  if (opts.runtime === 'tfjs' || opts.runtime === 'resolve') return undefined;
  return backendChoice()?.onnx;
}

async function buildBackbone(f: FetchedBackbone, opts: LoadBackboneOptions): Promise<Backbone> {
  if (isOnnxModel(f.files)) {
    // An ONNX model runs only on ONNX Runtime (its CPU kernels where this process chose TF.js).
    return onnxModelBackbone(f.spec, f.files, backendChoice()?.onnx ?? { provider: 'cpu', deviceId: 0, threads: 1 }, f.warning);
  }
  const placement = placementFor(opts);
  const spec = f.spec;
  // A resolved backbone (a task's, a model folder's) this machine converted and checked before needs no TF.js.
  if (placement && 'fingerprint' in spec && fingerprintOf(f.files.weightsSha256, spec) === spec.fingerprint) {
    const ready = await cachedOnnxBackbone(spec, placement, { cacheDir: opts.cacheDir });
    if (ready) return ready;
  }
  const tfjs = await tfjsBackbone(f.spec, f.files, f.warning);
  if (!placement) return tfjs.backbone;
  return onnxOrTfjs(tfjs.backbone, tfjs.model, f.files, placement, { cacheDir: opts.cacheDir, onNote: opts.onRuntimeNote });
}

/** A backbone on TF.js, and the model it runs (for the ONNX converter). */
async function tfjsBackbone(spec: BackboneSpec, files: ModelFiles, warning?: string): Promise<{ backbone: Backbone; model: TfjsModel }> {
  const model = await loadTfjsModel(files, spec.bottleneck, spec.inputSize);
  const inputSize = model.inputSize;
  if (!inputSize) {
    model.dispose();
    throw new BackboneError(`${files.origin} does not say its input size: pass --input-size`);
  }
  // Warm-up run: learns the dimension, and the first real batch does not pay for kernel setup.
  const probe = tf.zeros([1, inputSize, inputSize, 3]) as tf.Tensor4D;
  let dim: number;
  try {
    const out = model.forward(probe);
    dim = out.shape[1];
    out.dispose();
  } catch (err) {
    model.dispose();
    throw new BackboneError(`backbone ${spec.url} failed on a ${inputSize}x${inputSize} input: ${(err as Error).message}`, { cause: err });
  } finally {
    probe.dispose();
  }
  const info = resolvedInfo(spec, files, model.source.kind === 'graph' ? 'graph' : 'layers', inputSize, dim, warning);
  const affine = PREPROCESS[spec.preprocess];
  const stats = { calls: 0, images: 0 };
  const backbone: Backbone = {
    info,
    runtime: { name: backendChoice()?.tfjs ?? tfjsName() },
    stats,
    async embed(images) {
      const out = await tfjsEmbed(model, images, affine);
      if (images.length) {
        stats.calls++;
        stats.images += images.length;
      }
      return out;
    },
    dispose: () => model.dispose(),
  };
  return { backbone, model };
}

/** The TF.js backend in use, by graft's name for it. */
function tfjsName(): TfjsBackendName {
  const b = tf.getBackend();
  return b === 'wasm' ? 'wasm' : b === 'tensorflow' ? 'tfjs-node' : 'cpu';
}
