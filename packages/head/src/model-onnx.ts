import { OPSET, PIXELS, PROBABILITIES, classifierGraph, probePixels, runClassifierGraph, type ModelFiles } from '@graft/vision';
import { folderProbabilities, largestDifference } from './folder-probabilities.js';
import { headLayers } from './head-layers.js';
import type { ModelFolder, OnnxEntry } from './model.js';

/*
 * A model folder's model.onnx and labels.txt: the backbone and the head as one ONNX graph, for phones
 * (ONNX Runtime Mobile, and Core ML or NNAPI through it) and servers (ONNX Runtime in any language).
 * Written only when it classifies as graft classify does: within ONNX_TOLERANCE on probe pictures.
 */

export const ONNX_FILE = 'model.onnx';
export const LABELS_FILE = 'labels.txt';

/** Largest difference between model.onnx's probabilities and graft classify's that is written. */
export const ONNX_TOLERANCE = 1e-4;

/** model.onnx, or why a folder has none. */
export type OnnxExport = { bytes: Uint8Array; labels: string; entry: OnnxEntry } | { notWritten: string };

/** labels.txt: one class per line, in the output's order. */
export function labelsText(classes: readonly string[]): string {
  return `${classes.join('\n')}\n`;
}

/**
 * Builds model.onnx for a model folder from its backbone's files, runs it on ONNX Runtime beside the
 * backbone and head as graft classify runs them, and keeps it only when they agree.
 * @param probes extra pictures to check on ([inputSize, inputSize, 3] RGB), beside graft's own.
 */
export async function onnxExport(folder: ModelFolder, files: ModelFiles, o: { cacheDir?: string; probes?: readonly Uint8Array[] } = {}): Promise<OnnxExport> {
  const spec = folder.card.backbone;
  const size = spec.inputSize;
  let bytes: Uint8Array;
  try {
    bytes = await classifierGraph(spec, files, await headLayers(folder), {
      cacheDir: o.cacheDir,
      description: `graft classifier: ${folder.card.classes.length} classes on ${spec.id} (${spec.fingerprint})`,
      metadata: { 'graft.fingerprint': spec.fingerprint, 'graft.classes': JSON.stringify(folder.card.classes), 'graft.input_size': String(size) },
    });
  } catch (err) {
    return { notWritten: `its backbone cannot be written as ONNX: ${(err as Error).message}` };
  }
  const pictures = [...(o.probes ?? []), ...probePixels(size, 3)];
  const diff = largestDifference(await folderProbabilities(folder, files, pictures, o.cacheDir), await runClassifierGraph(bytes, pictures, size));
  if (!(diff <= ONNX_TOLERANCE)) return { notWritten: `its probabilities differ from graft classify's by ${diff.toExponential(2)} (over ${ONNX_TOLERANCE})` };
  return {
    bytes,
    labels: labelsText(folder.card.classes),
    entry: { file: ONNX_FILE, labels: LABELS_FILE, opset: OPSET, input: PIXELS, inputSize: size, output: PROBABILITIES, maxDifference: diff },
  };
}
