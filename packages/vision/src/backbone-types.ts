import type { TfjsBackendName } from './backend.js';
import type { ResolvedBackbone } from './backbone-record.js';

/* What a loaded backbone is, wherever it runs. */

/** Where a backbone runs: ONNX Runtime (and its provider), or TF.js (and why, when ONNX Runtime was asked for). */
export interface BackboneRuntime {
  name: 'onnxruntime' | TfjsBackendName;
  provider?: 'cpu' | 'cuda';
  /** Why a backbone stays on TF.js although this process runs ONNX Runtime. */
  note?: string;
}

/** A loaded backbone that turns RGB pixels into bottleneck vectors. */
export interface Backbone {
  readonly info: ResolvedBackbone;
  readonly runtime: BackboneRuntime;
  /**
   * Embeds a batch. Each input is inputSize*inputSize*3 RGB bytes (see decodeImage).
   * Every intermediate is released before this returns.
   */
  embed(images: readonly Uint8Array[]): Promise<Float32Array[]>;
  /** How many times the model ran, and on how many images (for cache accounting and benchmarks). */
  readonly stats: { calls: number; images: number };
  dispose(): void;
}

/** Where a backbone ran, as results and job records say it: `onnxruntime/cpu`, `onnxruntime/cuda`, or the TF.js backend. */
export function runtimeLabel(r: BackboneRuntime): string {
  return r.provider ? `${r.name}/${r.provider}` : r.name;
}
