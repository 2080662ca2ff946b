import { createHash } from 'node:crypto';
import type { OnnxPlacement } from '../backend.js';
import { PREPROCESS, resolvedInfo, type BackboneSpec, type ResolvedBackbone } from '../backbone-record.js';
import type { Backbone } from '../backbone-types.js';
import { BackboneError } from '../errors.js';
import type { ModelFiles } from '../model-files.js';
import type { TfjsModel } from '../tfjs-model.js';
import { backboneOnnx, PIXELS, VECTORS } from './backbone-onnx.js';
import { cachedConversion, rememberConversion, type ConversionCacheOptions } from './conversion-cache.js';
import { onnxBackboneGraph } from './onnx-models.js';
import { openOnnxSession, type OnnxSession } from './onnx-session.js';
import { ConversionError } from './tf-ops.js';

/*
 * Backbones on ONNX Runtime. A TF.js backbone is converted, run on a probe batch beside TF.js and
 * kept on ONNX Runtime only when the two agree within PARITY_TOLERANCE of the output's scale; the
 * converted file and the verdict are cached by fingerprint (a later load on this machine skips TF.js
 * altogether). A conversion that fails or disagrees leaves the backbone on TF.js, with the reason.
 */

export interface OnnxCacheOptions extends ConversionCacheOptions {
  /** Receives, once per load, why the backbone stays on TF.js. */
  onNote?: (message: string) => void;
}

/** Largest difference allowed between ONNX Runtime and TF.js, relative to the largest TF.js output. */
export const PARITY_TOLERANCE = 1e-4;
/** Images in the probe batch. */
const PROBE_IMAGES = 2;

/** Deterministic probe pictures: gradients and a fine pattern, so every channel and edge is exercised. */
export function probePixels(size: number, count = PROBE_IMAGES): Uint8Array[] {
  return Array.from({ length: count }, (_, k) => {
    const px = new Uint8Array(size * size * 3);
    for (let y = 0; y < size; y++) {
      for (let x = 0; x < size; x++) {
        const i = (y * size + x) * 3;
        px[i] = (x * 255) / size + k * 40;
        px[i + 1] = (y * 255) / size;
        px[i + 2] = ((x * 7 + y * 13 + k * 91) * 31) % 256;
      }
    }
    return px;
  });
}

/** The largest difference between two batches of vectors, relative to the largest magnitude of the reference. */
export function relativeDifference(reference: Float32Array[], other: Float32Array[]): number {
  let diff = 0;
  let scale = 0;
  reference.forEach((r, i) => {
    for (let j = 0; j < r.length; j++) {
      diff = Math.max(diff, Math.abs(r[j] - other[i][j]));
      scale = Math.max(scale, Math.abs(r[j]));
    }
  });
  return diff / Math.max(scale, 1e-12);
}

/**
 * The backbone on ONNX Runtime when its conversion agrees with TF.js (from the cache when this
 * machine checked it before), else the TF.js backbone as it is, with the reason as its runtime note.
 */
export async function onnxOrTfjs(tfjs: Backbone, model: TfjsModel, files: ModelFiles, placement: OnnxPlacement, o: OnnxCacheOptions): Promise<Backbone> {
  const info = tfjs.info;
  const stay = (reason: string): Backbone => {
    o.onNote?.(`backbone ${info.id} (${info.fingerprint}) stays on TF.js: ${reason}`);
    return { ...tfjs, runtime: { ...tfjs.runtime, note: reason }, embed: tfjs.embed, dispose: tfjs.dispose };
  };
  const hit = await cachedConversion(info.fingerprint, o);
  if (hit && !hit.verdict.onnx) return stay(hit.verdict.reason ?? 'its conversion failed before');
  let bytes = hit?.model;
  let session: OnnxSession | undefined;
  try {
    if (!bytes) {
      const affine = PREPROCESS[info.preprocess];
      bytes = backboneOnnx(model.source, {
        inputSize: info.inputSize,
        affine,
        description: `graft backbone ${info.id} (${info.url}), fingerprint ${info.fingerprint}`,
        metadata: { 'graft.fingerprint': info.fingerprint },
      });
    }
    session = await openOnnxSession(bytes, { ...placement, input: PIXELS, output: VECTORS });
    const ort = onnxBackbone(info, session, placement);
    if (!hit) {
      const probe = probePixels(info.inputSize);
      const expected = await tfjs.embed(probe);
      const got = await ort.embed(probe);
      ort.stats.calls = ort.stats.images = tfjs.stats.calls = tfjs.stats.images = 0;
      const d = relativeDifference(expected, got);
      if (!(d <= PARITY_TOLERANCE)) {
        const reason = `ONNX Runtime's vectors differ from TF.js's by ${d.toExponential(2)} of their scale on the probe batch (over ${PARITY_TOLERANCE})`;
        await rememberConversion(info.fingerprint, { onnx: false, reason }, undefined, o);
        await session.close();
        return stay(reason);
      }
      await rememberConversion(
        info.fingerprint,
        { onnx: true, sha256: createHash('sha256').update(bytes).digest('hex'), maxRelativeDiff: d, dim: info.dim },
        bytes,
        o,
      );
    }
    tfjs.dispose();
    return ort;
  } catch (err) {
    await session?.close();
    if (!(err instanceof ConversionError) && !(err as Error).name?.startsWith('OnnxRuntime')) throw err;
    const reason = `${err instanceof ConversionError ? 'cannot convert it to ONNX' : 'ONNX Runtime cannot run it'}: ${(err as Error).message}`;
    await rememberConversion(info.fingerprint, { onnx: false, reason }, undefined, o);
    return stay(reason);
  }
}

/**
 * A resolved backbone straight from the conversion cache, when this machine converted and checked
 * it before (TF.js is then not loaded at all); undefined otherwise.
 */
export async function cachedOnnxBackbone(info: ResolvedBackbone, placement: OnnxPlacement, o: OnnxCacheOptions): Promise<Backbone | undefined> {
  const hit = await cachedConversion(info.fingerprint, o);
  if (!hit?.model || hit.verdict.dim !== info.dim) return undefined;
  try {
    return onnxBackbone(info, await openOnnxSession(hit.model, { ...placement, input: PIXELS, output: VECTORS }), placement);
  } catch {
    return undefined; // convert and check it again
  }
}

/** A backbone whose batches run in an ONNX Runtime session (pixels in, pooled vectors out). */
function onnxBackbone(info: ResolvedBackbone, session: OnnxSession, placement: OnnxPlacement): Backbone {
  const px = info.inputSize * info.inputSize * 3;
  const stats = { calls: 0, images: 0 };
  return {
    info,
    runtime: { name: 'onnxruntime', provider: session.provider ?? placement.provider },
    stats,
    async embed(images) {
      if (images.length === 0) return [];
      const batch = new Uint8Array(images.length * px);
      images.forEach((img, i) => {
        if (img.length !== px) throw new RangeError(`image ${i} has ${img.length} values, expected ${px}`);
        batch.set(img, i * px);
      });
      const out = await session.run(batch, [images.length, info.inputSize, info.inputSize, 3]);
      stats.calls++;
      stats.images += images.length;
      const dim = out.dims[1];
      return images.map((_, i) => out.data.slice(i * dim, (i + 1) * dim));
    },
    dispose: () => void session.close(),
  };
}

/**
 * An ONNX model as a backbone: cut at its bottleneck, fed resized pixels through the spec's
 * preprocessing in the model's layout, pooled as graft pools.
 * @throws BackboneError when the model cannot be read, cut or run.
 */
export async function onnxModelBackbone(spec: BackboneSpec, files: ModelFiles, placement: OnnxPlacement, warning?: string): Promise<Backbone> {
  const bytes = new Uint8Array(files.weightData);
  const graph = await onnxBackboneGraph(bytes, spec, files.origin, (model, input) => probeDims(model, input, placement));
  let session: OnnxSession;
  try {
    session = await openOnnxSession(graph.bytes, { ...placement, input: PIXELS, output: VECTORS });
  } catch (err) {
    throw new BackboneError(`${files.origin}: ${(err as Error).message}`, { cause: err });
  }
  const info = resolvedInfo({ ...spec, bottleneck: graph.bottleneck }, files, 'onnx', graph.inputSize, graph.dim, warning);
  return onnxBackbone(info, session, placement);
}

/** The output dims of a model for one probe picture (learns what rank the bottleneck has). */
async function probeDims(model: Uint8Array, inputSize: number, placement: OnnxPlacement): Promise<number[]> {
  const s = await openOnnxSession(model, { ...placement, input: PIXELS });
  try {
    return (await s.run(probePixels(inputSize, 1)[0], [1, inputSize, inputSize, 3])).dims;
  } finally {
    await s.close();
  }
}
