import { PREPROCESS, type BackboneSpec } from '../backbone-record.js';
import { BackboneError } from '../errors.js';
import { isOnnxModel, type ModelFiles } from '../model-files.js';
import { loadTfjsModel } from '../tfjs-model.js';
import { backboneOnnx, PIXELS } from './backbone-onnx.js';
import { cachedConversion, type ConversionCacheOptions } from './conversion-cache.js';
import { onnxBackboneGraph } from './onnx-models.js';
import { openOnnxSession } from './onnx-session.js';
import { probePixels } from './onnx-backbone.js';
import { withHead, PROBABILITIES, type DenseSpec } from './with-head.js';

/*
 * A model folder's model.onnx: its backbone's graph as ONNX Runtime runs it (converted from TF.js,
 * from this machine's conversion cache, or an ONNX model cut as graft cuts it) with the head
 * appended. Made on any machine, whatever runs backbones there: the conversion needs no session
 * but an ONNX model's, whose bottleneck rank is learned from one probe run on the CPU.
 */

/** A backbone's graph, uint8 pixels in, pooled vectors out. @throws ConversionError or BackboneError saying why there is none. */
export async function backboneGraph(spec: BackboneSpec & { fingerprint?: string }, files: ModelFiles, o: ConversionCacheOptions = {}): Promise<Uint8Array> {
  if (isOnnxModel(files)) {
    const graph = await onnxBackboneGraph(new Uint8Array(files.weightData), spec, files.origin, async (model, size) => {
      const s = await openOnnxSession(model, { input: PIXELS });
      try {
        return (await s.run(probePixels(size, 1)[0], [1, size, size, 3])).dims;
      } finally {
        await s.close();
      }
    });
    return graph.bytes;
  }
  if (spec.fingerprint) {
    const hit = await cachedConversion(spec.fingerprint, o);
    if (hit?.model) return hit.model;
  }
  const model = await loadTfjsModel(files, spec.bottleneck, spec.inputSize);
  try {
    if (!model.inputSize) throw new BackboneError(`${files.origin} does not say its input size`);
    return backboneOnnx(model.source, {
      inputSize: model.inputSize,
      affine: PREPROCESS[spec.preprocess],
      description: `graft backbone ${spec.id} (${spec.url})`,
    });
  } finally {
    model.dispose();
  }
}

/** A classifier as one ONNX graph: the backbone's, then the head's dense layers, probabilities out. */
export async function classifierGraph(
  spec: BackboneSpec & { fingerprint?: string },
  files: ModelFiles,
  head: readonly DenseSpec[],
  o: ConversionCacheOptions & { description: string; metadata?: Record<string, string> },
): Promise<Uint8Array> {
  return withHead(await backboneGraph(spec, files, o), head, { description: o.description, metadata: o.metadata });
}

/** Class probabilities of a classifier graph for batches of pixels [n, size, size, 3], on ONNX Runtime's CPU kernels. */
export async function runClassifierGraph(model: Uint8Array, pixels: readonly Uint8Array[], size: number): Promise<Float32Array[]> {
  const s = await openOnnxSession(model, { input: PIXELS, output: PROBABILITIES });
  try {
    const out: Float32Array[] = [];
    for (const px of pixels) {
      const r = await s.run(Uint8Array.from(px), [1, size, size, 3]);
      out.push(r.data);
    }
    return out;
  } finally {
    await s.close();
  }
}
