import { RETRAIN_OUTPUT, backboneFromFiles, bottleneckRank, graphDefModel, probePixels, retrainOutputGraph, type ModelFiles } from '@graft/vision';
import { folderProbabilities, largestDifference } from './folder-probabilities.js';
import { headLayers } from './head-layers.js';
import { labelsText } from './model-onnx.js';
import type { ModelFolder } from './model.js';

/*
 * A model folder whose backbone is a frozen GraphDef, written back the way retrain.py writes its
 * model: output_graph.pb (the graph up to the bottleneck, then final_training_ops and final_result)
 * and output_labels.txt. Kept only when graft's own GraphDef reader, fed the exported graph, gives
 * the folder's probabilities within RETRAIN_TOLERANCE.
 */

export const RETRAIN_GRAPH_FILE = 'output_graph.pb';
export const RETRAIN_LABELS_FILE = 'output_labels.txt';
export const RETRAIN_TOLERANCE = 1e-4;

export type RetrainExport = { bytes: Uint8Array; labels: string; maxDifference: number } | { notWritten: string };

/**
 * retrain.py's output_graph.pb for a folder, from its backbone's .pb bytes and converted files.
 * @returns the graph, or why there is none (a head with a hidden layer, a graph that reads back otherwise).
 */
export async function retrainExport(folder: ModelFolder, pb: Uint8Array, files: ModelFiles, cacheDir?: string): Promise<RetrainExport> {
  const spec = folder.card.backbone;
  let bytes: Uint8Array;
  try {
    bytes = retrainOutputGraph(pb, spec.url, spec.bottleneck!, await bottleneckRank(files, spec), await headLayers(folder));
  } catch (err) {
    return { notWritten: (err as Error).message };
  }
  // Read back as any .pb is: cut at final_result, graft's decoding in front of the graph's own arithmetic.
  const origin = `${spec.url} with its head (output_graph.pb)`;
  const back = graphDefModel(bytes, { bottleneck: RETRAIN_OUTPUT, inputNode: spec.inputNode ?? undefined, inputSize: spec.inputSize, origin });
  const { fingerprint: _fp, ...unresolved } = spec;
  const exported = await backboneFromFiles({ spec: { ...unresolved, url: origin, bottleneck: RETRAIN_OUTPUT }, files: back }, { runtime: 'tfjs', cacheDir });
  const pictures = probePixels(spec.inputSize, 3);
  try {
    const d = largestDifference(await folderProbabilities(folder, files, pictures, cacheDir), await exported.embed(pictures));
    if (!(d <= RETRAIN_TOLERANCE))
      return { notWritten: `read back, its probabilities differ from the folder's by ${d.toExponential(2)} (over ${RETRAIN_TOLERANCE})` };
    return { bytes, labels: labelsText(folder.card.classes), maxDifference: d };
  } finally {
    exported.dispose();
  }
}
