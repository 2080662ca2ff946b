import { backboneFromFiles, type ModelFiles } from '@graft/vision';
import { loadHeadModel, predict, type ModelFolder } from './model.js';

/**
 * A model folder's class probabilities for pictures ([inputSize, inputSize, 3] RGB), as graft
 * classify computes them: its backbone (checked by fingerprint), then its head. What every exported
 * graph is checked against.
 */
export async function folderProbabilities(folder: ModelFolder, files: ModelFiles, pictures: readonly Uint8Array[], cacheDir?: string): Promise<Float32Array[]> {
  const backbone = await backboneFromFiles({ spec: folder.card.backbone, files }, { cacheDir });
  const head = await loadHeadModel(folder);
  try {
    return await predict(head, await backbone.embed([...pictures]), folder.card.input.dim);
  } finally {
    backbone.dispose();
    head.dispose();
  }
}

/** The largest difference between two sets of probabilities. */
export function largestDifference(a: readonly Float32Array[], b: readonly Float32Array[]): number {
  let d = 0;
  a.forEach((p, i) => p.forEach((v, c) => (d = Math.max(d, Math.abs(v - b[i][c])))));
  return d;
}
